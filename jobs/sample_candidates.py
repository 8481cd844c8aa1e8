"""`clover sample-candidates PROMPTS --model RUN_OR_DIR --out OUT`: candidates at several temperatures."""

from __future__ import annotations

import sys

from jobs.common import exit_on_config_error
from jobs.flags import Command, Option
from training.preference.candidates import SamplingConfig

COMMAND = Command(
    description="Generate candidate responses for a prompt set (JSONL or Parquet with prompt_id, prompt) at several "
                "temperatures; drop degenerate ones with a reason; rerun to resume.",
    config=SamplingConfig,
    options=(
        Option("prompts", help="prompt files (JSONL or Parquet)", kwargs={"nargs": "+", "metavar": "PROMPTS"}),
        Option("--model", help="a run directory, a `clover export` directory, or the http(s) URL of an "
                               "OpenAI-compatible completions server (vllm serve EXPORT, clover serve)",
               kwargs={"required": True}),
        Option("--tokenizer", help="with a URL: the served `clover export` directory (or its tokenizer)"),
        Option("--model-name", "model_name"),
        Option("--api-key-env", "api_key_env"),
        Option("--concurrency", "concurrency"),
        Option("--timeout", "timeout"),
        Option("--retries", "retries"),
        Option("--out", help="output directory (candidates.parquet, dropped.parquet, report.json)",
               kwargs={"required": True}),
        Option("--temperatures", "temperatures"),
        Option("--per-temperature", "per_temperature"),
        Option("--max-new-tokens", "max_new_tokens"),
        Option("--seed", "seed"),
        Option("--device", help="cpu or cuda, for a local model; without it, cuda when available"),
    ),
)


@exit_on_config_error
def main(argv: list[str] | None = None, prog: str = "clover sample-candidates") -> int:
    parser = COMMAND.parser(prog)
    args = parser.parse_args(argv)
    if args.model.startswith(("http://", "https://")) and not args.tokenizer:
        parser.error("--tokenizer is required with a URL --model: the served `clover export` directory")
    from training.preference.candidates import sample_candidates

    cfg = COMMAND.configure(args)
    report = sample_candidates(args.prompts, args.model, args.out, cfg, args.device, args.tokenizer)
    failed = report.extra["request_failed"]
    print(f"sample-candidates: {report.input} in, {report.output} kept, dropped {report.removed}, "
          f"quarantined {report.quarantined}{f', {failed} requests failed (rerun to retry)' if failed else ''} "
          f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
