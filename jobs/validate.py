"""`clover validate PATH`: run the Great Expectations suite of any Clover dataset; exit 0 on pass, 1 on fail."""

from __future__ import annotations

import argparse
import sys

from dataprep.spark import SparkConfig, spark_session
from dataprep.validate import validate_dataset


def main(argv: list[str] | None = None, prog: str = "clover validate") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=(
        "Validate a curate, dedup, tokens or preference-pairs dataset; record the result in its report.json "
        "or manifest.json and publish Data Docs."))
    parser.add_argument("path", metavar="PATH", help="the dataset directory")
    parser.add_argument("--docs-dir", help="where to write the Data Docs site (default: PATH/data_docs)")
    parser.add_argument("--master", help="Spark master (default: spark-submit's, else local[*])")
    args = parser.parse_args(argv)
    try:
        spark = spark_session(SparkConfig(master=args.master or ""), "clover-validate")
        result = validate_dataset(spark, args.path, args.docs_dir)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(result.table())
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
