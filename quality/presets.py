"""Signal presets: which published reading of each rule the scores follow, and its default thresholds.

A preset changes definitions and thresholds, never the pipeline or the score columns: every preset
fills the same columns (`quality.signals.SCORE_RANGES`), so inspect and what-if work unchanged.

- `clover` (default): Clover's reading of the papers (docs/quality.md).
- `fineweb`: datatrove's definitions and defaults for the filters of FineWeb's pipeline, in its order
  (GopherRepetitionFilter and GopherQualityFilter on the text as it arrives, then
  C4QualityFilter(filter_no_terminal_punct=False), then FineWebQualityFilter on the text C4 left).
  Sources, datatrove 0.10.1: pipeline/filters/gopher_repetition_filter.py, gopher_quality_filter.py,
  c4_filters.py, fineweb_quality_filter.py, utils/text.py, utils/word_tokenizers.py (English: spaCy's
  blank tokenizer, reimplemented in `quality.text.spacy_words`).
- `redpajama`: RedPajama-V2's `rps_*` signal definitions where it has them, its README's example Gopher
  rules and C4's as thresholds (`quality.redpajama`).
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Callable, Iterator

import numpy as np

from quality import fineweb_tables
from quality.c4 import POLICY_PHRASES
from quality.text import ratio, spacy_words_and_sentences

PRESETS = ("clover", "fineweb", "redpajama")

STOP_WORDS = frozenset({"the", "be", "to", "of", "and", "that", "have", "with"})
_FINEWEB_LINE_END = tuple(fineweb_tables.DATATROVE_TERMINAL_PUNCTUATION)
_C4_CITATION = re.compile(r"\[\d*]|\[edit]|\[citation needed]")  # case-sensitive, "[]" included
_C4_LINE_END = (".", "?", "!", '"', "'")
# a literal first newline, not a repeat, lets the regex engine scan for it quickly
_PARAGRAPH_BREAK = re.compile("\n\n+")
_LINE_BREAKS = re.compile("\n\n*")


def _later_copies(elements: list[str]) -> tuple[int, int]:
    """(copies after the first, their characters): datatrove's find_duplicates. Every element counts
    but each distinct one's first occurrence."""
    distinct = set(elements)
    return len(elements) - len(distinct), sum(map(len, elements)) - sum(map(len, distinct))


def most_common_ngram(words: list[str], n: int) -> tuple[tuple[str, ...], int]:
    """The most frequent word n-gram and its count, ties going to the n-gram seen first (as
    Counter.most_common, which datatrove and RedPajama-V2 both use); ((), 0) without n-grams."""
    grams = Counter(zip(*(words[i:] for i in range(n))))
    return grams.most_common(1)[0] if grams else ((), 0)


def _word_offsets(words: list[str]) -> np.ndarray:
    """Where each word starts in the words joined without separator, then the joined length."""
    offsets = np.zeros(len(words) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, words), dtype=np.int64, count=len(words)), out=offsets[1:])
    return offsets


def _top_ngram_chars(words: list[str], offsets: np.ndarray, sizes: range) -> dict[int, int]:
    """For each n in `sizes` (from 2 up), the characters of the most frequent word n-gram, joined by
    spaces, times its count; 0 without n-grams. A single occurrence counts (datatrove's
    find_top_duplicate); ties go to the n-gram seen first, as in `most_common_ngram`."""
    result = {n: int(offsets[position + n] - offsets[position] + n - 1) * top if top else 0
              for n, _, position, top in _top_ngrams(words, sizes.stop)}
    return {n: result[n] for n in sizes}


def _top_ngrams(words: list[str], stop: int) -> Iterator[tuple[int, np.ndarray, int, int]]:
    """For each n from 2 below `stop`: (n, each position's n-gram id, the first position of the most
    frequent n-gram, its count); (n, empty, 0, 0) without n-grams.

    An n-gram is known by the position where it first occurs, built from its (n-1)-gram's and its
    last word's, so equal ids mean equal word tuples and the counting runs in numpy."""
    first_seen: dict[str, int] = {}
    word_ids = np.fromiter(map(first_seen.setdefault, words, itertools.count()), dtype=np.int64, count=len(words))
    gram_ids = word_ids
    for n in range(2, stop):
        grams = len(words) - n + 1
        if grams <= 0:
            yield n, np.empty(0, dtype=np.int64), 0, 0
            continue
        _, first, gram_ids, counts = np.unique(gram_ids[:grams] * len(words) + word_ids[n - 1:], return_index=True,
                                               return_inverse=True, return_counts=True)
        gram_ids = first[gram_ids]
        top = counts.max()
        yield n, gram_ids, int(first[counts == top].min()), int(top)


def fineweb_top_ngram_starts(words: list[str], n: int) -> np.ndarray:
    """Where each occurrence of the n-gram `gopher_top_{n}gram_char_frac` counts starts (fineweb preset),
    overlapping ones included: the positions `_top_ngrams` gives the top n-gram's id."""
    for size, gram_ids, position, _ in _top_ngrams(words, n + 1):
        if size == n:
            return np.flatnonzero(gram_ids == position)
    return np.empty(0, dtype=np.int64)


_BASE = 0x100000001B3  # odd, so it has an inverse modulo 2**64


def _greedy_duplicate_chars(words: list[str], offsets: np.ndarray, sizes: range) -> dict[int, int]:
    """datatrove's find_all_duplicate for each n in `sizes`: scan left to right; an n-gram (words
    concatenated without separator) seen before adds its characters and the scan jumps past it, so the
    first occurrence never counts and overlapping repeats count once.

    Only an n-gram that occurs twice can be seen again, so each scan visits only those positions, found
    by a polynomial hash of the joined characters (mod 2**64) and its length, for every size in one
    sort (a key shared across sizes only adds a visit); a hash match is confirmed on the strings, and a
    collision falls back to scanning the strings themselves."""
    joined = "".join(words)
    codes = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    powers = np.concatenate(([np.uint64(1)], np.cumprod(np.full(len(codes), _BASE, dtype=np.uint64))))
    inverse = np.concatenate(([np.uint64(1)], np.cumprod(np.full(len(codes), pow(_BASE, -1, 1 << 64), dtype=np.uint64))))
    prefix = np.concatenate(([np.uint64(0)], np.cumsum(codes * powers[:-1], dtype=np.uint64)))
    keys = []
    for n in sizes:
        starts, ends = offsets[:max(len(words) - n + 1, 0)], offsets[n:]
        keys.append((prefix[ends] - prefix[starts]) * inverse[starts] ^ (ends - starts).astype(np.uint64))
    size_starts = np.cumsum([0] + [len(n_keys) for n_keys in keys])  # where each size's keys begin
    all_keys = np.concatenate(keys)
    repeated = np.flatnonzero(_occurs_twice(all_keys))
    cuts = np.searchsorted(repeated, size_starts)
    positions = (repeated - np.repeat(size_starts[:-1], np.diff(cuts))).tolist()
    repeated_keys, bounds, cuts = all_keys[repeated].tolist(), offsets.tolist(), cuts.tolist()
    return {n: _scan_repeats(joined, bounds, positions[cuts[i]:cuts[i + 1]], repeated_keys[cuts[i]:cuts[i + 1]], n)
            for i, n in enumerate(sizes)}


def _occurs_twice(keys: np.ndarray) -> np.ndarray:
    """Mask of the keys that occur more than once: one sort, cheaper than np.unique's inverse and counts."""
    order = np.argsort(keys)
    same_as_next = keys[order[1:]] == keys[order[:-1]]
    shared = np.zeros(len(keys), dtype=bool)
    shared[1:] = same_as_next
    shared[:-1] |= same_as_next
    repeated = np.empty_like(shared)
    repeated[order] = shared
    return repeated


def _scan_repeats(joined: str, bounds: list[int], positions: list[int], keys: list[int], n: int) -> int:
    """The greedy scan over the positions whose hash repeats (`keys`: each one's hash); n-gram p spans
    joined[bounds[p]:bounds[p + n]]."""
    first: dict[int, int] = {}
    chars = i = 0
    for position, key in zip(positions, keys):
        if position < i:
            continue
        earlier = first.setdefault(key, position)
        if earlier == position:
            i = position + 1
        elif joined[bounds[earlier]:bounds[earlier + n]] == joined[bounds[position]:bounds[position + n]]:
            chars, i = chars + bounds[position + n] - bounds[position], position + n
        else:
            return _scan_strings(joined, bounds[:len(bounds) - n], bounds[n:], n)
    return chars


def _scan_strings(joined: str, starts: list[int], ends: list[int], n: int) -> int:
    """The same scan over the strings themselves (after a 64-bit hash collision)."""
    return sum(ends[i] - starts[i] for i in _greedy_repeat_starts(joined, starts, ends, n))


def _greedy_repeat_starts(joined: str, starts: list[int], ends: list[int], n: int) -> list[int]:
    """The n-grams datatrove's find_all_duplicate counts, by index: n-gram i is joined[starts[i]:ends[i]]."""
    seen: set[str] = set()
    counted = []
    i = 0
    while i < len(starts):
        gram = joined[starts[i]:ends[i]]
        if gram in seen:
            counted.append(i)
            i += n
        else:
            seen.add(gram)
            i += 1
    return counted


def fineweb_duplicate_ngram_starts(words: list[str], n: int) -> list[int]:
    """Where each n-gram `gopher_dup_{n}gram_char_frac` counts starts (fineweb preset): the string scan
    the hashed scan of `_greedy_duplicate_chars` stands in for."""
    bounds = _word_offsets(words).tolist()
    return _greedy_repeat_starts("".join(words), bounds[:max(len(bounds) - n, 0)], bounds[n:], n)


def later_copy_spans(text: str, paragraphs: bool) -> list[tuple[int, int]]:
    """Character spans of the lines (or paragraphs) `fineweb_gopher_repetition` counts as later copies,
    split where it splits them; an empty piece has no span."""
    start, body = (len(text) - len(text.lstrip()), text.strip()) if paragraphs else (0, text)
    breaks = (_PARAGRAPH_BREAK if paragraphs else _LINE_BREAKS).finditer(body)
    seen: set[str] = set()
    spans, pos = [], 0
    for end, after in [m.span() for m in breaks] + [(len(body), len(body))]:
        piece = body[pos:end]
        if piece in seen and piece:
            spans.append((start + pos, start + end))
        seen.add(piece)
        pos = after
    return spans


def fineweb_words(text: str, line_view: Callable[[str], tuple[list[str], int]] = spacy_words_and_sentences) -> list[str]:
    """The spaCy words the fineweb Gopher filters score: each stripped line's, which are the text's own,
    since a line break ends every special-case match (`line_view`: a caller's memo of a line's words)."""
    return list(itertools.chain.from_iterable(line_view(line.strip())[0] for line in text.splitlines()))


def fineweb_gopher_repetition(text: str, words: list[str]) -> dict[str, float]:
    """GopherRepetitionFilter's values; every character fraction is over len(text), newlines included."""
    return fineweb_line_paragraph_repetition(text) | fineweb_ngram_repetition(text, words)


def fineweb_line_paragraph_repetition(text: str) -> dict[str, float]:
    """GopherRepetitionFilter's line and paragraph values, which it checks before it splits words."""
    paragraphs = _PARAGRAPH_BREAK.split(text.strip())
    lines = _LINE_BREAKS.split(text)
    para_copies, para_chars = _later_copies(paragraphs)
    line_copies, line_chars = _later_copies(lines)
    return {
        "gopher_dup_line_frac": ratio(line_copies, len(lines)),
        "gopher_dup_para_frac": ratio(para_copies, len(paragraphs)),
        "gopher_dup_line_char_frac": ratio(line_chars, len(text)),
        "gopher_dup_para_char_frac": ratio(para_chars, len(text)),
    }


def fineweb_ngram_repetition(text: str, words: list[str]) -> dict[str, float]:
    """GopherRepetitionFilter's top and duplicate n-gram values over the text's spacy_words."""
    offsets = _word_offsets(words)
    top = _top_ngram_chars(words, offsets, range(2, 5))
    duplicate = _greedy_duplicate_chars(words, offsets, range(5, 11))
    return {**{f"gopher_top_{n}gram_char_frac": ratio(chars, len(text)) for n, chars in top.items()},
            **{f"gopher_dup_{n}gram_char_frac": ratio(chars, len(text)) for n, chars in duplicate.items()}}


def has_letter(word: str) -> bool:
    """A word `gopher_alpha_word_frac` counts as alphabetic (fineweb preset)."""
    return any(map(str.isalpha, word))


def fineweb_gopher_quality(text: str, words: list[str]) -> dict[str, float]:
    """GopherQualityFilter's values. Words are spaCy tokens, punctuation included: the word count and
    mean length use the tokens holding a character outside datatrove's punctuation set, every other
    ratio all tokens. Stop words match case-sensitively."""
    n_words = len(words)
    counts = Counter(words)  # each distinct word's tests run once
    non_symbol = [(word, count) for word, count in counts.items()
                  if word.strip(fineweb_tables.DATATROVE_PUNCTUATION)]  # a character not in the set
    n_non_symbol = sum(count for _, count in non_symbol)
    lines = text.splitlines()
    return {
        "gopher_word_count": float(n_non_symbol),
        "gopher_mean_word_length": ratio(sum(len(word) * count for word, count in non_symbol), n_non_symbol),
        "gopher_hash_word_ratio": ratio(text.count("#"), n_words),
        "gopher_ellipsis_word_ratio": ratio(text.count("...") + text.count("…"), n_words),
        "gopher_bullet_line_frac": ratio(sum(s.lstrip().startswith(("•", "-")) for s in lines), len(lines)),
        "gopher_ellipsis_line_frac": ratio(sum(s.rstrip().endswith(("...", "…")) for s in lines), len(lines)),
        "gopher_alpha_word_frac": ratio(sum(count for word, count in counts.items() if has_letter(word)), n_words),
        "gopher_stop_words": float(len(STOP_WORDS.intersection(counts))),
    }


def fineweb_c4(text: str, require_terminal_punct: bool, min_words: int, max_word_length: int,
               line_view: Callable[[str], tuple[list[str], int]] = spacy_words_and_sentences,
               ) -> tuple[str, dict[str, float], list[str]]:
    """C4QualityFilter's line pass and document values: (text kept, scores, spacy_words of the text kept,
    which are its lines' words, since a newline ends every special-case match). Lines are stripped; a
    line goes for a word longer than max_word_length, (option) no terminal mark or an ellipsis end,
    fewer than min_words words (blank lines included), `javascript`, or a policy phrase. `lorem
    ipsum` counts on lines that got past the word rules, `{` on those that also lack `javascript`,
    sentences (spaCy's sentencizer) on the lines kept. `line_view` gives a line's spaCy words and
    sentences (a caller that has them already passes its memo)."""
    kept: list[str] = []
    kept_words: list[str] = []
    considered = removed = sentences = 0
    lorem = curly = False
    for line in text.splitlines():
        line = line.strip()
        words = line.split()
        considered += bool(line)
        if max_word_length != -1 and len(line) > max_word_length and any(len(w) > max_word_length for w in words):
            removed += bool(line)
            continue
        if "[" in line:  # every citation starts with one
            line = _C4_CITATION.sub("", line)
        if (require_terminal_punct and (not line.endswith(_C4_LINE_END) or line.endswith("..."))) \
                or len(words) < min_words:
            removed += bool(line)
            continue
        lowered = line.lower()
        lorem = lorem or "lorem ipsum" in lowered
        if "javascript" in lowered:
            removed += 1
            continue
        curly = curly or "{" in line
        if any(map(lowered.__contains__, POLICY_PHRASES)):
            removed += 1
            continue
        line_words, line_sentences = line_view(line)
        sentences += line_sentences
        kept_words += line_words
        kept.append(line)
    return "\n".join(kept).strip(), {
        "c4_removed_line_frac": ratio(removed, considered),
        "c4_sentence_count": float(sentences),
        "c4_lorem_ipsum": float(lorem),
        "c4_curly_bracket": float(curly),
    }, kept_words


def fineweb_quality(text: str, words: list[str]) -> dict[str, float]:
    """FineWebQualityFilter's values on the text C4 left and its spacy_words. The duplicate-line fraction
    counts copies after the first over the characters of the text without newlines."""
    lines = [line for line in text.split("\n") if line.strip()]
    return {
        "fineweb_line_punct_frac": ratio(sum(line.endswith(_FINEWEB_LINE_END) for line in lines), len(lines)),
        "fineweb_short_line_frac": ratio(sum(len(line) <= 30 for line in lines), len(lines)),
        "fineweb_dup_line_char_frac": ratio(_later_copies(lines)[1], len(text.replace("\n", ""))),
        "fineweb_newline_word_ratio": ratio(text.count("\n"), len(words)),
    }
