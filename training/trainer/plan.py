"""Parameter count, FLOPs per token and a per-GPU memory estimate, from a config alone (nothing allocated).

The memory model is FSDP2 full sharding: fp32 master parameters, fp32 gradients and AdamW's two fp32
moments are sharded over the GPUs; the compute copy of a block (bf16) exists only while the block
runs (two at once with prefetch), the root's embeddings and output layer stay gathered through the
step. With activation checkpointing each block keeps only its input; backward recomputes one block
at a time. docs/training.md derives every term.
"""

from __future__ import annotations

from dataclasses import dataclass

from training.trainer.model import ModelConfig

GIB = 1024**3
DTYPE_BYTES = {"bf16": 2, "fp32": 4}

# Dense bf16 tensor-core peak per GPU, FLOP/s (vendor datasheets, no sparsity); the first name found wins.
PEAK_FLOPS = (
    ("H100 PCIe", 756e12), ("H100 NVL", 835e12), ("H100", 989e12), ("H200", 989e12), ("GH200", 989e12),
    ("A100", 312e12), ("L40S", 362e12), ("A10G", 125e12), ("RTX 4090", 165e12),
)


def peak_flops(device_name: str) -> float | None:
    """Peak bf16 FLOP/s for a CUDA device name, None when unknown (a CPU, say): then MFU is not reported."""
    return next((flops for key, flops in PEAK_FLOPS if key.lower() in device_name.lower()), None)


def block_params(cfg: ModelConfig) -> int:
    kv_dim = cfg.n_kv_heads * cfg.head_dim
    attention = cfg.dim * cfg.dim * 2 + cfg.dim * kv_dim * 2
    return attention + 3 * cfg.dim * cfg.ffn_dim + 2 * cfg.dim


def root_params(cfg: ModelConfig) -> int:
    """Input embedding, output projection (untied) and the final norm."""
    return 2 * cfg.vocab_size * cfg.dim + cfg.dim


def param_count(cfg: ModelConfig) -> int:
    return cfg.n_layers * block_params(cfg) + root_params(cfg)


def flops_per_token(cfg: ModelConfig, seq_len: int) -> float:
    """6N + 12·L·H·d·S (PaLM, appendix B): N excludes the input embedding, a lookup, not a matmul."""
    n = param_count(cfg) - cfg.vocab_size * cfg.dim
    return 6 * n + 12 * cfg.n_layers * cfg.n_heads * cfg.head_dim * seq_len


def block_activation_bytes_per_token(cfg: ModelConfig, compute_bytes: int) -> int:
    """What backward keeps of one block, per token: tensors saved by each op (see docs/training.md)."""
    c = compute_bytes
    d, kv, ffn = cfg.dim, cfg.n_kv_heads * cfg.head_dim, cfg.ffn_dim
    norms = 2 * (4 * d + 4 + c * d)                         # fp32 input, rsqrt, normed output (x2 norms)
    projections_in = 2 * d * c                              # inputs of q/k/v (shared) and of o_proj
    attention = c * (2 * d + 2 * kv) + 4 * cfg.n_heads      # q, k, v, output, log-sum-exp; RoPE saves only its tables
    mlp = d * c + 4 * ffn * c                               # input of gate/up, gate, silu(gate), up, product
    return norms + projections_in + attention + mlp


@dataclass(frozen=True)
class MemoryEstimate:
    parameters: int
    gradients: int
    optimizer: int
    activations: int
    buffers: int

    @property
    def total(self) -> int:
        return self.parameters + self.gradients + self.optimizer + self.activations + self.buffers


def estimate_memory(cfg: ModelConfig, gpus: int, micro_batch: int, seq_len: int, compute_dtype: str = "bf16",
                    activation_checkpointing: bool = True) -> MemoryEstimate:
    """Per-GPU bytes at the peak of a training step (the start of backward)."""
    c = DTYPE_BYTES[compute_dtype]
    n, tokens = param_count(cfg), micro_batch * seq_len
    sharded = 4 * n / gpus
    gathered = (2 * block_params(cfg) + root_params(cfg)) * c if c != 4 or gpus > 1 else 0
    block = block_activation_bytes_per_token(cfg, c) * tokens
    if activation_checkpointing:
        activations = cfg.n_layers * tokens * cfg.dim * c + block
    else:
        activations = cfg.n_layers * block
    chunk = micro_batch * min(cfg.logits_chunk, seq_len)
    loss = tokens * cfg.dim * (c + 4) + 3 * chunk * cfg.vocab_size * 4   # final hidden, one chunk's fp32 logits
    rope = 2 * cfg.max_seq_len * cfg.head_dim * 4
    reduce_scratch = block_params(cfg) * (c + 4) if gpus > 1 else 0   # a block's unsharded grads, cast to fp32
    return MemoryEstimate(
        parameters=int(sharded + gathered), gradients=int(sharded), optimizer=int(2 * sharded),
        activations=int(activations + loss), buffers=int(rope + reduce_scratch),
    )


def format_plan(name: str, cfg: ModelConfig, gpus: int, micro_batch: int, seq_len: int,
                compute_dtype: str = "bf16", activation_checkpointing: bool = True) -> str:
    mem = estimate_memory(cfg, gpus, micro_batch, seq_len, compute_dtype, activation_checkpointing)
    n = param_count(cfg)
    rows = [
        ("model", name),
        ("parameters", f"{n:,} ({n / 1e9:.2f} B)"),
        ("FLOPs per token", f"{flops_per_token(cfg, seq_len):.4g} (6N + 12·L·H·d·S at S={seq_len})"),
        ("layout", f"{gpus} GPU(s), FSDP full shard, {compute_dtype} compute, fp32 master/grads/AdamW, "
                   f"activation checkpointing {'on' if activation_checkpointing else 'off'}"),
        ("micro-batch", f"{micro_batch} x {seq_len} tokens"),
    ]
    for part in ("parameters", "gradients", "optimizer", "activations", "buffers"):
        rows.append((f"memory: {part}", f"{getattr(mem, part) / GIB:8.2f} GiB"))
    rows.append(("memory: total per GPU", f"{mem.total / GIB:8.2f} GiB"))
    width = max(len(key) for key, _ in rows)
    return "\n".join(f"{key:<{width}}  {value}" for key, value in rows)
