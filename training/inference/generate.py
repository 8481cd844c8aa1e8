"""Sampling from a Clover model: greedy at temperature 0, else temperature and nucleus sampling.

Prompts of different lengths decode together, left-padded: each row has its own RoPE positions and
a mask that hides its padding. With the KV cache (the default) each step runs only the new token
against the keys and values stored so far, preallocated per layer for the n_kv_heads (GQA), not the
n_heads; without it each step re-runs the whole sequence, which is slow but is the reference the
cache is tested against. For large models and heavy traffic, serve `clover export`'s output with vLLM.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from schemas.chat import END, messages_ids, template_ids
from training.trainer.model import Transformer

# Attention kernels for decoding. cuDNN's (the first SDPA choice on Hopper with a mask) plans a graph per
# shape, and the key length grows every step: on an H200 that cost 2.6 ms of CPU per layer per token.
DECODE_BACKENDS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
STOP_CHECK_EVERY = 8  # steps between checks that every row has stopped (each check waits for the device)


class ChatTokenizer:
    """A Clover tokenizer with the chat template's ids and stop tokens: all a client of a served model needs."""

    def __init__(self, meta: dict, model_file: str):
        import sentencepiece as spm

        self.meta = meta
        self.processor = spm.SentencePieceProcessor(model_file=model_file)
        self.ids = template_ids(meta)
        self.stops = (meta["special_ids"]["eos"], meta["control_ids"][END])

    @classmethod
    def load(cls, path: str) -> ChatTokenizer:
        """From a `clover export` directory, a `clover train-tokenizer` directory or a run directory."""
        from schemas import storage
        from training.inference.export import CLOVER_TOKENIZER, run_tokenizer_dir

        if (Path(path) / CLOVER_TOKENIZER).exists():
            return cls(json.loads((Path(path) / CLOVER_TOKENIZER).read_text()), str(Path(path) / "tokenizer.model"))
        directory = path if storage.exists(storage.join(path, "tokenizer.json")) else run_tokenizer_dir(path)
        meta = json.loads(storage.read_text(storage.join(directory, "tokenizer.json")))
        return cls(meta, storage.join(directory, meta["model"]))

    def context(self, messages: list[dict]) -> list[int]:
        return messages_ids(self.processor.encode, self.ids, messages)


class ChatModel(ChatTokenizer):
    """A run or export with its tokenizer and chat template, on GPU when there is one: what `clover
    generate`, `clover serve`, `clover sample-candidates` and a local judge share. Thread-safe: one
    call uses the model at a time (`clover serve` batches requests into one call)."""

    def __init__(self, path: str, device: str | None = None):
        from training.inference.export import load_any

        self.model, meta, tokenizer_model = load_any(path)
        super().__init__(meta, tokenizer_model)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model.to(self.device)
        self.name = path
        self.lock = threading.Lock()

    def sample(self, context: list[int], max_new_tokens: int, temperature: float, top_p: float = 1.0,
               samples: int = 1, seed: int = 0) -> list[tuple[list[int], str]]:
        return self.sample_batch([context], max_new_tokens, temperature, top_p, samples, [seed])[0]

    def sample_batch(self, contexts: list[list[int]], max_new_tokens: int, temperature: float, top_p: float,
                     samples: int, seeds: Sequence[int]) -> list[list[tuple[list[int], str]]]:
        """Per context, `samples` continuations decoded together with the KV cache, each context with its seed."""
        with self.lock:
            return generate_batch(self.model, contexts, max_new_tokens, temperature, top_p, samples, self.stops,
                                  seeds, self.device, vocab_limit=self.processor.get_piece_size())

    @torch.no_grad()
    def choose(self, context: list[int], choices: list[str]) -> str:
        """The choice whose tokens (and the closing <|end|>) the model finds most likely after the context."""
        scores = []
        with self.lock:
            for choice in choices:
                answer = [*self.processor.encode(choice), self.ids[END]]
                tokens = torch.tensor([context + answer], device=self.device)
                logprobs = self.model(tokens[:, :-1], tokens[:, 1:])[0, len(context) - 1:]
                scores.append(float(logprobs.sum()))
        return choices[max(range(len(choices)), key=scores.__getitem__)]


@dataclass
class GenerateConfig:
    """`clover generate`'s config: how one completion is sampled."""

    max_new_tokens: int = field(default=64, metadata={"help": "most tokens generated"})
    temperature: float = field(default=0.7, metadata={"help": "sampling temperature; 0 is greedy decoding"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling: the smallest token set with this mass"})
    seed: int = field(default=0, metadata={"help": "sampling seed"})
    raw: bool = field(default=False, metadata={"help": "continue the prompt text as is, without the chat template "
                                                       "(a base model)"})


def complete(model_path: str, prompt: str, max_new_tokens: int, temperature: float, top_p: float = 1.0,
             seed: int = 0, raw: bool = False, device: str | None = None) -> str:
    """One completion of `prompt` (through the chat template unless `raw`) from a run or an export."""
    chat = ChatModel(model_path, device)
    context = [chat.ids["bos"], *chat.processor.encode(prompt)] if raw else \
        chat.context([{"role": "user", "content": prompt}])
    [(tokens, _)] = chat.sample(context, max_new_tokens, temperature, top_p, seed=seed)
    return chat.processor.decode(tokens)


def generate(model: Transformer, prompt: list[int], max_new_tokens: int, temperature: float = 0.0,
             top_p: float = 1.0, samples: int = 1, stop_ids: tuple[int, ...] = (), seed: int = 0,
             device: torch.device | None = None, use_cache: bool = True) -> list[tuple[list[int], str]]:
    """`samples` continuations of one prompt: (new token ids without the stop token, finish reason).

    The finish reason is "stop" (a stop id was produced) or "length" (max_new_tokens reached, or the
    model's context is full).
    """
    return generate_batch(model, [prompt], max_new_tokens, temperature, top_p, samples, stop_ids, seed, device,
                          use_cache)[0]


@torch.no_grad()
def generate_batch(model: Transformer, prompts: list[list[int]], max_new_tokens: int, temperature: float = 0.0,
                   top_p: float = 1.0, samples: int = 1, stop_ids: tuple[int, ...] = (),
                   seed: int | Sequence[int] = 0, device: torch.device | None = None,
                   use_cache: bool = True, vocab_limit: int | None = None) -> list[list[tuple[list[int], str]]]:
    """Per prompt, its `samples` continuations as in `generate`, all rows decoding together.

    `seed` is one per prompt, or one for all: a prompt's samples come from its own generator, so they
    do not depend on which other prompts share the batch (up to float rounding from the padding).
    Ids from `vocab_limit` up are never produced: a model's vocabulary can be larger than its tokenizer's.
    """
    if not prompts or not all(prompts):
        raise ValueError("generate_batch needs at least one prompt, and every prompt at least one token")
    seeds = [seed] * len(prompts) if isinstance(seed, int) else list(seed)
    if len(seeds) != len(prompts):
        raise ValueError(f"{len(seeds)} seeds for {len(prompts)} prompts")
    device = device or next(model.parameters()).device
    longest = max(map(len, prompts))
    steps = max(0, min(max_new_tokens, model.cfg.max_seq_len - longest))
    rows, width = len(prompts) * samples, longest + steps
    tokens = torch.zeros(rows, width, dtype=torch.long, device=device)
    tokens[:, :longest] = torch.tensor([[0] * (longest - len(p)) + p for p in prompts for _ in range(samples)])
    pad = torch.tensor([longest - len(p) for p in prompts for _ in range(samples)], device=device)
    columns = torch.arange(width, device=device)
    positions = (columns - pad[:, None]).clamp_min(0)
    real = columns >= pad[:, None]  # (rows, width): keys that are not padding
    cache = _allocate_cache(model, rows, width) if use_cache else None
    generators = [torch.Generator(device=device).manual_seed(s) for s in seeds] if temperature > 0 else []
    stops = torch.tensor(list(stop_ids), dtype=torch.long, device=device)
    out = torch.zeros(rows, steps, dtype=torch.long, device=device)
    stopped_at = torch.full((rows,), steps, device=device)  # the step of each row's first stop token
    ran, start = 0, 0
    with sdpa_kernel(DECODE_BACKENDS):  # not cuDNN: it builds a new graph for every key length
        for step in range(steps):
            end = longest + step
            if cache is not None:
                slots = [(keys, values, start) for keys, values in cache]
                logits = model.decode(tokens[:, start:end], positions[:, start:end], _mask(real, start, end), slots)
                start = end
            else:
                logits = model.decode(tokens[:, :end], positions[:, :end], _mask(real, 0, end))
            logits = logits.float()
            if vocab_limit is not None:
                logits[:, vocab_limit:] = float("-inf")
            next_ids = _pick(logits, temperature, top_p, generators, samples)
            out[:, step] = tokens[:, end] = next_ids
            stopped_at = torch.where(torch.isin(next_ids, stops) & (stopped_at == steps), step, stopped_at)
            ran = step + 1
            if ran % STOP_CHECK_EVERY == 0 and bool((stopped_at < steps).all()):
                break
    return _results(out[:, :ran].tolist(), stopped_at.tolist(), steps, samples)


def _allocate_cache(model: Transformer, rows: int, width: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Keys and values of every layer for `width` positions, in the model's dtype: (rows, n_kv_heads, width, head_dim)."""
    weight = model.lm_head.weight
    shape = (rows, model.cfg.n_kv_heads, width, model.cfg.head_dim)
    return [(torch.empty(shape, dtype=weight.dtype, device=weight.device),
             torch.empty(shape, dtype=weight.dtype, device=weight.device)) for _ in range(model.cfg.n_layers)]


def _mask(real: torch.Tensor, start: int, end: int) -> torch.Tensor:
    """(rows, 1, end - start, end): queries start..end-1 see earlier real keys. A padding query sees
    itself too, so that its (unused) output stays finite instead of NaN."""
    queries = torch.arange(start, end, device=real.device)[:, None]
    keys = torch.arange(end, device=real.device)[None]
    return ((keys <= queries) & (real[:, None, :end] | (keys == queries)))[:, None]


def _pick(logits: torch.Tensor, temperature: float, top_p: float, generators: list[torch.Generator],
          samples: int) -> torch.Tensor:
    """The next token of every row: argmax at temperature 0, else one draw per row from each prompt's generator."""
    if temperature == 0:
        return logits.argmax(-1)
    probs = _nucleus(torch.softmax(logits / temperature, -1), top_p)
    return torch.cat([torch.multinomial(rows, 1, generator=generator).squeeze(-1)
                      for rows, generator in zip(probs.split(samples), generators)])


def _results(out: list[list[int]], stopped_at: list[int], steps: int,
             samples: int) -> list[list[tuple[list[int], str]]]:
    rows = [(tokens[:stop], "stop") if stop < steps else (tokens, "length") for tokens, stop in zip(out, stopped_at)]
    return [rows[i:i + samples] for i in range(0, len(rows), samples)]


def _nucleus(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of tokens whose probability reaches top_p (always at least one)."""
    if top_p >= 1.0:
        return probs
    sorted_probs, order = probs.sort(-1, descending=True)
    outside = sorted_probs.cumsum(-1) - sorted_probs > top_p
    sorted_probs = sorted_probs.masked_fill(outside, 0.0)
    return torch.zeros_like(probs).scatter(-1, order, sorted_probs)
