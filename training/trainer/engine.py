"""The training engine shared by pretraining and DPO: FSDP model, AdamW, schedule, clipping, skipped
updates, checkpoints, exact resume and metrics. What is trained on, and the loss, come from an
`Objective` (training/trainer/pretrain.py, training/trainer/dpo.py).
"""

from __future__ import annotations

import json
import math
import os
import statistics
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import torch
import torch.distributed as dist

from schemas import storage
from training.trainer import checkpoint
from training.trainer.checkpoint import CheckpointConfig
from training.trainer.metrics import MetricsWriter, mfu, peak_memory_gib
from training.trainer.model import ModelConfig, Transformer, model_config
from training.trainer.optim import OptimizerConfig, ScheduleConfig, build_optimizer, lr_at
from training.trainer.parallelize import (
    Distributed,
    ParallelConfig,
    all_reduce_sum,
    build_model,
    init_distributed,
    reshard,
    shutdown_distributed,
)


@dataclass
class SpikeConfig:
    """Skip an update whose loss or gradient norm is more than `sigma` standard deviations above the
    mean of the last `window` updates (off when sigma is null)."""
    sigma: float | None = field(default=None, metadata={"help": "skip updates this many standard deviations above the recent mean (null: off)"})
    window: int = field(default=100, metadata={"help": "updates in the recent window"})


@dataclass
class EngineConfig:
    model: str = field(default='clover-12b', metadata={"help": "model preset (training/trainer/model.py)"})
    model_overrides: dict[str, Any] = field(default_factory=dict, metadata={"help": "preset fields to change, e.g. vocab_size"})
    micro_batch: int = field(default=2, metadata={"help": "sequences (or pairs) per rank per forward pass"})
    grad_accum: int = field(default=16, metadata={"help": "micro-batches per optimizer step"})
    max_steps: int = field(default=150000, metadata={"help": "optimizer steps"})
    seed: int = field(default=0, metadata={"help": "initialization seed"})
    log_every: int = field(default=1, metadata={"help": "steps between metrics lines"})
    tensorboard: bool = field(default=True, metadata={"help": "also write TensorBoard events"})
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    spikes: SpikeConfig = field(default_factory=SpikeConfig)


class Objective(Protocol):
    """What the engine trains on. Every method that communicates is called on all ranks in lockstep."""

    def start(self, state: dict | None, model: Transformer) -> None: ...  # state: from the checkpoint, or None
    def next_batch(self) -> tuple[Any, dict[str, float]]: ...  # this rank's next micro-batch, counts to sum
    def weight(self, batch: Any) -> float: ...              # normalizer share: tokens, pairs
    def tokens(self, batch: Any) -> int: ...                # tokens processed, for throughput
    def loss(self, model: Transformer, batch: Any) -> tuple[torch.Tensor, dict[str, float]]: ...
    def step_metrics(self, info: dict[str, float], sums: dict[str, float], weight: float) -> dict: ...
    def state(self) -> dict: ...
    # Optional: evaluate(model, step, final) -> held-out metrics due at this step, or {} (all ranks call it).


@dataclass
class RunResult:
    steps: int
    final_loss: float | None
    metrics: str  # the run's metrics.jsonl (a path or URI)


def run(cfg: EngineConfig, out: str, make_objective: Callable[[Distributed, ModelConfig], Objective],
        init_from: str | None = None, describe: dict | None = None,
        progress: Callable[[dict], None] | None = None) -> RunResult:
    """Train until cfg.max_steps, resuming from RUN/checkpoints when a complete checkpoint exists.

    `out` is a local directory or a URI (s3://...): checkpoints go through DCP on that filesystem, the
    JSON files through schemas.storage.
    """
    owns_group = not dist.is_initialized()
    dist_info = init_distributed()
    try:
        return _run(cfg, out.rstrip("/"), make_objective, dist_info, init_from, describe or {}, progress)
    finally:
        if owns_group:
            shutdown_distributed()


def _run(cfg: EngineConfig, run_dir: str, make_objective, dist_info: Distributed, init_from: str | None,
         describe: dict, progress) -> RunResult:
    """Build, restore, then step until cfg.max_steps; the metrics and the objective are closed however it ends."""
    model_cfg, objective, model, optimizer = _build(cfg, run_dir, make_objective, dist_info, describe)
    ckpt_root = storage.join(run_dir, "checkpoints")
    state = _restore(ckpt_root, model, optimizer, init_from, dist_info.rank)
    params = [p for p in model.parameters() if p.requires_grad]  # the sharded ones, before any forward
    objective.start(state["objective"], model)
    reshard(model)  # a reference pass in start() leaves modules unsharded
    loop = _Loop.from_state(state, cfg.spikes.window)
    metrics = MetricsWriter(run_dir, loop.step, enabled=dist_info.is_main, tensorboard=cfg.tensorboard)
    try:
        while loop.step < cfg.max_steps:
            record = _train_step(cfg, loop, objective, model, optimizer, params, model_cfg, dist_info)
            evaluated = _evaluate(objective, model, loop.step, loop.step == cfg.max_steps)
            if evaluated:
                reshard(model)
            record.update(evaluated)
            if evaluated or loop.step % cfg.log_every == 0 or loop.step == cfg.max_steps:
                metrics.write(record)
                if progress is not None and dist_info.is_main:
                    progress(record)
            if cfg.checkpoint.every > 0 and (loop.step % cfg.checkpoint.every == 0 or loop.step == cfg.max_steps):
                # metrics first: a kill between the two leaves lines past the newest checkpoint, which a resume
                # drops; the other order could leave a checkpoint whose steps' metrics were never written
                metrics.flush()
                checkpoint.save(ckpt_root, loop.step, model, optimizer, loop.trainer_state(objective), cfg.checkpoint,
                                dist_info.rank)
    finally:
        metrics.close()
        close = getattr(objective, "close", None)
        if close:
            close()
    return RunResult(loop.step, loop.last_loss, storage.join(run_dir, "metrics.jsonl"))


def _evaluate(objective: Objective, model: Transformer, step: int, final: bool) -> dict[str, float]:
    """The objective's held-out numbers when it has any due at this step (all ranks take part)."""
    evaluate = getattr(objective, "evaluate", None)
    return evaluate(model, step, final) if evaluate is not None else {}


def _build(cfg: EngineConfig, run_dir: str, make_objective, dist_info: Distributed, describe: dict):
    """The objective, the sharded model and its optimizer, after the run directory's config is checked."""
    model_cfg = model_config(cfg.model, **cfg.model_overrides)
    objective = make_objective(dist_info, model_cfg)
    if storage.is_local(run_dir):
        os.makedirs(run_dir, exist_ok=True)
    _check_run_config(run_dir, cfg, model_cfg, describe, dist_info.rank)
    torch.manual_seed(cfg.seed)
    with torch.device("meta"):
        model = Transformer(model_cfg)
    model = build_model(model, cfg.parallel, dist_info, cfg.seed)
    return model_cfg, objective, model, build_optimizer(model, cfg.optimizer)


def _restore(ckpt_root: str, model: Transformer, optimizer, init_from: str | None, rank: int) -> dict:
    """The newest complete checkpoint's trainer state (weights and optimizer loaded), else a fresh one."""
    found = checkpoint.complete_checkpoints(ckpt_root)
    state: dict = {"step": 0, "counters": {}, "history": {"loss": [], "grad_norm": []}, "objective": None}
    if found:
        step, path = found[0]
        state = checkpoint.load(path, model, optimizer, rank)
        _log(rank, f"resumed from {path} (step {step})")
    elif init_from is not None:
        checkpoint.load(init_from, model, None, rank)
        _log(rank, f"initialized from {init_from}")
    return state


@dataclass
class _Loop:
    """What the steps change and a checkpoint keeps, so that a resumed run continues exactly."""
    step: int
    counters: dict[str, int]
    history: dict[str, deque]
    last_loss: float | None

    @classmethod
    def from_state(cls, state: dict, window: int) -> _Loop:
        counters = {"skipped_updates": 0, "non_finite": 0, "spikes_skipped": 0, "tokens_seen": 0, **state["counters"]}
        history = {key: deque(values, maxlen=window) for key, values in state["history"].items()}
        last_loss = history["loss"][-1] if history.get("loss") else None  # a finished run, rerun
        return cls(state["step"], counters, history, last_loss)

    def trainer_state(self, objective: Objective) -> dict:
        return {"step": self.step, "counters": self.counters, "objective": objective.state(),
                "history": {k: list(v) for k, v in self.history.items()}}


@dataclass
class _StepTotals:
    """One step's values over all ranks: what the gradients are divided by and what the step reports."""
    weight: float
    tokens: float
    sums: dict[str, float]
    loss: float
    grad_norm: float


def _train_step(cfg: EngineConfig, loop: _Loop, objective: Objective, model: Transformer, optimizer,
                params: list, model_cfg: ModelConfig, dist_info: Distributed) -> dict:
    """One optimizer step over cfg.grad_accum micro-batches (or a skipped update); returns its metrics record."""
    started = time.perf_counter()
    accumulated = _accumulate(cfg, objective, model, dist_info.world, dist_info.device)
    totals = _reduce_and_clip(accumulated, params, cfg, dist_info)
    skip = _skip_reason(totals.loss, totals.grad_norm, loop.history, cfg.spikes)
    lr = lr_at(loop.step, cfg.schedule)
    _update(optimizer, loop, skip, lr, totals, dist_info.rank)
    loop.step += 1
    loop.counters["tokens_seen"] += int(totals.tokens)
    elapsed = time.perf_counter() - started
    loop.last_loss = totals.loss
    return _step_record(loop, totals, accumulated, lr, skip, elapsed, objective, model_cfg, dist_info)


def _reduce_and_clip(accumulated: Accumulated, params: list, cfg: EngineConfig, dist_info: Distributed) -> _StepTotals:
    """Sum the step over the ranks, divide the gradients by its weight and clip them; one device sync."""
    device, world = dist_info.device, dist_info.world
    # Host values (weights, token counts, objective sums) are reduced over the gloo group, so
    # nothing here waits for the GPU; the loss and the gradient norm are read in one sync.
    keys = sorted(accumulated.sums)
    reduced = all_reduce_sum([accumulated.weight, accumulated.tokens] + [accumulated.sums[k] for k in keys],
                             device)
    total_weight, total_tokens = reduced[0], reduced[1]
    sums = dict(zip(keys, reduced[2:]))
    loss_sum = accumulated.loss_sum
    if world > 1:
        dist.all_reduce(loss_sum)
    torch._foreach_div_([p.grad for p in params if p.grad is not None], max(total_weight, 1.0))
    grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.optimizer.grad_clip, foreach=True)
    grad_norm = grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm
    loss_value, grad_norm = torch.stack([loss_sum / max(total_weight, 1.0), grad_norm.double()]).tolist()
    return _StepTotals(total_weight, total_tokens, sums, loss_value, grad_norm)


def _update(optimizer, loop: _Loop, skip: str | None, lr: float, totals: _StepTotals, rank: int) -> None:
    """Apply the update at `lr` and remember its loss and norm, or count and log why it was skipped."""
    if skip is None:
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.step()
        loop.history["loss"].append(totals.loss)
        loop.history["grad_norm"].append(totals.grad_norm)
    else:
        loop.counters["skipped_updates"] += 1
        loop.counters[skip] += 1
        _log(rank, f"step {loop.step + 1}: update skipped ({skip}: loss {totals.loss}, grad norm {totals.grad_norm})")
    optimizer.zero_grad(set_to_none=True)


def _step_record(loop: _Loop, totals: _StepTotals, accumulated: Accumulated, lr: float, skip: str | None,
                 elapsed: float, objective: Objective, model_cfg: ModelConfig, dist_info: Distributed) -> dict:
    """The step's metrics line: loss, lr, throughput, MFU, memory, skips and the objective's own numbers."""
    world, device = dist_info.world, dist_info.device
    tokens_per_s = totals.tokens / elapsed
    return {
        "step": loop.step, "loss": totals.loss, "lr": lr, "grad_norm": totals.grad_norm,
        "tokens_per_s": tokens_per_s, "tokens_per_s_per_gpu": tokens_per_s / world,
        "mfu": mfu(model_cfg, objective_seq_len(objective), tokens_per_s / world, device),
        "peak_memory_gib": peak_memory_gib(device), "step_seconds": elapsed,
        "data_seconds": accumulated.data_seconds,
        "update_skipped": skip, **{k: loop.counters[k] for k in ("skipped_updates", "tokens_seen")},
        **objective.step_metrics(accumulated.info, totals.sums, totals.weight),
    }


@dataclass
class Accumulated:
    """One optimizer step's micro-batches, summed: the loss stays on the device (no host sync)."""
    loss_sum: torch.Tensor
    weight: float = 0.0
    tokens: int = 0
    data_seconds: float = 0.0  # time in objective.next_batch (reading and gating), for the overhead metric
    info: dict[str, float] = field(default_factory=dict)
    sums: dict[str, float] = field(default_factory=dict)


def _accumulate(cfg: EngineConfig, objective: Objective, model: Transformer, world: int,
                device: torch.device) -> Accumulated:
    """Forward and backward over cfg.grad_accum micro-batches, gradients summed.

    Each micro-batch is fetched (and gated) after the previous one's backward was launched, so on a GPU
    the gate's CPU work overlaps the device's. Gradients are divided by the global batch's weight (tokens
    or pairs) afterwards; FSDP averages over ranks, hence the factor `world`.
    """
    acc = Accumulated(torch.zeros((), dtype=torch.float64, device=device))
    for _ in range(cfg.grad_accum):
        fetch_started = time.perf_counter()
        batch, batch_info = objective.next_batch()
        acc.data_seconds += time.perf_counter() - fetch_started
        loss, stats = objective.loss(model, batch)
        (loss * world).backward()
        acc.loss_sum += loss.detach().double()
        acc.weight += objective.weight(batch)
        acc.tokens += objective.tokens(batch)
        for target, values in ((acc.info, batch_info), (acc.sums, stats)):
            for key, value in values.items():
                target[key] = target.get(key, 0.0) + value
    return acc


def objective_seq_len(objective: Objective) -> int:
    return getattr(objective, "seq_len", 0)


def _skip_reason(loss: float, grad_norm: float, history: dict[str, deque], cfg: SpikeConfig) -> str | None:
    if not (math.isfinite(loss) and math.isfinite(grad_norm)):
        return "non_finite"
    if cfg.sigma is None:
        return None
    for key, value in (("loss", loss), ("grad_norm", grad_norm)):
        window = history[key]
        if len(window) >= max(cfg.window // 2, 2):
            mean, std = statistics.fmean(window), statistics.pstdev(window)
            if value > mean + cfg.sigma * std:
                return "spikes_skipped"
    return None


def _check_run_config(run_dir: str, cfg: EngineConfig, model_cfg: ModelConfig, describe: dict, rank: int) -> None:
    """RUN/config.json records what the run is; a rerun into the same RUN must be the same model."""
    path = storage.join(run_dir, "config.json")
    record = {"model": cfg.model, "model_config": asdict(model_cfg), "engine": asdict(cfg), **describe}
    if storage.exists(path):
        previous = json.loads(storage.read_text(path))
        if previous.get("model_config") != record["model_config"]:
            raise ValueError(f"{run_dir} holds a run of another model ({previous.get('model')}); "
                             "choose a new --out or the same --model")
    if rank == 0:
        storage.write_text(path, json.dumps(record, indent=1, sort_keys=True, default=str))


def _log(rank: int, message: str) -> None:
    if rank == 0:
        print(message, file=sys.stderr, flush=True)
