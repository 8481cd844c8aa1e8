"""MinHash signatures and LSH band digests, vectorized over many documents at once.

Given the same shingle hashes, signatures are bit-identical to datasketch 2.x `MinHash` (scheme
"affine32", the default) with the same num_perm and seed: the permutation parameters are taken from
datasketch itself, inputs are pre-mixed with the MurmurHash3 finalizer, and each permutation is
`a * h + b` modulo 2**32.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

_NON_WORD = re.compile(r"[^\w\s]|_")
_DIGIT = re.compile(r"\d")
_U32 = np.uint32
_MAX_CELLS = 1 << 22  # shingles x permutations per chunk: bounds memory at 16 MB


def shingle_words(text: str) -> list[str]:
    """Lowercase, digits folded to 0, punctuation and symbols folded to spaces, whitespace collapsed."""
    return _NON_WORD.sub(" ", _DIGIT.sub("0", text.lower())).split()


class ShingleHasher:
    """32-bit hashes of word n-grams (the shingles), stable across processes and machines.

    Each distinct word is hashed once with blake2b; n-grams combine word hashes polynomially in
    uint64 and fold to 32 bits. A document shorter than n words is one shingle of all its words.
    """

    def __init__(self, n: int = 5, cache_words: int = 1 << 20) -> None:
        self.n = n
        self._word_hash = lru_cache(maxsize=cache_words)(self._hash_word)

    @staticmethod
    def _hash_word(word: str) -> int:
        return int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "little")

    def __call__(self, text: str) -> np.ndarray:
        """Sorted distinct shingle hashes of one text (uint32); empty when the text has no words."""
        words = shingle_words(text)
        if not words:
            return np.empty(0, dtype=_U32)
        hashes = np.fromiter(map(self._word_hash, words), dtype=np.uint64, count=len(words))
        n = min(self.n, len(words))
        width = len(words) - n + 1
        combined = hashes[:width].copy()
        for k in range(1, n):
            combined = combined * np.uint64(0x100000001B3) + hashes[k : k + width]
        folded = (combined ^ (combined >> np.uint64(32))).astype(_U32)
        return np.unique(folded)


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer, as datasketch applies it before the permutations."""
    h = h ^ (h >> _U32(16))
    h = h * _U32(0x85EBCA6B)
    h = h ^ (h >> _U32(13))
    h = h * _U32(0xC2B2AE35)
    return h ^ (h >> _U32(16))


@lru_cache(maxsize=8)
def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) of datasketch's affine32 scheme, taken from datasketch so they cannot drift."""
    from datasketch import MinHash

    a, b = MinHash(num_perm=num_perm, seed=seed).permutations
    return a.astype(_U32), b.astype(_U32)


def signatures(shingles: Sequence[np.ndarray], num_perm: int, seed: int) -> np.ndarray:
    """MinHash signatures of many documents: (documents, num_perm) uint32.

    A document without shingles gets all 0xFFFFFFFF, as an empty datasketch MinHash does.
    """
    a, b = permutations(num_perm, seed)
    out = np.full((len(shingles), num_perm), np.iinfo(_U32).max, dtype=_U32)
    sizes = np.array([len(s) for s in shingles], dtype=np.int64)
    docs = np.flatnonzero(sizes)
    start = 0
    while start < len(docs):  # chunks of whole documents, at most _MAX_CELLS values at a time
        end, cells = start, 0
        while end < len(docs) and (end == start or cells + sizes[docs[end]] * num_perm <= _MAX_CELLS):
            cells += sizes[docs[end]] * num_perm
            end += 1
        chunk = docs[start:end]
        mixed = _fmix32(np.concatenate([shingles[i] for i in chunk]).astype(_U32))
        values = mixed[:, None] * a[None, :] + b[None, :]
        offsets = np.concatenate(([0], np.cumsum(sizes[chunk])[:-1]))
        out[chunk] = np.minimum.reduceat(values, offsets, axis=0)
        start = end
    return out


def band_digests(signature_matrix: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One 64-bit digest per band: (documents, bands) int64, ready to shuffle instead of the signature."""
    docs = signature_matrix.shape[0]
    grouped = signature_matrix[:, : bands * rows].reshape(docs, bands, rows).astype(np.uint64)
    digest = np.full((docs, bands), np.uint64(0xCBF29CE484222325))
    for r in range(rows):
        digest = (digest ^ grouped[:, :, r]) * np.uint64(0x100000001B3)
        digest ^= digest >> np.uint64(29)
    return digest.view(np.int64)


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard similarity of two sorted, distinct shingle-hash arrays (1.0 for two empty sets)."""
    if len(a) == 0 and len(b) == 0:
        return 1.0
    inter = len(np.intersect1d(a, b, assume_unique=True))
    return inter / (len(a) + len(b) - inter)


@dataclass(frozen=True)
class LshParams:
    num_perm: int
    bands: int
    rows: int


def lsh_params(threshold: float, num_perm: int) -> LshParams:
    """Bands and rows minimizing false positives and negatives at `threshold` (datasketch's method)."""
    from datasketch.lsh import _optimal_param

    bands, rows = _optimal_param(threshold, num_perm, 0.5, 0.5)
    return LshParams(num_perm, bands, rows)
