"""`clover dpo` and `torchrun --nproc-per-node N jobs/dpo.py`: DPO from a pretraining run on prepared pairs."""

from __future__ import annotations

import os
import sys

from jobs.common import exit_on_config_error
from jobs.flags import Command, Option
from training.trainer.dpo import DPOConfig

COMMAND = Command(
    description="Align a pretrained run with DPO (the write-up's sigmoid loss). Reference log-probs are computed "
                "once and stored beside the pairs; running again resumes.",
    config=DPOConfig,
    options=(
        Option("--pairs", help="a `clover prep-pairs` output directory", kwargs={"required": True}),
        Option("--init", help="the pretraining run directory (its newest checkpoint starts DPO)",
               kwargs={"required": True}),
        Option("--out", help="run directory for DPO", kwargs={"required": True}),
        Option("--max-steps", "max_steps"),
        Option("--beta", "beta"),
        Option("--micro-batch", "micro_batch"),
        Option("--grad-accum", "grad_accum"),
        Option("--checkpoint-every", "checkpoint.every"),
        Option("--reference", "reference"),
        Option("--allow-unvalidated", "data.allow_unvalidated"),
    ),
)


def build_parser(prog: str = "clover dpo"):
    return COMMAND.parser(prog)


@exit_on_config_error
def main(argv: list[str] | None = None, prog: str = "clover dpo") -> int:
    from jobs.train import print_progress
    from training.trainer.dpo import run_dpo

    args, cfg = COMMAND.parse(argv, prog)
    result = run_dpo(cfg, args.pairs, args.init, args.out, progress=print_progress)
    if os.environ.get("RANK", "0") == "0":
        print(f"dpo: {result.steps} steps, final loss {result.final_loss:.4f} -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
