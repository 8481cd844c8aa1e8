"""`clover make-sample`: write the built-in dirty sample corpus (made on this machine, no download)."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field

from jobs.common import exit_on_config_error
from jobs.flags import Command, Option
from schemas.sample import write_sample, write_sample_pairs


@dataclass
class SampleConfig:
    """The size and seed of the built-in sample."""

    docs: int = field(default=2000, metadata={"help": "about how many documents"})
    pairs: int = field(default=200, metadata={"help": "about how many preference pairs (with --pairs-out)"})
    seed: int = field(default=0, metadata={"help": "sample seed"})


COMMAND = Command(
    description="Write a deterministic sample crawl: Python docstring prose dirtied with duplicates, near duplicates, "
                "boilerplate, spam, short junk, non-English text and malformed records.",
    config=SampleConfig,
    options=(
        Option("--out", help="directory for crawl-00.jsonl and crawl-01.jsonl.gz", kwargs={"required": True}),
        Option("--docs", "docs"),
        Option("--seed", "seed"),
        Option("--pairs-out", help="also write preference pairs (pairs.jsonl) to this directory"),
        Option("--pairs", "pairs"),
    ),
)


@exit_on_config_error
def main(argv: list[str] | None = None, prog: str = "clover make-sample") -> int:
    args, cfg = COMMAND.parse(argv, prog)
    result = {"out": args.out, "planted": write_sample(args.out, cfg.docs, cfg.seed)}
    if args.pairs_out:
        result.update(pairs_out=args.pairs_out, pairs_planted=write_sample_pairs(args.pairs_out, cfg.pairs, cfg.seed))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
