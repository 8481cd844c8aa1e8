"""`clover dpo` and `torchrun --nproc-per-node N jobs/dpo.py`: DPO from a pretraining run on prepared pairs."""

from __future__ import annotations

import os
import sys

from jobs.common import exit_on_config_error, stage_config, stage_parser


def build_parser(prog: str = "clover dpo"):
    parser = stage_parser(prog, "Align a pretrained run with DPO (the write-up's sigmoid loss). Reference log-probs "
                                "are computed once and stored beside the pairs; running again resumes.")
    parser.add_argument("--pairs", required=True, help="a `clover prep-pairs` output directory")
    parser.add_argument("--init", required=True, help="the pretraining run directory (its newest checkpoint starts DPO)")
    parser.add_argument("--out", required=True, help="run directory for DPO")
    parser.add_argument("--max-steps", type=int, help="optimizer steps (default 2500)")
    parser.add_argument("--beta", type=float, help="DPO beta (default 0.1)")
    parser.add_argument("--micro-batch", type=int, help="pairs per rank per forward pass (default 2)")
    parser.add_argument("--grad-accum", type=int, help="micro-batches per optimizer step (default 16)")
    parser.add_argument("--checkpoint-every", type=int, help="steps between checkpoints (default 1000)")
    parser.add_argument("--reference", help="reference log-probs sidecar (default PAIRS/reference_logps.parquet)")
    parser.add_argument("--allow-unvalidated", action="store_true", help="accept pairs whose validation failed or is missing")
    return parser


@exit_on_config_error
def main(argv: list[str] | None = None, prog: str = "clover dpo") -> int:
    from jobs.train import print_progress
    from training.trainer.dpo import DPOConfig, run_dpo

    args = build_parser(prog).parse_args(argv)
    cfg = stage_config(DPOConfig, args, {
        "max_steps": args.max_steps, "beta": args.beta, "micro_batch": args.micro_batch, "grad_accum": args.grad_accum,
        "checkpoint.every": args.checkpoint_every, "reference": args.reference,
        "data.allow_unvalidated": True if args.allow_unvalidated else None,
    })
    result = run_dpo(cfg, args.pairs, args.init, args.out, progress=print_progress)
    if os.environ.get("RANK", "0") == "0":
        print(f"dpo: {result.steps} steps, final loss {result.final_loss:.4f} -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
