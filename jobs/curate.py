"""`clover curate` and `spark-submit jobs/curate.py`: ingest, normalize and quality-gate raw text."""

from __future__ import annotations

import sys

from dataprep.curate import CurateConfig, run_curate
from dataprep.spark import spark_session
from jobs.common import (
    add_spark_arguments,
    add_validation_arguments,
    exit_on_config_error,
    stage_config,
    stage_parser,
    validation_exit,
)

DESCRIPTION = "Ingest JSONL/Parquet/.txt, normalize, score quality, and keep, reject or quarantine each record."


def build_parser(prog: str = "clover curate"):
    parser = stage_parser(prog, DESCRIPTION)
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="files, directories or globs")
    parser.add_argument("--out", required=True, help="output directory (documents/, rejected/, quarantine/)")
    parser.add_argument("--text-field", help="input field with the text (default: text)")
    parser.add_argument("--id-field", help="input field with the id (default: id; derived when absent)")
    add_spark_arguments(parser)
    add_validation_arguments(parser, gated_input=False)
    return parser


@exit_on_config_error
def main(argv: list[str] | None = None, prog: str = "clover curate") -> int:
    args = build_parser(prog).parse_args(argv)
    cfg = stage_config(CurateConfig, args, {
        "ingest.text_field": args.text_field,
        "ingest.id_field": args.id_field,
        "spark.master": args.master,
        "spark.partitions": args.partitions,
    })
    cfg.validate()
    spark = spark_session(cfg.spark, "clover-curate")
    report = run_curate(spark, args.inputs, args.out, cfg, validate=not args.no_validate)
    print(f"curate: {report.input} in, {report.output} kept, removed {report.removed}, "
          f"quarantined {report.quarantined} -> {args.out}")
    return validation_exit(report)


if __name__ == "__main__":
    sys.exit(main())
