"""`torchrun --nproc-per-node N jobs/train.py ARGS` and `clover train ARGS`: pretrain on token shards."""

from __future__ import annotations

import os
import sys

from jobs.common import exit_on_config_error, stage_config, stage_parser
from training.trainer.model import PRESETS

DESCRIPTION = ("Pretrain a Clover preset with FSDP on validated token shards, through the repeated n-gram "
               "batch gate. Running the same command again resumes from the newest complete checkpoint.")


def build_parser(prog: str = "clover train"):
    parser = stage_parser(prog, DESCRIPTION)
    parser.add_argument("--data", required=True, help="token shards: a `clover tokenize` output dir or manifest (local or fsspec URL)")
    parser.add_argument("--model", required=True, choices=sorted(PRESETS), help="model preset")
    parser.add_argument("--out", required=True, help="run directory: metrics.jsonl, checkpoints/, tensorboard/")
    parser.add_argument("--max-steps", type=int, help="optimizer steps (default 150000)")
    parser.add_argument("--checkpoint-every", type=int, help="steps between checkpoints (default 1000)")
    parser.add_argument("--micro-batch", type=int, help="sequences per rank per forward pass (default 2)")
    parser.add_argument("--grad-accum", type=int, help="micro-batches per optimizer step (default 16)")
    parser.add_argument("--allow-unvalidated", action="store_true",
                        help="train on shards whose validation failed or is missing (recorded in RUN/config.json)")
    return parser


@exit_on_config_error
def main(argv: list[str] | None = None, prog: str = "clover train") -> int:
    from training.trainer.pretrain import TrainConfig, train

    args = build_parser(prog).parse_args(argv)
    cfg = stage_config(TrainConfig, args, {
        "model": args.model, "max_steps": args.max_steps, "checkpoint.every": args.checkpoint_every,
        "micro_batch": args.micro_batch, "grad_accum": args.grad_accum,
        "data.allow_unvalidated": True if args.allow_unvalidated else None,
    })
    result = train(cfg, args.data, args.out, progress=print_progress)
    if os.environ.get("RANK", "0") == "0":
        print(f"train: {result.steps} steps, final loss {result.final_loss:.4f} -> {args.out}", file=sys.stderr)
    return 0


def print_progress(record: dict) -> None:
    extra = (f"reward acc {record['reward_accuracy']:.2f}  margin {record['reward_margin']:.3f}"
             if "reward_accuracy" in record else f"gate rejections {record.get('gate_rejections_total', 0)} "
             f"({record.get('gate_rejection_rate', 0):.1%} recent)")
    print(f"step {record['step']:>7}  loss {record['loss']:.4f}  lr {record['lr']:.3g}  "
          f"grad {record['grad_norm']:.3f}  {record['tokens_per_s']:,.0f} tok/s  {extra}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
