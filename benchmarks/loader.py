"""Tokens per second of the trainer's loader alone (Parquet row groups -> int64 micro-batches, with
and without the shards' sha256 check and the batch gate), against what one H100 consumes training
clover-1b at 45% MFU. One epoch: every shard's first opening (and so its hash) is inside the timing.

    python benchmarks/loader.py --sequences 4096 --seq-len 8192
"""

from __future__ import annotations

import os
import sys

sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import argparse
import platform
import tempfile
import time
from pathlib import Path

from training.trainer.data import DataConfig, TokenStream
from training.trainer.gate import GateConfig, GatedStream
from training.trainer.model import PRESETS
from training.trainer.plan import PEAK_FLOPS, flops_per_token
from training.trainer.synthetic import write_token_shards

H100_MFU = 0.45


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequences", type=int, default=4096)
    parser.add_argument("--seq-len", type=int, default=8192)
    parser.add_argument("--micro-batch", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    h100 = dict(PEAK_FLOPS)["H100"] * H100_MFU / flops_per_token(PRESETS["clover-1b"], args.seq_len)
    with tempfile.TemporaryDirectory() as tmp:
        data = write_token_shards(Path(tmp), rows=args.sequences, seq_len=args.seq_len, vocab=64000,
                                  shards=max(args.sequences // 512, 1), row_group_rows=128)
        print(f"{platform.machine()}, {os.cpu_count()} cores; {args.sequences} sequences x {args.seq_len} tokens, "
              f"uint16 shards, row groups of 128, micro-batch {args.micro_batch}, {args.workers} reader threads\n")
        print(f"| loader | tokens/s | x one H100's clover-1b consumption ({h100:.0f} tokens/s at 45% MFU) |")
        print("|---|---|---|")
        for gated, verify in ((False, False), (False, True), (True, True)):
            stream = TokenStream(str(data), args.micro_batch, DataConfig(workers=args.workers, verify_shards=verify),
                                 doc_starts=False)
            source = GatedStream(stream, GateConfig(enabled=gated), 0, 1, lambda values: [values])
            started, tokens = time.perf_counter(), 0
            for _ in range(stream.per_epoch):
                batch, _ = source.next()
                tokens += batch.tokens.shape[0] * (batch.tokens.shape[1] - 1)
            rate = tokens / (time.perf_counter() - started)
            stream.close()
            name = ("stream + shard sha256 + repeated 13-gram gate" if gated else
                    "stream + shard sha256 check on first open" if verify else "stream (read, order, int64 batch)")
            print(f"| {name} | {rate:,.0f} | {rate / h100:.1f} |")


if __name__ == "__main__":
    main()
