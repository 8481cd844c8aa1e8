"""The batch gate: a micro-batch whose repeated n-gram fraction exceeds `max_fraction` is not trained on.

The fraction is `quality.repetition.repeated_ngram_fraction` over the micro-batch's input token ids,
rows judged independently, padding excluded (docs/training.md defines it). A rejected micro-batch
is replaced by the next one of the stream. Under FSDP every rank must run the same number of
forward and backward passes, so the ranks decide together: each gates one candidate, the verdicts
are all-gathered, and rank r trains on the r-th accepted candidate of the window. The accepted
sequence of micro-batches is therefore the same for any world size.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from quality.repetition import repeated_ngram_fraction
from training.data import MicroBatch, TokenStream


@dataclass
class GateConfig:
    enabled: bool = field(default=True, metadata={"help": "reject micro-batches with too many repeated n-grams"})
    ngram: int = field(default=13, metadata={"help": "n of the repeated n-gram fraction, in tokens"})
    max_fraction: float = field(default=0.15, metadata={"help": "a micro-batch above this fraction is rejected"})


@dataclass(frozen=True)
class Rejection:
    index: int        # global micro-batch index in the stream
    epoch: int
    fraction: float


def batch_fraction(batch: MicroBatch, ngram: int) -> float:
    """Repeated n-gram fraction of a micro-batch's inputs (the last token is a label only)."""
    return repeated_ngram_fraction(batch.tokens[:, :-1], ngram, lengths=batch.num_tokens - 1)


class GatedStream:
    """Micro-batches that passed the gate, in the same order on any number of ranks."""

    def __init__(self, stream: TokenStream, cfg: GateConfig, rank: int, world: int,
                 gather: Callable[[list[float]], list[list[float]]], cursor: int = 0):
        self.stream, self.cfg, self.rank, self.world, self.gather = stream, cfg, rank, world, gather
        self.cursor = cursor          # micro-batches consumed, accepted or rejected
        self.gate_seconds = 0.0       # time spent computing fractions, for the overhead metric

    def next(self) -> tuple[MicroBatch, list[Rejection]]:
        if not self.cfg.enabled:
            index, self.cursor = self.cursor + self.rank, self.cursor + self.world
            return self.stream.micro_batch(index), []
        accepted: list[int] = []
        rejected: list[Rejection] = []
        base, candidate = self.cursor, None
        while len(accepted) < self.world:
            candidate = self.stream.micro_batch(base + self.rank)
            started = time.perf_counter()
            fraction = batch_fraction(candidate, self.cfg.ngram)
            self.gate_seconds += time.perf_counter() - started
            for offset, (value,) in enumerate(self.gather([fraction])):
                if value > self.cfg.max_fraction:
                    rejected.append(Rejection(base + offset, (base + offset) // self.stream.per_epoch, value))
                else:
                    accepted.append(base + offset)
            base += self.world
        last = accepted[self.world - 1]
        self.cursor = last + 1  # candidates past the last one used are gated again next time
        self.stream.prefetch([self.cursor + self.rank + self.world * k for k in range(1, 4)])
        mine = accepted[self.rank]
        batch = candidate if candidate.index == mine else self.stream.micro_batch(mine)
        return batch, [r for r in rejected if r.index < last]
