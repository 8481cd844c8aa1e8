"""`clover make-sample`: write the built-in dirty sample corpus (made on this machine, no download)."""

from __future__ import annotations

import argparse
import json
import sys

from schemas.sample import write_sample, write_sample_pairs


def main(argv: list[str] | None = None, prog: str = "clover make-sample") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=(
        "Write a deterministic sample crawl: Python docstring prose dirtied with duplicates, near duplicates, "
        "boilerplate, spam, short junk, non-English text and malformed records."))
    parser.add_argument("--out", required=True, help="directory for crawl-00.jsonl and crawl-01.jsonl.gz")
    parser.add_argument("--docs", type=int, default=2000, help="about how many documents")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pairs-out", help="also write preference pairs (pairs.jsonl) to this directory")
    parser.add_argument("--pairs", type=int, default=200, help="about how many preference pairs")
    args = parser.parse_args(argv)
    result = {"out": args.out, "planted": write_sample(args.out, args.docs, args.seed)}
    if args.pairs_out:
        result.update(pairs_out=args.pairs_out, pairs_planted=write_sample_pairs(args.pairs_out, args.pairs, args.seed))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
