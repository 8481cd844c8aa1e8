"""How often the 15% batch gate rejects clean and pathological micro-batches, per n, and what it costs.

Clean: every micro-batch of a token-shard dataset (epoch 0 of the trainer's own stream).
Pathological: the same micro-batches with one row's tail replaced by a loop of real tokens (the
write-up's "pathologically long documents that contained repeated token sequences"), the loop
covering 100%, 60% or 40% of the row, with a period drawn from 8 to 256 tokens.

    python benchmarks/gate.py --data out/tokens8k --ngrams 4,6,8,10,13,16,20
"""

from __future__ import annotations

import os
import sys

sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import argparse
import platform
import time

import numpy as np

from training.trainer.data import DataConfig, MicroBatch, TokenStream
from training.trainer.gate import batch_fraction

LOOP_COVERAGE = (1.0, 0.6, 0.4)


def with_loop(batch: MicroBatch, coverage: float, rng: np.random.Generator) -> MicroBatch:
    tokens = batch.tokens.copy()
    row, width = int(rng.integers(len(tokens))), tokens.shape[1]
    period = int(rng.integers(8, 257))
    start_in_source = int(rng.integers(0, max(int(batch.num_tokens[row]) - period, 1)))
    loop = tokens[row, start_in_source:start_in_source + period]
    begin = width - int(width * coverage)
    tokens[row, begin:] = np.resize(loop, width - begin)
    lengths = batch.num_tokens.copy()
    lengths[row] = width
    return MicroBatch(batch.index, tokens, lengths, batch.doc_starts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="a validated `clover tokenize` output")
    parser.add_argument("--ngrams", default="4,6,8,10,13,16,20")
    parser.add_argument("--threshold", type=float, default=0.15)
    parser.add_argument("--micro-batch", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    stream = TokenStream(args.data, args.micro_batch, DataConfig(seed=args.seed))
    clean = [stream.micro_batch(i) for i in range(stream.per_epoch)]
    stream.close()
    rng = np.random.default_rng(args.seed)
    pathological = {c: [with_loop(b, c, rng) for b in clean] for c in LOOP_COVERAGE}
    print(f"{platform.machine()}, {os.cpu_count()} cores; data {args.data}: {len(clean)} micro-batches of "
          f"{args.micro_batch} x {stream.seq_len} tokens; threshold {args.threshold}\n")
    header = "| n | clean rejected | clean fraction p50 / p99 / max | " + " | ".join(
        f"loop {int(c * 100)}% of a row rejected" for c in LOOP_COVERAGE) + " | ms per micro-batch |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for n in (int(x) for x in args.ngrams.split(",")):
        started = time.perf_counter()
        fractions = np.array([batch_fraction(b, n) for b in clean])
        elapsed = (time.perf_counter() - started) / len(clean) * 1000
        rates = [np.mean([batch_fraction(b, n) > args.threshold for b in pathological[c]]) for c in LOOP_COVERAGE]
        p50, p99 = np.percentile(fractions, [50, 99])
        print(f"| {n} | {np.mean(fractions > args.threshold):.2%} | {p50:.3f} / {p99:.3f} / {fractions.max():.3f} | "
              + " | ".join(f"{r:.1%}" for r in rates) + f" | {elapsed:.2f} |")


if __name__ == "__main__":
    main()
