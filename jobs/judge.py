"""`clover judge CANDIDATES --out OUT --judge URL_OR_MODEL`: pairwise judgments in both orders, resumable."""

from __future__ import annotations

import sys

from jobs.common import exit_on_config_error
from jobs.flags import Command, Option
from training.preference.judge import JudgeConfig

COMMAND = Command(
    description="Judge each prompt's candidates pairwise, in both orders, with an OpenAI-compatible endpoint or a "
                "local exported model. Rerun to resume.",
    config=JudgeConfig,
    options=(
        Option("candidates", help="a `clover sample-candidates` output", kwargs={"metavar": "CANDIDATES"}),
        Option("--out", help="output directory (judgments.jsonl, rankings.parquet, report.json)",
               kwargs={"required": True}),
        Option("--judge", help="http(s)://host:port (OpenAI-compatible) or an exported model dir",
               kwargs={"required": True}),
        Option("--template", "template", "judging prompt template file ({prompt}, {answer_a}, {answer_b}); "
                                         "without it, jobs/configs/judge-pairwise.txt"),
        Option("--model-name", "model"),
        Option("--api-key-env", "api_key_env"),
        Option("--concurrency", "concurrency"),
        Option("--timeout", "timeout"),
        Option("--retries", "retries"),
        Option("--guided", "guided"),
        Option("--limit", help="ask at most this many new requests, then stop", kwargs={"type": int}),
    ),
)


@exit_on_config_error
def main(argv: list[str] | None = None, prog: str = "clover judge") -> int:
    args, cfg = COMMAND.parse(argv, prog)
    from training.preference.judge import judge_candidates

    report = judge_candidates(args.candidates, args.out, args.judge, cfg, limit=args.limit)
    print(f"judge: {report.input} requests answered: {report.output} verdicts, unparseable {report.removed}, "
          f"failed {report.quarantined}, pending {report.extra['pending']}, "
          f"order disagreements {report.extra['disagreements']} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
