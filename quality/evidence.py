"""Evidence for a rejection: which parts of a stored text made a score fail, found by the scoring code itself.

`clover inspect` highlights these spans. Each finder calls the same function the score came from
(`quality.repetition` masks, `quality.c4.drop_line`, `quality.gopher`), so a highlight is exactly what
the rule saw, never a second implementation of it.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import numpy as np

from quality.c4 import C4Config, drop_line
from quality.document import DocumentView
from quality.gopher import STOP_WORDS, is_alphabetic
from quality.repetition import duplicate_ngram_mask, repeated_ngram_mask, top_ngram_mask
from quality.text import strip_punctuation

_TOKEN = re.compile(r"\S+")
_DUP_NGRAM = re.compile(r"gopher_dup_(\d+)gram_char_frac")
_TOP_NGRAM = re.compile(r"gopher_top_(\d+)gram_char_frac")


@dataclass(frozen=True)
class Span:
    """Characters [start, end) of the text, with why they are marked: repeat, removed, fail or found."""

    start: int
    end: int
    kind: str


def token_spans(text: str) -> list[tuple[int, int]]:
    """Character offsets of the whitespace tokens (`quality.text.split_tokens`), in order."""
    return [m.span() for m in _TOKEN.finditer(text)]


def mask_spans(text: str, mask: np.ndarray, kind: str) -> list[Span]:
    """Runs of marked tokens as character spans; a run covers the whitespace between its tokens."""
    offsets = token_spans(text)
    spans: list[Span] = []
    run_start = None
    for i, marked in enumerate(list(mask) + [False]):
        if marked and run_start is None:
            run_start = i
        elif not marked and run_start is not None:
            spans.append(Span(offsets[run_start][0], offsets[i - 1][1], kind))
            run_start = None
    return spans


def _line_spans(text: str, marked: set[int], kind: str) -> list[Span]:
    """Spans of the lines whose index (among all lines) is in `marked`."""
    spans, pos = [], 0
    for i, line in enumerate(text.split("\n")):
        if i in marked and line.strip():
            spans.append(Span(pos, pos + len(line), kind))
        pos += len(line) + 1
    return spans


def duplicate_line_spans(text: str, copies_only: bool) -> list[Span]:
    """Lines seen more than once: every occurrence (Gopher) or only the copies after the first (FineWeb)."""
    lines = text.split("\n")
    counts = Counter(line for line in lines if line.strip())
    seen: set[str] = set()
    marked = set()
    for i, line in enumerate(lines):
        if counts.get(line, 0) > 1 and not (copies_only and line not in seen):
            marked.add(i)
        seen.add(line)
    return _line_spans(text, marked, "repeat")


def c4_removed_spans(text: str, cfg: C4Config) -> list[Span]:
    """Lines C4 line cleaning would remove from this text (struck through in the report)."""
    lines = text.split("\n")
    return _line_spans(text, {i for i, line in enumerate(lines) if line.strip() and drop_line(line, cfg)}, "removed")


def word_rule_spans(text: str, reason: str) -> list[Span]:
    """Tokens behind a word rule: stop words found (stop-word rule), words without a letter (alphabetic rule)."""
    if reason == "gopher_stop_words":
        test, kind = (lambda w: w.lower() in STOP_WORDS), "found"
    else:
        test, kind = (lambda w: not is_alphabetic(w)), "fail"
    mask = np.array([bool(w) and test(w) for w in map(strip_punctuation, text.split())], dtype=bool)
    return mask_spans(text, mask, kind)


def evidence(text: str, reason: str, repeated_ngram_n: int, c4: C4Config) -> list[Span]:
    """Marked spans explaining `reason` for this text, plus C4-removable lines; sorted, never overlapping."""
    doc = DocumentView(text)
    ids, lengths = doc.token_ids
    if reason == "repeated_ngram_frac":
        spans = mask_spans(text, repeated_ngram_mask(ids, repeated_ngram_n), "repeat")
    elif m := _DUP_NGRAM.fullmatch(reason):
        spans = mask_spans(text, duplicate_ngram_mask(ids, int(m.group(1))), "repeat")
    elif m := _TOP_NGRAM.fullmatch(reason):
        spans = mask_spans(text, top_ngram_mask(ids, lengths, int(m.group(1))), "repeat")
    elif reason.startswith(("gopher_dup_line", "gopher_dup_para", "fineweb_dup_line")):
        spans = duplicate_line_spans(text, copies_only=reason.startswith("fineweb"))
    elif reason in ("gopher_stop_words", "gopher_alpha_word_frac"):
        spans = word_rule_spans(text, reason)
    else:
        spans = []
    removed = c4_removed_spans(text, c4)
    covered = [s for s in spans if not any(r.start < s.end and s.start < r.end for r in removed)]
    return sorted(covered + removed, key=lambda s: s.start)


def missing_stop_words(text: str) -> list[str]:
    """Gopher's stop words absent from the text: why the stop-word rule failed."""
    present = {w.lower() for w in DocumentView(text).words}
    return sorted(STOP_WORDS - present)
