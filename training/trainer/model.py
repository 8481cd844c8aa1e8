"""The Clover decoder: RMSNorm, RoPE (rotate-half), grouped-query attention, SwiGLU, untied embeddings.

Reads top to bottom. It knows nothing of parallelism: FSDP, activation checkpointing and compile
are applied from the outside (training/trainer/parallelize.py). The layout of every weight matches Hugging
Face's LlamaForCausalLM, so export is a renaming with no permutation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

try:  # optional, GPU only
    from flash_attn import flash_attn_func
except ImportError:  # pragma: no cover - depends on the machine
    flash_attn_func = None


@dataclass(frozen=True)
class ModelConfig:
    dim: int = 5120
    n_layers: int = 40
    n_heads: int = 32
    n_kv_heads: int = 8
    ffn_dim: int = 14336
    vocab_size: int = 64000
    max_seq_len: int = 8192
    rope_theta: float = 500000.0
    norm_eps: float = 1e-5
    init_std: float = 0.02
    logits_chunk: int = 1024  # positions whose full-vocabulary logits exist at once in a loss

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads


PRESETS: dict[str, ModelConfig] = {
    "clover-12b": ModelConfig(),
    "clover-1b": ModelConfig(dim=2048, n_layers=16, n_heads=16, n_kv_heads=4, ffn_dim=5632),
    "clover-125m": ModelConfig(dim=576, n_layers=14, n_heads=9, n_kv_heads=3, ffn_dim=1536),
    "clover-tiny": ModelConfig(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=192, vocab_size=2048,
                               max_seq_len=1024, logits_chunk=64),
}


def model_config(preset: str, **overrides) -> ModelConfig:
    """A preset by name, with any field replaced (e.g. vocab_size to fit a small tokenizer)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown model preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return replace(PRESETS[preset], **overrides)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return normed.type_as(x) * self.weight


def rope_tables(cfg: ModelConfig, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of shape (max_seq_len, head_dim), halves repeated: Hugging Face's rotate-half layout."""
    inv_freq = 1.0 / cfg.rope_theta ** (torch.arange(0, cfg.head_dim, 2, dtype=torch.float64, device=device) / cfg.head_dim)
    angles = torch.outer(torch.arange(cfg.max_seq_len, dtype=torch.float64, device=device), inv_freq)
    angles = torch.cat((angles, angles), dim=-1)
    return angles.cos().float(), angles.sin().float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: (batch, heads, seq, head_dim); the first half of each head pairs with the second half."""
    first, second = x.chunk(2, dim=-1)
    rotated = torch.cat((-second, first), dim=-1)
    return (x.float() * cos + rotated.float() * sin).type_as(x)


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Causal GQA attention over (batch, heads, seq, head_dim): flash-attn on CUDA when installed, else SDPA.

    `mask` (batch, 1, seq, seq), True where attention is allowed, replaces the plain causal mask
    (document masking); it always takes the SDPA path.
    """
    if mask is not None:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
    if flash_attn_func is not None and q.is_cuda and q.dtype in (torch.float16, torch.bfloat16):
        out = flash_attn_func(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), causal=True)
        return out.transpose(1, 2)
    return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)


# A layer's key/value cache for generation: keys and values (batch, n_kv_heads, capacity, head_dim), preallocated,
# and the position where this call's keys go. It holds the n_kv_heads, not n_heads (GQA).
KVSlot = tuple[torch.Tensor, torch.Tensor, int]


def document_mask(doc_ids: torch.Tensor) -> torch.Tensor:
    """(batch, 1, seq, seq): causal, and only within the same document (doc_ids: document index per position)."""
    seq = doc_ids.shape[1]
    causal = torch.ones(seq, seq, dtype=torch.bool, device=doc_ids.device).tril()
    return (causal & (doc_ids[:, :, None] == doc_ids[:, None, :]))[:, None]


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.q_proj = nn.Linear(cfg.dim, cfg.n_heads * cfg.head_dim, bias=False)
        self.k_proj = nn.Linear(cfg.dim, cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.v_proj = nn.Linear(cfg.dim, cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.o_proj = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.dim, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor | None = None,
                kv: KVSlot | None = None) -> torch.Tensor:
        batch, seq, _ = x.shape
        q = self.q_proj(x).view(batch, seq, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(batch, seq, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(batch, seq, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if kv is not None:  # generation: store the new keys/values, attend over everything stored so far
            keys, values, start = kv
            keys[:, :, start:start + seq], values[:, :, start:start + seq] = k, v
            k, v = keys[:, :, :start + seq], values[:, :, :start + seq]
        out = causal_attention(q, k, v, mask)
        return self.o_proj(out.transpose(1, 2).reshape(batch, seq, -1))


class FeedForward(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
        self.up_proj = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
        self.down_proj = nn.Linear(cfg.ffn_dim, cfg.dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.mlp = FeedForward(cfg)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor | None = None,
                kv: KVSlot | None = None) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, kv)
        return x + self.mlp(self.post_attention_layernorm(x))


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        cos, sin = rope_tables(cfg)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

    @torch.no_grad()
    def init_weights(self, seed: int, assign: Callable[[torch.Tensor, torch.Tensor], None] | None = None) -> None:
        """Normal(0, init_std) weights, output projections scaled by 1/sqrt(2 * layers) (GPT-2), norms at 1.

        Each weight is drawn whole from one CPU generator; `assign(param, full)` stores it (a sharded
        parameter keeps its shard), so the values do not depend on the device or the sharding.
        """
        assign = assign or (lambda param, full: param.copy_(full))
        generator = torch.Generator().manual_seed(seed)
        depth_std = self.cfg.init_std / math.sqrt(2 * self.cfg.n_layers)
        for name, param in self.named_parameters():
            if name.endswith("norm.weight"):
                full = torch.ones(param.shape)
            else:
                std = depth_std if name.endswith(("o_proj.weight", "down_proj.weight")) else self.cfg.init_std
                full = torch.randn(param.shape, generator=generator) * std
            assign(param, full)
        cos, sin = rope_tables(self.cfg, self.rope_cos.device)
        self.rope_cos.copy_(cos)
        self.rope_sin.copy_(sin)

    def hidden_states(self, tokens: torch.Tensor, doc_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Final-normed hidden states (batch, seq, dim); with doc_ids, attention stays inside each document."""
        seq = tokens.shape[1]
        if seq > self.cfg.max_seq_len:
            raise ValueError(f"sequence of {seq} tokens exceeds max_seq_len {self.cfg.max_seq_len}")
        cos, sin = self.rope_cos[:seq], self.rope_sin[:seq]
        mask = document_mask(doc_ids) if doc_ids is not None else None
        x = self.embed_tokens(tokens)
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        return self.norm(x)

    def decode(self, tokens: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor,
               cache: list[KVSlot] | None = None) -> torch.Tensor:
        """Next-token logits (batch, vocab) after `tokens` (batch, seq), for generation.

        Each row has its own RoPE `positions` (batch, seq) and `mask` (batch, 1, seq, keys), True where
        attention is allowed, so left-padded prompts of different lengths decode together. With a
        cache (one slot per layer), `tokens` are only the new ones and the keys are those stored plus these.
        """
        cos, sin = self.rope_cos[positions][:, None], self.rope_sin[positions][:, None]
        x = self.embed_tokens(tokens)
        for index, layer in enumerate(self.layers):
            x = layer(x, cos, sin, mask, cache[index] if cache is not None else None)
        return self.lm_head(self.norm(x[:, -1]))

    def forward(self, tokens: torch.Tensor, labels: torch.Tensor | None = None,
                doc_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (batch, seq, vocab) without labels; with labels, the fp32 log-probability of each label.

        The log-probs are computed `logits_chunk` positions at a time and recomputed in backward, so
        the full-vocabulary logits of a whole batch never exist at once (pretraining loss and DPO).
        """
        hidden = self.hidden_states(tokens, doc_ids)
        if labels is None:
            return self.lm_head(hidden)
        chunks = [
            checkpoint(self._label_logprobs, h, y, use_reentrant=False) if torch.is_grad_enabled()
            else self._label_logprobs(h, y)
            for h, y in zip(hidden.split(self.cfg.logits_chunk, dim=1), labels.split(self.cfg.logits_chunk, dim=1))
        ]
        return torch.cat(chunks, dim=1)

    def _label_logprobs(self, hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = self.lm_head(hidden).float()
        return torch.gather(logits.log_softmax(-1), -1, labels.long().unsqueeze(-1)).squeeze(-1)
