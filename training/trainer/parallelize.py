"""Everything the model does not know: process group, FSDP2, activation checkpointing, compile.

Applied in one place after the model is built (torchtitan's layout): each block gets activation
checkpointing, optional `torch.compile`, and its own `fully_shard` unit; the root unit holds the
embeddings, the final norm and the output layer. Parameters are kept in fp32 (the optimizer's
master copy) and gathered in the compute dtype; gradients are reduced in fp32.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.distributed as dist
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor, distribute_tensor

from training.trainer.model import Transformer

COMPUTE_DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


@dataclass
class ParallelConfig:
    compute_dtype: str = field(default='auto', metadata={"help": "auto (bf16 on GPUs, fp32 on CPU), bf16 or fp32"})
    activation_checkpointing: bool = field(default=True, metadata={"help": "recompute blocks in backward"})
    checkpoint_every_n_blocks: int = field(default=1, metadata={
        "help": "with activation checkpointing, recompute one block in every N (1: all; 2: selective, less "
                "recompute for more memory)"})
    compile: bool = field(default=False, metadata={"help": "torch.compile each block"})
    explicit_prefetch: bool = field(default=True, metadata={
        "help": "FSDP2 gathers the next block's parameters while the current one computes (forward and backward)"})


@dataclass(frozen=True)
class Distributed:
    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_host_group: dist.ProcessGroup | None = None


def init_distributed() -> Distributed:
    """Join torchrun's process group, or make a one-process group so a plain run takes the same path.

    Beside NCCL, a gloo group carries the small host-side collectives (gate verdicts, token counts), so
    they never wait for the GPU stream and the next micro-batch is gated while the GPU computes.
    """
    global _host_group
    if not dist.is_initialized():
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        backend = "nccl" if cuda else "gloo"
        if "RANK" in os.environ:  # torchrun's environment
            dist.init_process_group(backend)
        else:
            # One process: a fresh port each time (a process that trains twice would otherwise reuse one the OS
            # may still hold), and no torchrun variables left in os.environ for a child process to inherit.
            dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
    if dist.get_backend() != "gloo" and _host_group is None:
        _host_group = dist.new_group(backend="gloo")
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    return Distributed(dist.get_rank(), dist.get_world_size(), local_rank, device)


def shutdown_distributed() -> None:
    """Destroy the process group (and its gloo companion)."""
    global _host_group
    _host_group = None
    dist.destroy_process_group()


def compute_dtype(cfg: ParallelConfig, device: torch.device) -> torch.dtype:
    if cfg.compute_dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return COMPUTE_DTYPES[cfg.compute_dtype]


def parallelize(model: Transformer, cfg: ParallelConfig, device: torch.device) -> Transformer:
    """Wrap blocks for checkpointing/compile, then shard each block and the root with FSDP2."""
    dtype = compute_dtype(cfg, device)
    policy = MixedPrecisionPolicy(param_dtype=dtype if dtype != torch.float32 else None, reduce_dtype=torch.float32)
    for index, block in enumerate(model.layers):
        if cfg.activation_checkpointing and index % max(cfg.checkpoint_every_n_blocks, 1) == 0:
            block = checkpoint_wrapper(block, preserve_rng_state=False)
        if cfg.compile:
            block.compile()
        fully_shard(block, mp_policy=policy, reshard_after_forward=index < len(model.layers) - 1)
        model.layers[index] = block
    fully_shard(model, mp_policy=policy)
    if cfg.explicit_prefetch:
        blocks = list(model.layers)
        for before, after in zip(blocks, blocks[1:]):
            before.set_modules_to_forward_prefetch([after])
            after.set_modules_to_backward_prefetch([before])
    return model


def build_model(model: Transformer, cfg: ParallelConfig, dist_info: Distributed, seed: int) -> Transformer:
    """Shard a model built on the meta device, materialize its shards and initialize them from `seed`.

    Every parameter is drawn whole from one CPU generator and each rank keeps its shard, so the
    initial weights are the same for any world size.
    """
    model = parallelize(model, cfg, dist_info.device)
    model.to_empty(device=dist_info.device)
    model.init_weights(seed, assign=_assign_full)
    return model


def reshard(model: torch.nn.Module) -> None:
    """Every FSDP module back on its sharded parameters, as a training step leaves them. A no-grad forward (a
    DPO reference pass, an evaluation) leaves the root and the last block unsharded (reshard_after_forward=False):
    their gathered copies would stay in memory, and a parameter list taken then would hold the unsharded tensors
    instead of the ones the optimizer steps (gradients divided and clipped on the wrong tensors)."""
    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.reshard()


def _assign_full(param: torch.Tensor, full: torch.Tensor) -> None:
    if isinstance(param, DTensor):
        full = distribute_tensor(full.to(param.device_mesh.device_type), param.device_mesh, param.placements,
                                 src_data_rank=None)
    param.copy_(full)


def _host_tensor(values: list[float], device: torch.device) -> tuple[torch.Tensor, dist.ProcessGroup | None]:
    """Host values as a tensor for a collective: on the CPU over the gloo group when there is one."""
    on = torch.device("cpu") if _host_group is not None else device
    return torch.tensor(values, dtype=torch.float64, device=on), _host_group


def all_gather_floats(values: list[float], device: torch.device) -> list[list[float]]:
    """Every rank's list of floats (same length on all ranks)."""
    local, group = _host_tensor(values, device)
    gathered = [torch.empty_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, local, group=group)
    return [t.tolist() for t in gathered]


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    tensor, group = _host_tensor(values, device)
    dist.all_reduce(tensor, group=group)
    return tensor.tolist()


def to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """A host array on the device: through pinned memory and an asynchronous copy on CUDA."""
    tensor = torch.from_numpy(array)
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor
