"""`clover validate PATH [--kind documents|pairs|tokens]`: run the Great Expectations suite of a dataset;
exit 0 on pass, 1 on fail, 2 when it cannot be validated (checked before Spark starts)."""

from __future__ import annotations

import sys

from dataprep.spark import spark_session
from dataprep.stages import dataset_kinds
from dataprep.validate import ValidateConfig, check_dataset, validate_dataset
from jobs.common import add_verbose_argument, exit_on_config_error
from jobs.flags import Command, Option
from schemas import storage

COMMAND = Command(
    description="Validate a curate, dedup, tokens or preference-pairs dataset, or with --kind any Parquet documents "
                "or pairs directory or a single Parquet or JSONL file; record the result beside it and publish "
                "Data Docs.",
    config=ValidateConfig,
    options=(
        Option("path", help="the dataset directory, or with --kind a single Parquet or JSONL file",
               kwargs={"metavar": "PATH"}),
        Option("--kind", "kind", kwargs={"choices": sorted(dataset_kinds())}),
        Option("--docs-dir", "docs_dir"),
        Option("--master", "spark.master"),
    ),
)


@exit_on_config_error
def main(argv: list[str] | None = None, prog: str = "clover validate") -> int:
    parser = COMMAND.parser(prog)
    add_verbose_argument(parser)
    args = parser.parse_args(argv)
    cfg = COMMAND.configure(args)
    try:
        target = check_dataset(args.path, cfg.kind or None)  # every check that needs no Spark, before it starts
        spark = spark_session(cfg.spark, "clover-validate", storage.total_bytes(args.path))
        result = validate_dataset(spark, args.path, cfg.docs_dir or None, target=target)
    except (FileNotFoundError, ValueError) as err:  # UnsafeManifestPath is a ValueError
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(result.table())
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
