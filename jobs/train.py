"""`torchrun --nproc-per-node N jobs/train.py ARGS` and `clover train ARGS`: pretrain on token shards."""

from __future__ import annotations

import os
import sys

from jobs.common import exit_on_config_error
from jobs.flags import Command, Option
from training.trainer.model import PRESETS
from training.trainer.pretrain import TrainConfig

COMMAND = Command(
    description="Pretrain a Clover preset with FSDP on validated token shards, through the repeated n-gram "
                "batch gate. Running the same command again resumes from the newest complete checkpoint.",
    config=TrainConfig,
    options=(
        Option("--data", help="token shards: a `clover tokenize` output dir or manifest (local or fsspec URL)",
               kwargs={"required": True}),
        Option("--model", "model", kwargs={"required": True, "choices": sorted(PRESETS)}),
        Option("--out", help="run directory: metrics.jsonl, checkpoints/, tensorboard/", kwargs={"required": True}),
        Option("--max-steps", "max_steps"),
        Option("--checkpoint-every", "checkpoint.every"),
        Option("--micro-batch", "micro_batch"),
        Option("--grad-accum", "grad_accum"),
        Option("--eval-data", "eval.data"),
        Option("--allow-unvalidated", "data.allow_unvalidated",
               "train on shards whose validation failed or is missing (recorded in RUN/config.json)"),
    ),
)


def build_parser(prog: str = "clover train"):
    return COMMAND.parser(prog)


@exit_on_config_error
def main(argv: list[str] | None = None, prog: str = "clover train") -> int:
    from training.trainer.pretrain import train

    args, cfg = COMMAND.parse(argv, prog)
    result = train(cfg, args.data, args.out, progress=print_progress)
    if os.environ.get("RANK", "0") == "0":
        print(f"train: {result.steps} steps, final loss {result.final_loss:.4f} -> {args.out}", file=sys.stderr)
    return 0


def print_progress(record: dict) -> None:
    extra = (f"reward acc {record['reward_accuracy']:.2f}  margin {record['reward_margin']:.3f}"
             if "reward_accuracy" in record else f"gate rejections {record.get('gate_rejections_total', 0)} "
             f"({record.get('gate_rejection_rate', 0):.1%} recent)")
    if "eval_loss" in record:
        extra += f"  eval loss {record['eval_loss']:.4f} (ppl {record['eval_ppl']:.1f})"
    print(f"step {record['step']:>7}  loss {record['loss']:.4f}  lr {record['lr']:.3g}  "
          f"grad {record['grad_norm']:.3f}  {record['tokens_per_s']:,.0f} tok/s  {extra}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
