"""Vectorized n-gram repetition over integer sequences (word ids or token ids).

One core serves curation (word ids of a document) and the trainer's batch gate (token ids of a
micro-batch), so a threshold means the same thing in both places. n-grams are compared through a
64-bit hash of mixed ids; two different n-grams collide with probability about 2**-64 per pair.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer: spreads small ids over 64 bits so the polynomial hash has no structure."""
    x = x ^ (x >> np.uint64(30))
    x = x * _MIX1
    x = x ^ (x >> np.uint64(27))
    x = x * _MIX2
    return x ^ (x >> np.uint64(31))


def ngram_hashes(ids: np.ndarray, n: int) -> np.ndarray:
    """Hash of every n-gram along the last axis: shape (..., L - n + 1), uint64."""
    mixed = _mix(np.asarray(ids).astype(np.uint64))
    width = mixed.shape[-1] - n + 1
    if width <= 0:
        return np.empty(mixed.shape[:-1] + (0,), dtype=np.uint64)
    hashes = mixed[..., :width].copy()
    for k in range(1, n):
        hashes = hashes * _GOLDEN + mixed[..., k : k + width]
    return hashes


def _coverage(starts: np.ndarray, n: int, length: int) -> np.ndarray:
    """Positions covered by an n-gram starting at any flagged start, row by row (1-D or 2-D)."""
    starts2d = np.atleast_2d(starts)
    diff = np.zeros((starts2d.shape[0], length + 1), dtype=np.int32)
    rows, cols = np.nonzero(starts2d)
    diff[rows, cols] += 1
    diff[rows, cols + n] -= 1
    covered = np.cumsum(diff[:, :length], axis=1) > 0
    return covered if starts.ndim == 2 else covered[0]


def _flat_hashes(ids: np.ndarray, n: int) -> tuple[np.ndarray, int, int]:
    """Row-separated n-gram hashes of a 1-D or 2-D array, flattened, with rows and row length."""
    ids2d = np.atleast_2d(ids)
    rows, length = ids2d.shape
    hashes = ngram_hashes(ids2d, n)
    if rows > 1:  # keep n-grams of different rows apart: a repeat is judged within one sequence
        hashes = _mix(hashes ^ _mix(np.arange(rows, dtype=np.uint64))[:, None])
    return hashes.reshape(-1), rows, length


def repeated_ngram_mask(ids: np.ndarray, n: int) -> np.ndarray:
    """True where a position lies inside an n-gram that repeats an earlier n-gram of the same row.

    The first occurrence is not a repeat: "x y x y" with n=2 marks the last two positions.
    Works on one sequence (L,) or a batch (B, L); rows are independent.
    """
    ids = np.asarray(ids)
    hashes, rows, length = _flat_hashes(ids, n)
    width = max(length - n + 1, 0)
    if width == 0:
        return np.zeros(ids.shape, dtype=bool)
    _, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
    is_repeat = (first[inverse] != np.arange(hashes.size)).reshape(rows, width)
    return _coverage(is_repeat, n, length).reshape(ids.shape)


def repeated_ngram_fraction(ids: np.ndarray, n: int, lengths: np.ndarray | None = None) -> float:
    """Fraction of positions covered by repeated n-grams (see `repeated_ngram_mask`); 0 when empty.

    `lengths` (one per row of a batch) counts only each row's first `length` positions, so the
    padding of a packed row neither repeats nor dilutes.
    """
    ids = np.asarray(ids)
    if ids.size == 0:
        return 0.0
    mask = repeated_ngram_mask(ids, n)
    if lengths is None:
        return float(mask.mean())
    valid = np.arange(ids.shape[-1]) < np.asarray(lengths).reshape(-1, 1)
    total = int(valid.sum())
    return float(mask[valid].sum()) / total if total else 0.0


def duplicate_ngram_weight_fraction(ids: np.ndarray, weights: np.ndarray, n: int) -> float:
    """Weight covered by every occurrence of any n-gram seen more than once, over total weight.

    This is Gopher's "characters contained within all duplicate n-grams" when ids are words and
    weights their lengths: first occurrences count, overlapping n-grams count each word once.
    """
    total = float(weights.sum())
    if total == 0:
        return 0.0
    return float(weights[duplicate_ngram_mask(ids, n)].sum()) / total


def duplicate_ngram_mask(ids: np.ndarray, n: int) -> np.ndarray:
    """True where a position lies inside any occurrence of an n-gram seen more than once (1-D)."""
    if len(ids) < n:
        return np.zeros(len(ids), dtype=bool)
    _, inverse, counts = np.unique(ngram_hashes(ids, n), return_inverse=True, return_counts=True)
    return _coverage(counts[inverse] > 1, n, len(ids))


def top_ngram_weight_fraction(ids: np.ndarray, weights: np.ndarray, n: int) -> float:
    """Weight covered by the most frequent n-gram, over total weight; 0 when no n-gram repeats.

    Ties in frequency go to the n-gram with more weight per occurrence (the longer one in characters).
    """
    total = float(weights.sum())
    if total == 0:
        return 0.0
    return float(weights[top_ngram_mask(ids, weights, n)].sum()) / total


def top_ngram_mask(ids: np.ndarray, weights: np.ndarray, n: int) -> np.ndarray:
    """True where a position lies inside an occurrence of the most frequent n-gram (none if no repeat)."""
    if len(ids) < n:
        return np.zeros(len(ids), dtype=bool)
    _, first, inverse, counts = np.unique(ngram_hashes(ids, n), return_index=True, return_inverse=True,
                                          return_counts=True)
    if counts.max() < 2:
        return np.zeros(len(ids), dtype=bool)
    cumulative = np.concatenate(([0.0], np.cumsum(weights, dtype=np.float64)))
    ngram_weight = cumulative[first + n] - cumulative[first]
    best = np.lexsort((ngram_weight, counts))[-1]
    return _coverage(inverse == best, n, len(ids))


def word_ids(tokens: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Integer ids (equal words share an id) and character lengths of a token list."""
    vocab: dict[str, int] = {}
    ids = np.fromiter((vocab.setdefault(t, len(vocab)) for t in tokens), dtype=np.int64, count=len(tokens))
    lengths = np.fromiter((len(t) for t in tokens), dtype=np.float64, count=len(tokens))
    return ids, lengths
