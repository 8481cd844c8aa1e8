"""The batch gate: a micro-batch whose repeated n-gram fraction exceeds `max_fraction` is not trained on.

The fraction is `quality.repetition.repeated_ngram_fraction` over the micro-batch's input token ids,
rows judged independently, padding excluded (docs/training.md defines it). A rejected micro-batch
is replaced by the next one of the stream. Under FSDP every rank must run the same number of
forward and backward passes, so the ranks decide together: each gates one candidate, the verdicts
are all-gathered, and rank r trains on the r-th accepted candidate of the window. The accepted
sequence of micro-batches is therefore the same for any world size.

The gate is bounded: data that is (almost) all rejected would otherwise cycle through epochs
forever. Every rank sees the same gathered verdicts, so every rank reaches a limit at the same
candidate and raises the same `GateStalled`, with no collective left waiting.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from quality.repetition import repeated_ngram_fraction
from training.trainer.data import CorruptShard, MicroBatch, TokenStream


@dataclass
class GateConfig:
    enabled: bool = field(default=True, metadata={"help": "reject micro-batches with too many repeated n-grams"})
    ngram: int = field(default=13, metadata={"help": "n of the repeated n-gram fraction, in tokens"})
    max_fraction: float = field(default=0.15, metadata={"help": "a micro-batch above this fraction is rejected"})
    max_consecutive_rejections: int = field(default=256, metadata={
        "help": "stop training when this many micro-batches in a row are rejected (0: no limit)"})
    max_rejected_fraction: float = field(default=0.5, metadata={
        "help": "stop training when more than this share of the last `rejection_window` micro-batches was rejected"})
    rejection_window: int = field(default=1000, metadata={
        "help": "micro-batches over which the rejected share is measured (0: no limit)"})


class GateStalled(RuntimeError):
    """The gate rejected too much of the data: training stops instead of spinning through epochs."""


@dataclass(frozen=True)
class Rejection:
    index: int        # global micro-batch index in the stream
    epoch: int
    fraction: float
    shards: tuple[str, ...] = ()  # shard files the micro-batch's rows come from


def batch_fraction(batch: MicroBatch, ngram: int) -> float:
    """Repeated n-gram fraction of a micro-batch's inputs (the last token is a label only)."""
    return repeated_ngram_fraction(batch.tokens[:, :-1], ngram, lengths=batch.num_tokens - 1)


class GatedStream:
    """Micro-batches that passed the gate, in the same order on any number of ranks.

    `on_reject` is called once per rejected micro-batch as soon as its verdict is known (even one that
    ends up past the window's last accepted candidate), so a stalled gate still leaves its log.
    """

    def __init__(self, stream: TokenStream, cfg: GateConfig, rank: int, world: int,
                 gather: Callable[[list[float]], list[list[float]]], cursor: int = 0,
                 on_reject: Callable[[Rejection], None] | None = None):
        self.stream, self.cfg, self.rank, self.world, self.gather = stream, cfg, rank, world, gather
        self.cursor = cursor          # micro-batches consumed, accepted or rejected
        self.gate_seconds = 0.0       # time spent computing fractions, for the overhead metric
        self.on_reject = on_reject
        self.judged = cursor          # verdicts below this index are already counted and logged
        self.consecutive: list[Rejection] = []   # the current run of rejections
        self.window: deque[Rejection | None] = deque(maxlen=max(cfg.rejection_window, 1))  # None: accepted
        self.window_rejected = 0      # rejections in `window`

    @property
    def rejection_rate(self) -> float:
        """Share of the last `rejection_window` gated micro-batches that was rejected."""
        return self.window_rejected / len(self.window) if self.window else 0.0

    def next(self) -> tuple[MicroBatch, list[Rejection]]:
        if not self.cfg.enabled:
            index, self.cursor = self.cursor + self.rank, self.cursor + self.world
            return self.stream.micro_batch(index), []
        accepted: list[int] = []
        rejected: list[Rejection] = []
        base, candidate = self.cursor, None
        while len(accepted) < self.world:
            candidate, failure = self._read(base + self.rank)
            started = time.perf_counter()
            fraction = -1.0 if failure else batch_fraction(candidate, self.cfg.ngram)
            self.gate_seconds += time.perf_counter() - started
            gathered = self.gather([fraction])
            if failure or any(value < 0 for (value,) in gathered):  # every rank stops, not only the reader
                raise failure or CorruptShard(f"rank {[v for (v,) in gathered].index(-1.0)} found a corrupt shard "
                                              "and stopped; its error names the shard")
            for offset, (value,) in enumerate(gathered):
                index = base + offset
                if value > self.cfg.max_fraction:
                    rejected.append(Rejection(index, index // self.stream.per_epoch, value, self.stream.shards_of(index)))
                else:
                    accepted.append(index)
                self._record(index, rejected[-1] if value > self.cfg.max_fraction else None)
            base += self.world
        last = accepted[self.world - 1]
        self.cursor = last + 1  # candidates past the last one used are gated again next time
        self.stream.prefetch([self.cursor + self.rank + self.world * k for k in range(1, 4)])
        mine = accepted[self.rank]
        batch = candidate if candidate.index == mine else self.stream.micro_batch(mine)
        return batch, [r for r in rejected if r.index < last]

    def _read(self, index: int) -> tuple[MicroBatch | None, CorruptShard | None]:
        try:
            return self.stream.micro_batch(index), None
        except CorruptShard as err:
            return None, err

    def _record(self, index: int, rejection: Rejection | None) -> None:
        """Count a verdict once (candidates are re-gated after a window) and stop at the limits."""
        if index < self.judged:
            return
        self.judged = index + 1
        if len(self.window) == self.window.maxlen and self.window[0] is not None:
            self.window_rejected -= 1
        self.window.append(rejection)
        self.window_rejected += rejection is not None
        if rejection is None:
            self.consecutive = []
            return
        self.consecutive.append(rejection)
        if self.on_reject:
            self.on_reject(rejection)
        cfg = self.cfg
        if cfg.max_consecutive_rejections and len(self.consecutive) >= cfg.max_consecutive_rejections:
            self._stall(f"{len(self.consecutive)} micro-batches in a row were rejected "
                        f"(gate.max_consecutive_rejections={cfg.max_consecutive_rejections})", self.consecutive)
        full = cfg.rejection_window and len(self.window) == cfg.rejection_window
        if full and self.rejection_rate > cfg.max_rejected_fraction:
            self._stall(f"{self.rejection_rate:.1%} of the last {cfg.rejection_window} micro-batches were rejected "
                        f"(gate.max_rejected_fraction={cfg.max_rejected_fraction})", [r for r in self.window if r])

    def _stall(self, what: str, rejections: list[Rejection]) -> None:
        shards = Counter(name for r in rejections for name in r.shards)
        named = ", ".join(f"{name} ({count})" for name, count in shards.most_common(5))
        more = f" and {len(shards) - 5} more" if len(shards) > 5 else ""
        fractions = sorted(r.fraction for r in rejections)
        raise GateStalled(
            f"batch gate: {what}; repeated {self.cfg.ngram}-gram fractions seen {fractions[0]:.3f} to "
            f"{fractions[-1]:.3f} (median {fractions[len(fractions) // 2]:.3f}) against gate.max_fraction="
            f"{self.cfg.max_fraction}; rejected micro-batches came from shards {named}{more}. The data is too "
            "repetitive for the gate: clean or drop those shards (clover curate/dedup), or raise gate.max_fraction "
            "(--set gate.max_fraction=...). Rejections are listed in RUN/gate_rejections.jsonl.")
