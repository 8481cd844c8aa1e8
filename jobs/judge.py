"""`clover judge CANDIDATES --out OUT --judge URL_OR_MODEL`: pairwise judgments in both orders, resumable."""

from __future__ import annotations

import sys

from jobs.common import exit_on_config_error, stage_config, stage_parser


@exit_on_config_error
def main(argv: list[str] | None = None, prog: str = "clover judge") -> int:
    parser = stage_parser(prog, "Judge each prompt's candidates pairwise, in both orders, with an OpenAI-compatible "
                                "endpoint or a local exported model. Rerun to resume.")
    parser.add_argument("candidates", metavar="CANDIDATES", help="a `clover sample-candidates` output")
    parser.add_argument("--out", required=True)
    parser.add_argument("--judge", required=True, help="http(s)://host:port (OpenAI-compatible) or an exported model dir")
    parser.add_argument("--template", help="judging prompt template file ({prompt}, {answer_a}, {answer_b})")
    parser.add_argument("--model-name", help="model name sent to the endpoint")
    parser.add_argument("--api-key-env", help="environment variable with the API key (default OPENAI_API_KEY)")
    parser.add_argument("--concurrency", type=int)
    parser.add_argument("--timeout", type=float)
    parser.add_argument("--retries", type=int)
    parser.add_argument("--guided", action="store_true", help="ask for guided_choice (vLLM, clover serve)")
    parser.add_argument("--limit", type=int, help="ask at most this many new requests, then stop")
    args = parser.parse_args(argv)
    from training.preference.judge import JudgeConfig, judge_candidates

    cfg = stage_config(JudgeConfig, args, {
        "template": args.template, "model": args.model_name, "api_key_env": args.api_key_env,
        "concurrency": args.concurrency, "timeout": args.timeout, "retries": args.retries,
        "guided": True if args.guided else None})
    report = judge_candidates(args.candidates, args.out, args.judge, cfg, limit=args.limit)
    print(f"judge: {report.input} requests answered: {report.output} verdicts, unparseable {report.removed}, "
          f"failed {report.quarantined}, pending {report.extra['pending']}, "
          f"order disagreements {report.extra['disagreements']} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
