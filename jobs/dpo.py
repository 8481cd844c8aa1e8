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
        Option("--eval-data", "eval.data"),
        Option("--allow-unvalidated", "data.allow_unvalidated"),
    ),
)


def build_parser(prog: str = "clover dpo"):
    return COMMAND.parser(prog)


@exit_on_config_error
def main(argv: list[str] | None = None, prog: str = "clover dpo") -> int:
    from training.trainer.dpo import run_dpo

    args, cfg = COMMAND.parse(argv, prog)
    result = run_dpo(cfg, args.pairs, args.init, args.out, progress=print_progress)
    if os.environ.get("RANK", "0") == "0":
        print(f"dpo: {result.steps} steps, final loss {result.final_loss:.4f} -> {args.out}", file=sys.stderr)
    return 0


def print_progress(record: dict) -> None:
    """One line per logged step: loss, lr, gradient norm, tokens/s, the batch's rewards and, at evaluations, the
    held-out pairs' loss, reward accuracy and margin."""
    extra = f"reward acc {record['reward_accuracy']:.2f}  margin {record['reward_margin']:.3f}"
    if "eval_loss" in record:
        extra += (f"  eval loss {record['eval_loss']:.4f} reward acc {record['eval_reward_accuracy']:.2f} "
                  f"margin {record['eval_reward_margin']:.3f} ({record['eval_pairs']} pairs)")
    print(f"step {record['step']:>7}  loss {record['loss']:.4f}  lr {record['lr']:.3g}  "
          f"grad {record['grad_norm']:.3f}  {record['tokens_per_s']:,.0f} tok/s  {extra}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
