"""`clover dedup` and `spark-submit jobs/dedup.py`: exact and MinHash-LSH near-duplicate removal."""

from __future__ import annotations

import sys

from dataprep.dedup import DedupConfig, run_dedup
from dataprep.spark import spark_session
from jobs.common import (
    add_spark_arguments,
    add_validation_arguments,
    exit_on_config_error,
    stage_config,
    stage_parser,
    validation_exit,
)
from quality.minhash import lsh_params

DESCRIPTION = "Remove exact and near-duplicate documents (MinHash-LSH, verified, clustered on Spark)."


def build_parser(prog: str):
    parser = stage_parser(prog, DESCRIPTION)
    parser.add_argument("input", metavar="INPUT", help="a documents dataset (or a curate output directory)")
    parser.add_argument("--out", required=True, help="output directory (documents/, duplicates/, quarantine/)")
    parser.add_argument("--threshold", type=float,
                        help="Jaccard threshold; with --num-perm it also picks bands and rows (datasketch's method)")
    parser.add_argument("--num-perm", type=int, help="MinHash permutations (default 112: 14 bands of 8 rows)")
    parser.add_argument("--score-column", help="keep the highest-scoring member of a cluster (then smallest id)")
    parser.add_argument("--against", metavar="INDEX", help="also remove duplicates of an earlier dataset's index")
    parser.add_argument("--write-index", metavar="INDEX", help="write the kept documents' signatures for --against")
    add_spark_arguments(parser)
    add_validation_arguments(parser)
    return parser


@exit_on_config_error
def main(argv: list[str] | None = None, prog: str = "clover dedup") -> int:
    args = build_parser(prog).parse_args(argv)
    flags = {"score_column": args.score_column, "spark.master": args.master, "spark.partitions": args.partitions,
             "threshold": args.threshold, "num_perm": args.num_perm}
    cfg = stage_config(DedupConfig, args, flags)
    if args.threshold is not None or args.num_perm is not None:
        params = lsh_params(cfg.threshold, cfg.num_perm)
        cfg.bands, cfg.rows = params.bands, params.rows
    spark = spark_session(cfg.spark, "clover-dedup")
    report = run_dedup(spark, args.input, args.out, cfg, against=args.against, write_index=args.write_index,
                       validate=not args.no_validate, allow_unvalidated=args.allow_unvalidated)
    print(f"dedup: {report.input} in, {report.output} kept, removed {report.removed}, "
          f"quarantined {report.quarantined}; {report.extra['candidate_pairs']} candidate pairs, "
          f"{report.extra['verified_pairs']} verified, bands {cfg.bands}x{cfg.rows} -> {args.out}")
    return validation_exit(report)


if __name__ == "__main__":
    sys.exit(main())
