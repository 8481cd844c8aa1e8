"""`clover validate PATH [--kind documents|pairs|tokens]`: run the Great Expectations suite of a dataset;
exit 0 on pass, 1 on fail, 2 when it cannot be validated (checked before Spark starts)."""

from __future__ import annotations

import argparse
import sys

from dataprep.spark import SparkConfig, spark_session
from dataprep.stages import dataset_kinds
from dataprep.validate import check_dataset, validate_dataset
from jobs.common import add_verbose_argument


def main(argv: list[str] | None = None, prog: str = "clover validate") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=(
        "Validate a curate, dedup, tokens or preference-pairs dataset, or with --kind any Parquet documents or "
        "pairs directory or a single Parquet or JSONL file; record the result beside it and publish Data Docs."))
    parser.add_argument("path", metavar="PATH", help="the dataset directory, or with --kind a single Parquet or JSONL file")
    parser.add_argument("--kind", choices=sorted(dataset_kinds()), help="what a dataset Clover did not write holds (the kind "
                        "of a Clover dataset is read from its report.json or manifest.json); the result goes to "
                        "PATH/validation.json, which the next stage's gate reads (for a single file: FILE.validation.json)")
    parser.add_argument("--docs-dir", help="where to write the Data Docs site (default: PATH/data_docs, FILE.data_docs)")
    parser.add_argument("--master", help="Spark master (default: spark-submit's, else local[*])")
    add_verbose_argument(parser)
    args = parser.parse_args(argv)
    try:
        target = check_dataset(args.path, args.kind)  # every check that needs no Spark, before it starts
        spark = spark_session(SparkConfig(master=args.master or ""), "clover-validate")
        result = validate_dataset(spark, args.path, args.docs_dir, target=target)
    except (FileNotFoundError, ValueError) as err:  # UnsafeManifestPath is a ValueError
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(result.table())
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
