"""AdamW with decay groups, and the Clover write-up's learning-rate schedule."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class ScheduleConfig:
    warmup_steps: int = field(default=2000, metadata={"help": "linear warmup steps"})
    max_lr: float = field(default=0.0003, metadata={"help": "learning rate at the end of warmup"})
    min_lr: float = field(default=3e-05, metadata={"help": "learning rate at total_steps and after"})
    total_steps: int = field(default=150000, metadata={"help": "step where the cosine reaches min_lr"})


@dataclass
class OptimizerConfig:
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95], metadata={"help": "AdamW betas"})
    weight_decay: float = field(default=0.1, metadata={"help": "AdamW weight decay on matrices"})
    eps: float = field(default=1e-08, metadata={"help": "AdamW epsilon"})
    grad_clip: float = field(default=0.5, metadata={"help": "gradient norm clipping threshold"})
    decay_embeddings: bool = field(default=False, metadata={"help": "apply weight decay to the embeddings too"})
    decay_norms_and_biases: bool = field(default=False, metadata={"help": "apply weight decay to norm weights and biases too"})
    implementation: str = field(default="auto", metadata={
        "help": "AdamW kernels: auto (fused on CUDA, foreach elsewhere), fused or foreach"})


def lr_at(step: int, cfg: ScheduleConfig) -> float:
    """The write-up's get_lr: linear warmup to max_lr, cosine to min_lr at total_steps.

    `step` counts updates already made (0 for the first). Past total_steps the write-up's formula
    would climb again; the rate stays at min_lr instead.
    """
    if step < cfg.warmup_steps:
        return cfg.max_lr * step / cfg.warmup_steps
    progress = min((step - cfg.warmup_steps) / max(cfg.total_steps - cfg.warmup_steps, 1), 1.0)
    return cfg.min_lr + 0.5 * (cfg.max_lr - cfg.min_lr) * (1 + math.cos(math.pi * progress))


def decays(name: str, param: torch.Tensor, cfg: OptimizerConfig) -> bool:
    """Matrices decay; embeddings, norms and biases (vectors) only when configured."""
    if "embed" in name:
        return cfg.decay_embeddings
    if param.ndim < 2:
        return cfg.decay_norms_and_biases
    return True


def build_optimizer(model: nn.Module, cfg: OptimizerConfig) -> torch.optim.AdamW:
    groups: dict[bool, list[torch.Tensor]] = {True: [], False: []}
    for name, param in model.named_parameters():
        if param.requires_grad:
            groups[decays(name, param, cfg)].append(param)
    if cfg.implementation not in ("auto", "fused", "foreach"):
        raise ValueError(f"optimizer.implementation is {cfg.implementation!r}; choose auto, fused or foreach")
    on_cuda = any(p.is_cuda for p in groups[True] + groups[False])
    fused = cfg.implementation == "fused" or (cfg.implementation == "auto" and on_cuda)
    return torch.optim.AdamW(
        [{"params": groups[True], "weight_decay": cfg.weight_decay}, {"params": groups[False], "weight_decay": 0.0}],
        lr=0.0, betas=tuple(cfg.betas), eps=cfg.eps, fused=fused, foreach=not fused,
    )
