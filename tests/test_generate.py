"""KV-cached, batched generation: the same tokens as the uncached reference, per-row positions under
left padding, seeded sampling independent of the batch, stop tokens, the context limit, and the
server's batching of concurrent requests."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from training.inference.generate import _allocate_cache, generate, generate_batch
from training.inference.serve import Batcher
from training.trainer.model import Transformer, model_config


@pytest.fixture(scope="module")
def tiny() -> Transformer:
    model = Transformer(model_config("clover-tiny"))
    model.init_weights(0)
    return model.eval()


@pytest.fixture(scope="module")
def prompts() -> list[list[int]]:
    generator = torch.Generator().manual_seed(1)
    return [torch.randint(4, 2048, (n,), generator=generator).tolist() for n in (3, 17, 9, 30)]


def test_greedy_cached_matches_uncached_and_each_prompt_alone(tiny, prompts):
    cached = generate_batch(tiny, prompts, 64, samples=2)
    assert cached == generate_batch(tiny, prompts, 64, samples=2, use_cache=False)
    for prompt, rows in zip(prompts, cached):  # alone: no padding, positions from 0
        assert rows == generate(tiny, prompt, 64, samples=2, use_cache=False)
        assert all(len(tokens) == 64 and reason == "length" for tokens, reason in rows)
    assert len({tuple(rows[0][0]) for rows in cached}) == len(prompts)


def test_cache_holds_the_kv_heads_only(tiny):
    keys, values = _allocate_cache(tiny, rows=3, width=40)[0]
    assert keys.shape == values.shape == (3, tiny.cfg.n_kv_heads, 40, tiny.cfg.head_dim)
    assert tiny.cfg.n_kv_heads < tiny.cfg.n_heads


def test_seeded_sampling_is_reproducible_and_independent_of_the_batch(tiny, prompts):
    batch = generate_batch(tiny, prompts, 32, temperature=1.0, top_p=0.9, samples=3, seed=5)
    assert batch == generate_batch(tiny, prompts, 32, temperature=1.0, top_p=0.9, samples=3, seed=5, use_cache=False)
    assert batch == [generate(tiny, p, 32, 1.0, 0.9, 3, seed=5) for p in prompts]
    assert batch[2] == generate_batch(tiny, prompts[2:], 32, 1.0, 0.9, 3, seed=[5, 5])[0]
    other = generate_batch(tiny, prompts, 32, temperature=1.0, top_p=0.9, samples=3, seed=[5, 6, 7, 8])
    assert other[0] == batch[0] and other[1] != batch[1]
    assert len({tuple(tokens) for tokens, _ in batch[0]}) == 3  # the samples of one prompt differ
    with pytest.raises(ValueError, match="2 seeds for 4 prompts"):
        generate_batch(tiny, prompts, 4, seed=[1, 2])


def test_stop_tokens_and_the_context_limit(tiny, prompts):
    free = [tokens for [(tokens, _)] in generate_batch(tiny, prompts, 20)]
    stop = free[1][6]
    rows = generate_batch(tiny, prompts, 20, stop_ids=(stop,))
    expected = [[(t[:t.index(stop)], "stop")] if stop in t else [(t, "length")] for t in free]
    assert rows == expected and expected[1][0][1] == "stop"
    long_prompt = [5] * (tiny.cfg.max_seq_len - 3)
    [(tokens, reason)] = generate(tiny, long_prompt, 10)
    assert len(tokens) == 3 and reason == "length"


def test_ids_beyond_the_tokenizer_are_never_produced(tiny, prompts):
    free = generate_batch(tiny, prompts, 16, temperature=5.0, samples=4, seed=1)
    assert max(t for rows in free for tokens, _ in rows for t in tokens) >= 1000  # a flat distribution reaches them
    limited = generate_batch(tiny, prompts, 16, temperature=5.0, samples=4, seed=1, vocab_limit=1000)
    assert max(t for rows in limited for tokens, _ in rows for t in tokens) < 1000


def test_runs_in_bfloat16(prompts):
    model = Transformer(model_config("clover-tiny"))
    model.init_weights(0)
    model = model.to(torch.bfloat16).eval()
    rows = generate_batch(model, prompts, 16, temperature=0.7, samples=2, seed=3)
    assert [len(r) for r in rows] == [2] * len(prompts)
    assert all(len(tokens) == 16 for r in rows for tokens, _ in r)


def test_batcher_decodes_concurrent_requests_together_each_to_its_own_length(tiny, prompts):
    """`clover serve`'s batching: requests in one window share a decode, and each gets what it would alone."""
    [(free, _)] = generate(tiny, prompts[1], 30)
    stop = next(t for t in free[5:] if t not in free[:5])  # prompt 1 stops after its 5th token: asked for 5, it
    # must end by length, as if alone, although its batch decodes to 20

    def decode(contexts, max_tokens, temperature, top_p, n, seeds):
        return generate_batch(tiny, contexts, max_tokens, temperature, top_p, n, (stop,), seeds)

    batcher = Batcher(decode, tiny.cfg.max_seq_len, window=0.5, max_rows=64)
    asks = [([p], limit, temperature, seed) for p, limit, temperature, seed in
            zip(prompts, (12, 5, 20, 3), (0.0, 0.0, 0.0, 0.9), range(4))]
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda ask: batcher.submit(ask[0], ask[1], ask[2], 1.0, 2, ask[3]), asks))
    assert answers == [decode(p, limit, temperature, 1.0, 2, [seed]) for p, limit, temperature, seed in asks]
    assert answers[1] == [[(free[:5], "length")] * 2]
    assert sum(batcher.batches) == 4 and len(batcher.batches) < 4  # greedy ones shared; 0.9 decoded apart
