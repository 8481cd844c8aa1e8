"""`clover plan`: parameters, FLOPs per token and per-GPU memory of a preset, without allocating it."""

from __future__ import annotations

import argparse
import sys

from training.trainer.model import PRESETS
from training.trainer.plan import format_plan


def main(argv: list[str] | None = None, prog: str = "clover plan") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=(
        "Print a preset's parameter count, FLOPs per token (6N + 12·L·H·d·S) and a per-GPU memory estimate "
        "under FSDP full sharding (see docs/training.md)."))
    parser.add_argument("--model", required=True, choices=sorted(PRESETS))
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--micro-batch", type=int, default=2)
    parser.add_argument("--seq-len", type=int, default=8192)
    parser.add_argument("--dtype", choices=("bf16", "fp32"), default="bf16", help="compute dtype")
    parser.add_argument("--no-activation-checkpointing", action="store_true")
    args = parser.parse_args(argv)
    print(format_plan(args.model, PRESETS[args.model], args.gpus, args.micro_batch, args.seq_len, args.dtype,
                      not args.no_activation_checkpointing))
    return 0


if __name__ == "__main__":
    sys.exit(main())
