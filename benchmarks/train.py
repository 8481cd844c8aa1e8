"""Training throughput, MFU and peak memory of a preset on this machine, with the plan's estimate beside
the measured peak.

    python benchmarks/train.py --model clover-tiny --seq-len 1024 --steps 6            # CPU
    torchrun --nproc-per-node 1 benchmarks/train.py --model clover-1b --seq-len 8192   # one GPU

Measured peak: CUDA's max_memory_allocated; on CPU the process's peak RSS less its RSS before the
model was built (what the estimate covers: states, activations, buffers).
"""

from __future__ import annotations

import os
import sys

sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import argparse
import json
import platform
import resource
import statistics
import tempfile
from pathlib import Path

import torch

from training.trainer.model import model_config
from training.trainer.plan import GIB, estimate_memory
from training.trainer.pretrain import TrainConfig, train
from training.trainer.synthetic import write_token_shards


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="clover-tiny")
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--micro-batch", type=int, default=2)
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--dtype", default="auto", choices=("auto", "bf16", "fp32"))
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--no-gate", action="store_true")
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    world = int(os.environ.get("WORLD_SIZE", 1))
    with tempfile.TemporaryDirectory() as tmp:
        data = write_token_shards(Path(tmp) / "tokens", rows=max(64, 4 * args.micro_batch * args.grad_accum * args.steps * world),
                                  seq_len=args.seq_len, vocab=64000 if args.model != "clover-tiny" else 2048,
                                  shards=2, row_group_rows=32)
        cfg = TrainConfig(model=args.model, micro_batch=args.micro_batch, grad_accum=args.grad_accum,
                          max_steps=args.steps, tensorboard=False,
                          model_overrides={"max_seq_len": max(args.seq_len, model_config(args.model).max_seq_len)})
        cfg.parallel.compute_dtype, cfg.parallel.compile = args.dtype, args.compile
        cfg.gate.enabled = not args.no_gate
        cfg.checkpoint.every = 10**9
        baseline = _rss_bytes()
        train(cfg, str(data), str(Path(tmp) / "run"))
        records = [json.loads(line) for line in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()]
    if int(os.environ.get("RANK", 0)) != 0:
        return
    steady = records[2:] or records[-1:]  # the first steps include allocation and warm-up
    tokens_per_s = statistics.median(r["tokens_per_s_per_gpu"] for r in steady)
    mfus = [r["mfu"] for r in steady if r["mfu"] is not None]
    gate = sum(r["gate_seconds"] for r in steady) / sum(r["step_seconds"] for r in steady)
    dtype = "bf16" if (args.dtype == "bf16" or (args.dtype == "auto" and cuda)) else "fp32"
    estimate = estimate_memory(model_config(args.model), world, args.micro_batch, args.seq_len, dtype)
    peak = max(r["peak_memory_gib"] for r in records) * GIB - (0 if cuda else baseline)
    device = torch.cuda.get_device_name() if cuda else f"CPU ({platform.machine()}, {os.cpu_count()} cores)"
    print(f"{device}; {args.model}, {world} rank(s), micro-batch {args.micro_batch} x {args.seq_len}, "
          f"accum {args.grad_accum}, {dtype}, compile {args.compile}, {args.steps} steps (median of steps 3+)\n")
    print("| tokens/s per device | MFU | gate share of step time | peak memory measured | plan estimate | estimate / measured |")
    print("|---|---|---|---|---|---|")
    print(f"| {tokens_per_s:,.0f} | {statistics.median(mfus):.1%} | {gate:.3%} | {peak / GIB:.2f} GiB | "
          f"{estimate.total / GIB:.2f} GiB | {estimate.total / peak:.2f} |" if mfus else
          f"| {tokens_per_s:,.0f} | n/a (no GPU peak) | {gate:.3%} | {peak / GIB:.2f} GiB | "
          f"{estimate.total / GIB:.2f} GiB | {estimate.total / peak:.2f} |")


def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize()


if __name__ == "__main__":
    main()
