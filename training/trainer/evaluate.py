"""Held-out evaluation: the loss and perplexity of a fixed set of sequences the run never trains on.

The set is the first `eval.sequences` sequences of the held-out data's order (seed 0, epoch 0), cut into
the run's micro-batches; rank r evaluates micro-batches r, r+W, ... and the sums are added in micro-batch
order, so every world size evaluates the same sequences and adds them the same way. The numbers are a
function of the weights alone, so a resumed run reports what an uninterrupted one does.

Without `eval.data`, floor(holdout_fraction x shards) of the training manifest's shards are held out: the
ones whose sha256(file name) sorts first. They are recorded in RUN/config.json and never trained on.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from schemas import storage
from training.trainer.data import TokenStream, manifest_location
from training.trainer.parallelize import Distributed, all_gather_floats


@dataclass
class EvalConfig:
    every: int = field(default=1000, metadata={"help": "steps between held-out evaluations (one more at the end); 0: none"})
    sequences: int = field(default=256, metadata={
        "help": "held-out sequences per evaluation, the same ones on any world size"})
    data: str = field(default="", metadata={
        "help": "token shards to evaluate on (a validated `clover tokenize` output); empty: hold out a share of the "
                "training manifest's shards"})
    holdout_fraction: float = field(default=0.01, metadata={
        "help": "share of the training manifest's shards held out when eval.data is empty, rounded down (fewer "
                "than 1/fraction shards: none held out, no evaluation)"})


def held_out_shards(data: str, fraction: float) -> list[str]:
    """The manifest names of the shards held out of training: the first floor(fraction x n) by sha256(name)."""
    _, manifest_uri = manifest_location(data)
    names = [shard["file"] for shard in json.loads(storage.read_text(manifest_uri))["shards"]]
    ranked = sorted(names, key=lambda name: hashlib.sha256(name.encode()).hexdigest())
    return sorted(ranked[:int(len(names) * fraction)])


def lockstep_sums(batches: int, dist_info: Distributed, sums: Callable[[int], list[float]]) -> list[float]:
    """The element-wise totals of `sums(index)` over micro-batches 0 .. batches - 1, evaluated on every rank.

    Rank r evaluates micro-batches r, r+W, ...; every rank runs as many (FSDP gathers in each forward), a rank
    past its last one evaluates micro-batch 0 again and drops the values. The values are gathered and added in
    micro-batch order, so any world size adds the same numbers in the same order. `sums` returns as many
    values for every micro-batch; batches >= 1.
    """
    world, rank = dist_info.world, dist_info.rank
    mine = list(range(rank, batches, world))
    values: list[float] = []
    width = 0
    with torch.no_grad():
        for k in range(-(-batches // world)):
            found = sums(mine[k] if k < len(mine) else 0)
            width = len(found)
            values += found if k < len(mine) else [0.0] * width
    gathered = all_gather_floats(values, dist_info.device)
    totals = [0.0] * width
    for index in range(batches):  # micro-batch order, whatever the world size
        owner, k = index % world, index // world
        totals = [total + value for total, value in zip(totals, gathered[owner][width * k: width * (k + 1)])]
    return totals


class HeldOut:
    """Evaluates a model on a fixed prefix of a held-out token stream, in lockstep on every rank."""

    def __init__(self, stream: TokenStream, sequences: int, dist_info: Distributed):
        self.stream, self.dist = stream, dist_info
        self.batches = max(1, min(-(-sequences // stream.micro), stream.per_epoch))

    def evaluate(self, model: torch.nn.Module, loss: Callable, weight: Callable) -> dict[str, float]:
        """{eval_loss, eval_ppl, eval_tokens}: `loss(model, batch)` sums a micro-batch's negative log-likelihood,
        `weight(batch)` counts its predicted tokens."""
        def sums(index: int) -> list[float]:
            batch = self.stream.micro_batch(index)
            return [float(loss(model, batch)[0]), weight(batch)]

        total_loss, total_tokens = lockstep_sums(self.batches, self.dist, sums)
        mean = total_loss / max(total_tokens, 1.0)
        return {"eval_loss": mean, "eval_ppl": math.exp(min(mean, 700.0)), "eval_tokens": int(total_tokens)}

    def close(self) -> None:
        self.stream.close()
