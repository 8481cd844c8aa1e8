"""Sampling from a Clover model: greedy at temperature 0, else temperature and nucleus sampling.

No KV cache: each new token re-runs the prefix. That is simple and exact, and fast enough for the
tiny to 1B models this runs on here; serve large models with vLLM from `clover export`.
"""

from __future__ import annotations

import threading

import torch

from schemas.chat import END, messages_ids, template_ids
from training.model import Transformer


class ChatModel:
    """A run or export with its tokenizer and chat template, on GPU when there is one: what `clover
    generate`, `clover serve`, `clover sample-candidates` and a local judge share."""

    def __init__(self, path: str, device: str | None = None):
        import sentencepiece as spm

        from training.export import load_any

        self.model, self.meta, tokenizer_model = load_any(path)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model.to(self.device)
        self.processor = spm.SentencePieceProcessor(model_file=tokenizer_model)
        self.ids = template_ids(self.meta)
        self.stops = (self.meta["special_ids"]["eos"], self.meta["control_ids"][END])
        self.name = path
        self.lock = threading.Lock()  # one decode at a time when shared by server threads

    def context(self, messages: list[dict]) -> list[int]:
        return messages_ids(self.processor.encode, self.ids, messages)

    def sample(self, context: list[int], max_new_tokens: int, temperature: float, top_p: float = 1.0,
               samples: int = 1, seed: int = 0) -> list[tuple[list[int], str]]:
        return generate(self.model, context, max_new_tokens, temperature, top_p, samples, self.stops, seed, self.device)

    @torch.no_grad()
    def choose(self, context: list[int], choices: list[str]) -> str:
        """The choice whose tokens (and the closing <|end|>) the model finds most likely after the context."""
        scores = []
        for choice in choices:
            answer = [*self.processor.encode(choice), self.ids[END]]
            tokens = torch.tensor([context + answer], device=self.device)
            logprobs = self.model(tokens[:, :-1], tokens[:, 1:])[0, len(context) - 1:]
            scores.append(float(logprobs.sum()))
        return choices[max(range(len(choices)), key=scores.__getitem__)]


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
