"""`clover tokenize`: packed, shuffled token shards with a manifest (`jobs/tokenize_stage.py` for spark-submit)."""

from __future__ import annotations

import sys

from dataprep.spark import spark_session
from dataprep.tokenize_stage import TokenizeConfig, run_tokenize
from jobs.common import (
    add_spark_arguments,
    add_validation_arguments,
    exit_on_config_error,
    stage_config,
    stage_parser,
    validation_exit,
)


@exit_on_config_error
def main(argv: list[str] | None = None, prog: str = "clover tokenize") -> int:
    parser = stage_parser(prog, "Encode documents, pack rows of seq_len + 1 tokens, write shards and manifest.json.")
    parser.add_argument("input", metavar="INPUT", help="a documents dataset (or a curate/dedup output directory)")
    parser.add_argument("--tokenizer", required=True, help="directory from clover train-tokenizer")
    parser.add_argument("--out", required=True, help="output directory (shards/, manifest.json, report.json)")
    parser.add_argument("--seq-len", type=int, help="sequence length (default 8192)")
    add_spark_arguments(parser)
    add_validation_arguments(parser)
    args = parser.parse_args(argv)
    cfg = stage_config(TokenizeConfig, args, {"seq_len": args.seq_len, "spark.master": args.master,
                                              "spark.partitions": args.partitions})
    spark = spark_session(cfg.spark, "clover-tokenize")
    report, manifest = run_tokenize(spark, args.input, args.tokenizer, args.out, cfg, validate=not args.no_validate,
                                    allow_unvalidated=args.allow_unvalidated)
    print(f"tokenize: {report.input} documents in, {report.output} tokenized into {manifest['sequences']} sequences "
          f"of {cfg.seq_len + 1} ({manifest['tokens']} tokens, {len(manifest['shards'])} shards) -> {args.out}")
    return validation_exit(report)


if __name__ == "__main__":
    sys.exit(main())
