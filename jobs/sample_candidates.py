"""`clover sample-candidates PROMPTS --model RUN_OR_DIR --out OUT`: candidates at several temperatures."""

from __future__ import annotations

import sys

from jobs.common import exit_on_config_error, stage_config, stage_parser


@exit_on_config_error
def main(argv: list[str] | None = None, prog: str = "clover sample-candidates") -> int:
    parser = stage_parser(prog, "Generate candidate responses for a prompt set (JSONL or Parquet with prompt_id, prompt) "
                                "at several temperatures; drop degenerate ones with a reason; rerun to resume.")
    parser.add_argument("prompts", nargs="+", metavar="PROMPTS")
    parser.add_argument("--model", required=True, help="a run directory, a `clover export` directory, or the "
                        "http(s) URL of an OpenAI-compatible completions server (vllm serve EXPORT, clover serve)")
    parser.add_argument("--tokenizer", help="with a URL: the served `clover export` directory (or its tokenizer)")
    parser.add_argument("--model-name", help="with a URL: the model name to ask for (default: the first it lists)")
    parser.add_argument("--api-key-env", help="with a URL: environment variable with the API key")
    parser.add_argument("--concurrency", type=int, help="with a URL: requests in flight at once")
    parser.add_argument("--timeout", type=float, help="with a URL: seconds per request")
    parser.add_argument("--retries", type=int, help="with a URL: retries after a failed request")
    parser.add_argument("--out", required=True)
    parser.add_argument("--temperatures", help="comma-separated (default 0.3,0.7,1.0)")
    parser.add_argument("--per-temperature", type=int, help="candidates per prompt and temperature (default 2)")
    parser.add_argument("--max-new-tokens", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    if args.model.startswith(("http://", "https://")) and not args.tokenizer:
        parser.error("--tokenizer is required with a URL --model: the served `clover export` directory")
    from training.preference.candidates import SamplingConfig, sample_candidates

    temperatures = [float(t) for t in args.temperatures.split(",")] if args.temperatures else None
    cfg = stage_config(SamplingConfig, args, {"temperatures": temperatures, "per_temperature": args.per_temperature,
                                              "max_new_tokens": args.max_new_tokens, "seed": args.seed,
                                              "model_name": args.model_name, "api_key_env": args.api_key_env,
                                              "concurrency": args.concurrency, "timeout": args.timeout,
                                              "retries": args.retries})
    report = sample_candidates(args.prompts, args.model, args.out, cfg, args.device, args.tokenizer)
    failed = report.extra["request_failed"]
    print(f"sample-candidates: {report.input} in, {report.output} kept, dropped {report.removed}, "
          f"quarantined {report.quarantined}{f', {failed} requests failed (rerun to retry)' if failed else ''} "
          f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
