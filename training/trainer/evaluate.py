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


class HeldOut:
    """Evaluates a model on a fixed prefix of a held-out token stream, in lockstep on every rank."""

    def __init__(self, stream: TokenStream, sequences: int, dist_info: Distributed):
        self.stream, self.dist = stream, dist_info
        self.batches = max(1, min(-(-sequences // stream.micro), stream.per_epoch))

    def evaluate(self, model: torch.nn.Module, loss: Callable, weight: Callable) -> dict[str, float]:
        """{eval_loss, eval_ppl, eval_tokens}: `loss(model, batch)` sums a micro-batch's negative log-likelihood,
        `weight(batch)` counts its predicted tokens."""
        world, rank = self.dist.world, self.dist.rank
        mine = list(range(rank, self.batches, world))
        values: list[float] = []
        with torch.no_grad():
            for k in range(-(-self.batches // world)):  # every rank runs as many forwards (FSDP gathers in each)
                batch = self.stream.micro_batch(mine[k] if k < len(mine) else 0)
                total = float(loss(model, batch)[0])
                values += [total, weight(batch)] if k < len(mine) else [0.0, 0.0]
        gathered = all_gather_floats(values, self.dist.device)
        total_loss = total_tokens = 0.0
        for index in range(self.batches):  # micro-batch order, whatever the world size
            owner, k = index % world, index // world
            total_loss += gathered[owner][2 * k]
            total_tokens += gathered[owner][2 * k + 1]
        mean = total_loss / max(total_tokens, 1.0)
        return {"eval_loss": mean, "eval_ppl": math.exp(min(mean, 700.0)), "eval_tokens": int(total_tokens)}

    def close(self) -> None:
        self.stream.close()
