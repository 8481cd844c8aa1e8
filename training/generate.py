"""Sampling from a Clover model: greedy at temperature 0, else temperature and nucleus sampling.

No KV cache: each new token re-runs the prefix. That is simple and exact, and fast enough for the
tiny to 1B models this runs on here; serve large models with vLLM from `clover export`.
"""

from __future__ import annotations

import torch

from training.model import Transformer


@torch.no_grad()
def generate(model: Transformer, prompt: list[int], max_new_tokens: int, temperature: float = 0.0,
             top_p: float = 1.0, samples: int = 1, stop_ids: tuple[int, ...] = (), seed: int = 0,
             device: torch.device | None = None) -> list[tuple[list[int], str]]:
    """`samples` continuations of one prompt: (new token ids without the stop token, finish reason).

    The finish reason is "stop" (a stop id was produced) or "length" (max_new_tokens reached, or the
    model's context is full).
    """
    device = device or next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    tokens = torch.tensor([prompt] * samples, dtype=torch.long, device=device)
    done = torch.zeros(samples, dtype=torch.bool, device=device)
    outputs: list[list[int]] = [[] for _ in range(samples)]
    reasons = ["length"] * samples
    for _ in range(min(max_new_tokens, model.cfg.max_seq_len - len(prompt))):
        logits = model(tokens)[:, -1].float()
        if temperature == 0:
            next_ids = logits.argmax(-1)
        else:
            probs = _nucleus(torch.softmax(logits / temperature, -1), top_p)
            next_ids = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        for i in range(samples):
            if done[i]:
                continue
            token = int(next_ids[i])
            if token in stop_ids:
                done[i], reasons[i] = True, "stop"
            else:
                outputs[i].append(token)
        if bool(done.all()):
            break
        tokens = torch.cat([tokens, next_ids[:, None]], dim=1)
    return list(zip(outputs, reasons))


def _nucleus(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of tokens whose probability reaches top_p (always at least one)."""
    if top_p >= 1.0:
        return probs
    sorted_probs, order = probs.sort(-1, descending=True)
    outside = sorted_probs.cumsum(-1) - sorted_probs > top_p
    sorted_probs = sorted_probs.masked_fill(outside, 0.0)
    return torch.zeros_like(probs).scatter(-1, order, sorted_probs)
