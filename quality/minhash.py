"""MinHash signatures and LSH band digests, vectorized over many documents at once.

Given the same shingle hashes, signatures are bit-identical to datasketch 2.x `MinHash` (scheme
"affine32", the default) with the same num_perm and seed: the permutation parameters are taken from
datasketch itself, inputs are pre-mixed with the MurmurHash3 finalizer, and each permutation is
`a * h + b` modulo 2**32.

That holds only for the affine32 scheme: datasketch 1.x draws mersenne-prime parameters, which the
uint32 cast would truncate, so signatures (and any index written with them) would silently differ.
The scheme is therefore checked when the permutations are first taken, and `scheme_record` goes into
every dedup index. datasketch (which imports scipy: 0.4 s) is imported only then, so a Spark executor
handed the driver's permutations never imports it.
"""

from __future__ import annotations

import hashlib
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

SCHEME = "affine32"
_NON_WORD = re.compile(r"[^\w\s]|_")
_DIGIT = re.compile(r"\d")
_U32 = np.uint32
_PRIME = np.uint64(0x100000001B3)
_MAX_CELLS = 1 << 19  # permutations x shingles per chunk: 2 MB of uint32 stays in cache
# The same folding for ASCII text as the regexes, through one bytes.translate.
_ASCII_FOLD = bytes.maketrans((string.punctuation + string.digits).encode(),
                              b" " * len(string.punctuation) + b"0" * len(string.digits))


def fold_text(text: str) -> bytes:
    """Lowercase, digits folded to 0, punctuation and symbols folded to spaces; UTF-8 with ASCII spaces."""
    text = text.lower()
    if text.isascii():
        return text.encode("ascii").translate(_ASCII_FOLD)
    return " ".join(_NON_WORD.sub(" ", _DIGIT.sub("0", text)).split()).encode("utf-8")


def shingle_words(text: str) -> list[bytes]:
    """The words shingles are made of: the folded text split on whitespace."""
    return fold_text(text).split()


_IS_SPACE = np.zeros(256, dtype=bool)
_IS_SPACE[[9, 10, 11, 12, 13, 32]] = True


def _mix64(x: np.ndarray) -> np.ndarray:
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


class ShingleHasher:
    """32-bit hashes of word n-grams (the shingles), stable across processes and machines.

    The whole batch is one byte buffer: words are found, hashed (a polynomial over their bytes, then
    splitmix64) and combined into n-grams with numpy, never one word at a time in Python. A document
    shorter than n words is one shingle of all its words.
    """

    def __init__(self, n: int = 5) -> None:
        self.n = n

    def __call__(self, text: str) -> np.ndarray:
        """Shingle hashes of one text in text order (uint32); empty when the text has no words."""
        return self.batch([text])[0]

    def _words(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(word hashes of the whole batch in order, words per document)."""
        folded = [fold_text(t) for t in texts]
        doc_starts = np.concatenate(([0], np.cumsum([len(f) + 1 for f in folded])[:-1]))
        buffer = np.frombuffer(b" ".join(folded) + b" ", dtype=np.uint8)
        space = _IS_SPACE[buffer]
        starts = np.flatnonzero(~space & np.concatenate(([True], space[:-1])))
        ends = np.flatnonzero(~space[:-1] & space[1:]) + 1
        lengths = ends - starts
        if len(starts) == 0:
            return np.empty(0, dtype=np.uint64), np.zeros(len(texts), dtype=np.int64)
        letters = np.flatnonzero(~space)
        word_of_letter = np.repeat(np.arange(len(starts)), lengths)
        powers = np.concatenate(([np.uint64(1)], np.cumprod(np.full(int(lengths.max()) - 1, _PRIME, dtype=np.uint64))))
        weights = powers[ends[word_of_letter] - letters - 1]
        sums = np.add.reduceat((buffer[letters].astype(np.uint64) + np.uint64(1)) * weights,
                               np.concatenate(([0], np.cumsum(lengths)[:-1])))
        hashes = _mix64(sums ^ lengths.astype(np.uint64))
        doc_of_word = np.searchsorted(doc_starts, starts, side="right") - 1
        return hashes, np.bincount(doc_of_word, minlength=len(texts))

    def batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Shingle hashes of many texts with a few numpy calls for the whole batch.

        Repeated shingles are kept (a MinHash ignores them); `jaccard` makes sets where it needs them.
        """
        hashes, lengths = self._words(texts)
        ends = np.cumsum(lengths)
        n, total = self.n, len(hashes)
        width = max(total - n + 1, 0)
        combined = hashes[:width].copy()
        for k in range(1, n):
            combined = combined * _PRIME + hashes[k : k + width]
        doc_of_start = np.repeat(np.arange(len(texts), dtype=np.uint64), lengths)[:width]
        inside = np.arange(width) + n <= ends[doc_of_start.astype(np.int64)] if width else np.zeros(0, bool)
        doc_ids, values = doc_of_start[inside], combined[inside]
        short = np.flatnonzero((lengths > 0) & (lengths < n))
        if len(short):  # a document shorter than n words is one shingle of all its words
            extra = []
            for d in short:
                value = 0
                for h in hashes[ends[d] - lengths[d] : ends[d]].tolist():
                    value = (value * int(_PRIME) + h) & 0xFFFFFFFFFFFFFFFF
                extra.append(value)
            doc_ids = np.concatenate([doc_ids, short.astype(np.uint64)])
            values = np.concatenate([values, np.array(extra, dtype=np.uint64)])
            order = np.argsort(doc_ids, kind="stable")  # put the short documents' shingles in place
            doc_ids, values = doc_ids[order], values[order]
        folded = (values ^ (values >> np.uint64(32))).astype(_U32)
        bounds = np.concatenate(([0], np.cumsum(np.bincount(doc_ids.astype(np.int64), minlength=len(texts)))))
        return [folded[bounds[i] : bounds[i + 1]] for i in range(len(texts))]


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer, as datasketch applies it before the permutations."""
    h = h ^ (h >> _U32(16))
    h = h * _U32(0x85EBCA6B)
    h = h ^ (h >> _U32(13))
    h = h * _U32(0xC2B2AE35)
    return h ^ (h >> _U32(16))


def _require_affine32() -> None:
    """Fail unless datasketch's default MinHash is the affine32 scheme this module reproduces."""
    from datasketch import MinHash

    probe = MinHash(num_perm=2, seed=1)
    a, b = probe.permutations
    if getattr(probe, "scheme", None) != SCHEME or a.dtype != _U32 or b.dtype != _U32:
        from importlib.metadata import version

        raise ImportError(f"Clover's MinHash needs datasketch>=2.0 (scheme {SCHEME!r}); the installed datasketch "
                          f"{version('datasketch')} uses {getattr(probe, 'scheme', 'legacy')!r} permutations "
                          "(pip install 'datasketch>=2.0')")


@lru_cache(maxsize=8)
def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) of datasketch's affine32 scheme, taken from datasketch so they cannot drift."""
    from datasketch import MinHash

    _require_affine32()
    a, b = MinHash(num_perm=num_perm, seed=seed, scheme=SCHEME).permutations
    return a.astype(_U32), b.astype(_U32)


def scheme_record(num_perm: int, seed: int) -> dict:
    """What makes signatures comparable: the scheme, num_perm and a hash of the permutation parameters."""
    a, b = permutations(num_perm, seed)
    digest = hashlib.sha256(a.astype("<u4").tobytes() + b.astype("<u4").tobytes()).hexdigest()
    return {"scheme": SCHEME, "num_perm": num_perm, "permutations_sha256": digest}


def signatures(shingles: Sequence[np.ndarray], num_perm: int, seed: int,
               permutation: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """MinHash signatures of many documents: (documents, num_perm) uint32.

    A document without shingles gets all 0xFFFFFFFF, as an empty datasketch MinHash does. `permutation`
    is `permutations(num_perm, seed)` taken elsewhere (on the driver, for an executor).
    """
    a, b = permutation if permutation is not None else permutations(num_perm, seed)
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
        values = a[:, None] * mixed[None, :] + b[:, None]  # (num_perm, shingles): reduce along rows
        offsets = np.concatenate(([0], np.cumsum(sizes[chunk])[:-1]))
        out[chunk] = np.minimum.reduceat(values, offsets, axis=1).T
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
    """Exact Jaccard similarity of the sets of two shingle-hash arrays (1.0 for two empty sets)."""
    a, b = np.unique(a), np.unique(b)
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
