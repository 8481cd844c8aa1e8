"""`clover make-sample`: write the built-in dirty sample corpus (made on this machine, no download)."""

from __future__ import annotations

import argparse
import json
import sys

from dataprep.sample import write_sample


def main(argv: list[str] | None = None, prog: str = "clover make-sample") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=(
        "Write a deterministic sample crawl: Python docstring prose dirtied with duplicates, near duplicates, "
        "boilerplate, spam, short junk, non-English text and malformed records."))
    parser.add_argument("--out", required=True, help="directory for crawl-00.jsonl and crawl-01.jsonl.gz")
    parser.add_argument("--docs", type=int, default=2000, help="about how many documents")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    planted = write_sample(args.out, args.docs, args.seed)
    print(json.dumps({"out": args.out, "planted": planted}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
