"""Model: presets, attention paths, RoPE layout, chunked log-probs, and the plan's counts and memory terms."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from training.trainer import model as model_module
from training.trainer.model import (
    PRESETS,
    Transformer,
    apply_rope,
    causal_attention,
    model_config,
    rope_tables,
)
from training.trainer.plan import block_activation_bytes_per_token, flops_per_token, param_count, peak_flops


def test_clover_12b_preset_is_the_writeups_model():
    cfg = PRESETS["clover-12b"]
    assert (cfg.dim, cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, cfg.ffn_dim, cfg.vocab_size, cfg.max_seq_len) == \
        (5120, 40, 32, 8, 14336, 64000, 8192)
    assert cfg.rope_theta == 500000 and cfg.norm_eps == 1e-5
    assert 12.0e9 < param_count(cfg) < 12.2e9


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_plan_counts_the_real_parameters(name):
    with torch.device("meta"):
        model = Transformer(PRESETS[name])
    assert param_count(PRESETS[name]) == sum(p.numel() for p in model.parameters())
    assert model.lm_head.weight is not model.embed_tokens.weight  # untied


def test_flops_formula_and_peak_table():
    cfg = PRESETS["clover-1b"]
    n = param_count(cfg) - cfg.vocab_size * cfg.dim
    assert flops_per_token(cfg, 8192) == 6 * n + 12 * 16 * 16 * 128 * 8192
    assert peak_flops("NVIDIA H100 80GB HBM3") == 989e12 and peak_flops("NVIDIA H100 PCIe") == 756e12
    assert peak_flops("cpu") is None


def reference_attention(q, k, v):
    """Plain causal softmax attention with the KV heads repeated: what GQA means."""
    groups = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    causal = torch.ones(q.shape[2], q.shape[2], dtype=torch.bool).tril()
    return scores.masked_fill(~causal, float("-inf")).softmax(-1) @ v


def test_sdpa_gqa_path_matches_reference_attention():
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 8, 37, 16), torch.randn(2, 2, 37, 16), torch.randn(2, 2, 37, 16)
    assert torch.allclose(causal_attention(q, k, v), reference_attention(q, k, v), atol=1e-5)


@pytest.mark.skipif(model_module.flash_attn_func is None or not torch.cuda.is_available(),
                    reason="flash-attn needs CUDA and the flash-attn package")
def test_flash_attention_matches_sdpa():  # pragma: no cover - GPU only
    torch.manual_seed(0)
    q = torch.randn(2, 8, 256, 128, device="cuda", dtype=torch.bfloat16)
    k, v = torch.randn(2, 2, 256, 128, device="cuda", dtype=torch.bfloat16), torch.randn(2, 2, 256, 128, device="cuda", dtype=torch.bfloat16)
    sdpa = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    assert torch.allclose(causal_attention(q, k, v).float(), sdpa.float(), atol=2e-2)


def test_rope_is_rotate_half_and_relative():
    cfg = model_config("clover-tiny")
    cos, sin = rope_tables(cfg)
    x = torch.randn(1, 1, 1, cfg.head_dim)
    half = cfg.head_dim // 2
    # position p rotates the pair (i, i + half) by p * theta^(-2i/d)
    p, i = 5, 3
    angle = p * cfg.rope_theta ** (-2 * i / cfg.head_dim)
    rotated = apply_rope(x.expand(1, 1, 8, -1).contiguous(), cos[:8], sin[:8])[0, 0, p]
    a, b = x[0, 0, 0, i], x[0, 0, 0, i + half]
    assert torch.allclose(rotated[i], a * torch.cos(torch.tensor(angle)) - b * torch.sin(torch.tensor(angle)), atol=1e-5)
    # dot products depend on the offset only
    q, k = torch.randn(1, 1, 1, cfg.head_dim), torch.randn(1, 1, 1, cfg.head_dim)
    qs = apply_rope(q.expand(1, 1, 20, -1).contiguous(), cos[:20], sin[:20])[0, 0]
    ks = apply_rope(k.expand(1, 1, 20, -1).contiguous(), cos[:20], sin[:20])[0, 0]
    assert torch.allclose(qs[7] @ ks[3], qs[15] @ ks[11], atol=1e-4)


def test_chunked_label_logprobs_equal_full_logits_and_their_gradients():
    torch.manual_seed(0)
    model = Transformer(model_config("clover-tiny", logits_chunk=7))
    model.init_weights(0)
    tokens = torch.randint(0, 2048, (2, 30))
    chunked = model(tokens[:, :-1], tokens[:, 1:])
    chunked.sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    full = model(tokens[:, :-1]).log_softmax(-1).gather(-1, tokens[:, 1:, None]).squeeze(-1)
    full.sum().backward()
    assert torch.allclose(chunked, full, atol=1e-5)
    assert all(torch.allclose(a, p.grad, atol=1e-5) for a, p in zip(grads, model.parameters()))


def test_initialization_is_deterministic_and_scaled():
    a, b = Transformer(model_config("clover-tiny")), Transformer(model_config("clover-tiny"))
    a.init_weights(7)
    b.init_weights(7)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    assert torch.all(a.norm.weight == 1)
    assert a.layers[0].mlp.down_proj.weight.std() < a.layers[0].mlp.up_proj.weight.std()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_block_activation_estimate_matches_saved_tensors(dtype):
    """The plan's per-block activation term against the bytes autograd actually saves (CPU)."""
    cfg = model_config("clover-tiny", dim=128, n_heads=8, n_kv_heads=2, ffn_dim=384)
    block = Transformer(cfg).layers[0].to(dtype)
    cos, sin = rope_tables(cfg)
    tokens = 64
    x = torch.randn(1, tokens, cfg.dim, dtype=dtype, requires_grad=True)
    storages: dict[int, int] = {}
    not_activations = {t.untyped_storage().data_ptr() for t in (*block.parameters(), cos, sin)}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in not_activations:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        block(x, cos[:tokens], sin[:tokens])
    measured = sum(storages.values())
    estimated = block_activation_bytes_per_token(cfg, dtype.itemsize) * tokens
    assert estimated == pytest.approx(measured, rel=0.05), (estimated, measured)


def test_document_masking_isolates_packed_documents():
    """With doc_ids, the second document of a packed row sees only itself: its logits equal those of the
    document alone (RoPE is relative, so the shifted positions do not matter)."""
    torch.manual_seed(0)
    model = Transformer(model_config("clover-tiny"))
    model.init_weights(0)
    first, second = torch.randint(4, 2048, (1, 13)), torch.randint(4, 2048, (1, 19))
    packed = torch.cat([first, second], dim=1)
    doc_ids = torch.tensor([[0] * 13 + [1] * 19])
    with torch.no_grad():
        masked = model(packed, doc_ids=doc_ids)
        alone = model(second)
        unmasked = model(packed)
    assert torch.allclose(masked[:, 13:], alone, atol=1e-4)
    assert torch.allclose(masked[:, :13], unmasked[:, :13], atol=1e-5)  # the first document is unaffected
    assert not torch.allclose(unmasked[:, 13:], alone, atol=1e-3)
