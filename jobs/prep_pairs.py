"""`clover prep-pairs` and `spark-submit jobs/prep_pairs.py`: preference pairs for DPO."""

from __future__ import annotations

import sys

from dataprep.pairs import PairsConfig, run_prep_pairs
from dataprep.spark import spark_session
from jobs.common import (
    add_spark_arguments,
    add_validation_arguments,
    exit_on_config_error,
    stage_config,
    stage_parser,
    validation_exit,
)


@exit_on_config_error
def main(argv: list[str] | None = None, prog: str = "clover prep-pairs") -> int:
    parser = stage_parser(prog, "Normalize, check, deduplicate, tokenize (chat template) and validate preference pairs.")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="JSONL (.gz/.zst) or Parquet with pair_id, prompt, chosen, rejected[, source, meta]")
    parser.add_argument("--tokenizer", required=True, help="directory from clover train-tokenizer")
    parser.add_argument("--out", required=True, help="output directory (pairs/, removed/, quarantine/, report.json)")
    parser.add_argument("--max-length", type=int, help="most tokens of prompt + one response (default 2048)")
    add_spark_arguments(parser)
    add_validation_arguments(parser, gated_input=False)
    args = parser.parse_args(argv)
    cfg = stage_config(PairsConfig, args, {"max_length": args.max_length, "spark.master": args.master,
                                           "spark.partitions": args.partitions})
    spark = spark_session(cfg.spark, "clover-prep-pairs")
    report = run_prep_pairs(spark, args.inputs, args.tokenizer, args.out, cfg, validate=not args.no_validate)
    print(f"prep-pairs: {report.input} in, {report.output} pairs, removed {report.removed}, quarantined "
          f"{report.quarantined}, truncated {report.extra['truncated']} -> {args.out}")
    return validation_exit(report)


if __name__ == "__main__":
    sys.exit(main())
