"""`clover sample-candidates PROMPTS --model RUN_OR_DIR --out OUT`: candidates at several temperatures."""

from __future__ import annotations

import sys

from jobs.common import exit_on_config_error, stage_config, stage_parser


@exit_on_config_error
def main(argv: list[str] | None = None, prog: str = "clover sample-candidates") -> int:
    parser = stage_parser(prog, "Generate candidate responses for a prompt set (JSONL or Parquet with prompt_id, prompt) "
                                "at several temperatures; drop degenerate ones with a reason; rerun to resume.")
    parser.add_argument("prompts", nargs="+", metavar="PROMPTS")
    parser.add_argument("--model", required=True, help="a run directory or a `clover export` directory")
    parser.add_argument("--out", required=True)
    parser.add_argument("--temperatures", help="comma-separated (default 0.3,0.7,1.0)")
    parser.add_argument("--per-temperature", type=int, help="candidates per prompt and temperature (default 2)")
    parser.add_argument("--max-new-tokens", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    from training.candidates import SamplingConfig, sample_candidates

    temperatures = [float(t) for t in args.temperatures.split(",")] if args.temperatures else None
    cfg = stage_config(SamplingConfig, args, {"temperatures": temperatures, "per_temperature": args.per_temperature,
                                              "max_new_tokens": args.max_new_tokens, "seed": args.seed})
    report = sample_candidates(args.prompts, args.model, args.out, cfg, args.device)
    print(f"sample-candidates: {report.input} in, {report.output} kept, dropped {report.removed}, "
          f"quarantined {report.quarantined} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
