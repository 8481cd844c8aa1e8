"""Evidence for a rejection: which parts of a stored text made a score fail, found by the scoring code itself.

`clover inspect` highlights these spans. Each finder calls the same function the score came from, under the
run's signal preset (`quality.repetition` masks and `quality.gopher` for clover; `quality.presets` for
fineweb; `quality.redpajama` for redpajama; the preset's C4 line pass, `line_pass`, for struck lines), so a
highlight is exactly what the rule saw, never a second implementation of it. A reason without a finder (`has_highlight`) gets no spans,
rather than another definition's.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from quality import presets, redpajama
from quality.c4 import c4_clean
from quality.document import DocumentView
from quality.gopher import STOP_WORDS, is_alphabetic
from quality.repetition import duplicate_ngram_mask, repeated_ngram_mask, top_ngram_mask, word_ids
from quality.signals import SignalConfig, preset_min_words
from quality.text import strip_punctuation

_TOKEN = re.compile(r"\S+")
_DUP_NGRAM = re.compile(r"gopher_dup_(\d+)gram_char_frac")
_TOP_NGRAM = re.compile(r"gopher_top_(\d+)gram_char_frac")
_CLOVER_ON_KEPT_TEXT = ("repeated_ngram_frac", "fineweb_dup_line_char_frac")  # every preset: Clover's definition
_WORD_RULES = ("gopher_stop_words", "gopher_alpha_word_frac")
_LINE_RULES = ("gopher_dup_line_frac", "gopher_dup_line_char_frac", "gopher_dup_para_frac", "gopher_dup_para_char_frac")


@dataclass(frozen=True)
class Span:
    """Characters [start, end) of the text, with why they are marked: repeat, removed, fail or found."""

    start: int
    end: int
    kind: str


def token_spans(text: str) -> list[tuple[int, int]]:
    """Character offsets of the whitespace tokens (`quality.text.split_tokens`), in order."""
    return [m.span() for m in _TOKEN.finditer(text)]


def mask_spans(text: str, mask: np.ndarray, kind: str, offsets: list[tuple[int, int]] | None = None) -> list[Span]:
    """Runs of marked words as character spans; a run covers what lies between its words. `offsets` are
    the words' (start, end), the whitespace tokens unless given."""
    offsets = token_spans(text) if offsets is None else offsets
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


def word_rule_spans(text: str, reason: str) -> list[Span]:
    """Tokens behind a word rule: stop words found (stop-word rule), words without a letter (alphabetic rule)."""
    if reason == "gopher_stop_words":
        test, kind = (lambda w: w.lower() in STOP_WORDS), "found"
    else:
        test, kind = (lambda w: not is_alphabetic(w)), "fail"
    mask = np.array([bool(w) and test(w) for w in map(strip_punctuation, text.split())], dtype=bool)
    return mask_spans(text, mask, kind)


def _clover_spans(text: str, reason: str, repeated_ngram_n: int) -> list[Span]:
    """Clover's definitions (`quality.repetition`, `quality.gopher`) on whitespace tokens."""
    ids, lengths = DocumentView(text).token_ids
    if reason == "repeated_ngram_frac":
        return mask_spans(text, repeated_ngram_mask(ids, repeated_ngram_n), "repeat")
    if m := _DUP_NGRAM.fullmatch(reason):
        return mask_spans(text, duplicate_ngram_mask(ids, int(m.group(1))), "repeat")
    if m := _TOP_NGRAM.fullmatch(reason):
        return mask_spans(text, top_ngram_mask(ids, lengths, int(m.group(1))), "repeat")
    if reason in _LINE_RULES or reason == "fineweb_dup_line_char_frac":
        return duplicate_line_spans(text, copies_only=reason.startswith("fineweb"))
    if reason in _WORD_RULES:
        return word_rule_spans(text, reason)
    return []


# ---- fineweb: datatrove's definitions on spaCy words (`quality.presets`)

def fineweb_word_spans(text: str) -> tuple[list[str], list[tuple[int, int]]]:
    """`presets.fineweb_words` and where each stands: tokens are contiguous substrings, in order, so a
    moving find places them."""
    words = presets.fineweb_words(text)
    offsets, pos = [], 0
    for word in words:
        start = text.index(word, pos)
        pos = start + len(word)
        offsets.append((start, pos))
    return words, offsets


def _starts_mask(starts: np.ndarray | list[int], n: int, length: int) -> np.ndarray:
    """The words covered by the n-grams starting at `starts`."""
    mask = np.zeros(length, dtype=bool)
    for start in starts:
        mask[start:start + n] = True
    return mask


def _fineweb_spans(text: str, reason: str, repeated_ngram_n: int) -> list[Span]:
    """datatrove's GopherRepetitionFilter and GopherQualityFilter as `quality.presets` computes them."""
    if reason in _CLOVER_ON_KEPT_TEXT:
        return _clover_spans(text, reason, repeated_ngram_n)
    if reason in _LINE_RULES:
        pieces = presets.later_copy_spans(text, paragraphs="_para_" in reason)
        return [Span(start, end, "repeat") for start, end in pieces]
    words, offsets = fineweb_word_spans(text)
    if m := _DUP_NGRAM.fullmatch(reason):
        n = int(m.group(1))
        return mask_spans(text, _starts_mask(presets.fineweb_duplicate_ngram_starts(words, n), n, len(words)),
                          "repeat", offsets)
    if m := _TOP_NGRAM.fullmatch(reason):
        n = int(m.group(1))
        return mask_spans(text, _starts_mask(presets.fineweb_top_ngram_starts(words, n), n, len(words)),
                          "repeat", offsets)
    if reason == "gopher_stop_words":
        return mask_spans(text, np.array([w in presets.STOP_WORDS for w in words], dtype=bool), "found", offsets)
    if reason == "gopher_alpha_word_frac":
        return mask_spans(text, np.array([not presets.has_letter(w) for w in words], dtype=bool), "fail", offsets)
    return []


# ---- redpajama: RPv2's word views (`quality.redpajama`)

def _redpajama_spans(text: str, reason: str, repeated_ngram_n: int) -> list[Span]:
    """RPv2's repetition and natural-language signals on its normalized and raw words; the columns RPv2 has
    no signal for take Clover's definitions on the text kept, as `DocumentScorer` scores them."""
    if reason in _CLOVER_ON_KEPT_TEXT or reason in _LINE_RULES:
        return _clover_spans(text, reason, repeated_ngram_n)
    words = redpajama.RedPajamaDocument(text).words
    if m := _DUP_NGRAM.fullmatch(reason):
        mask = duplicate_ngram_mask(word_ids(words)[0], int(m.group(1)))
        return mask_spans(text, mask, "repeat", redpajama.word_spans(text))
    if m := _TOP_NGRAM.fullmatch(reason):
        n = int(m.group(1))
        gram = redpajama.top_ngram(words, n)
        starts = [i for i in range(len(words) - n + 1) if gram and tuple(words[i:i + n]) == gram]
        return mask_spans(text, _starts_mask(starts, n, len(words)), "repeat", redpajama.word_spans(text))
    if reason in _WORD_RULES:
        offsets = redpajama.raw_word_spans(text)
        raw = [text[start:end] for start, end in offsets]
        if reason == "gopher_stop_words":
            return mask_spans(text, np.array([w in redpajama.STOP_WORDS_EN for w in raw], dtype=bool), "found", offsets)
        return mask_spans(text, np.array([not redpajama.has_ascii_letter(w) for w in raw], dtype=bool), "fail", offsets)
    return []


_FINDERS: dict[str, Callable[[str, str, int], list[Span]]] = {
    "clover": _clover_spans, "fineweb": _fineweb_spans, "redpajama": _redpajama_spans}


def has_highlight(reason: str) -> bool:
    """Whether `evidence` can mark spans for `reason`: every preset has a finder for the same reasons (the
    others are counts over the whole document, or RPv2 and datatrove values no span stands for)."""
    return bool(reason in _LINE_RULES or reason in _CLOVER_ON_KEPT_TEXT or reason in _WORD_RULES
                or _DUP_NGRAM.fullmatch(reason) or _TOP_NGRAM.fullmatch(reason))


def scored_before_cleaning(reason: str, preset: str) -> bool:
    """Whether `preset` scores `reason` on the text as it arrives rather than on the text C4 line cleaning
    kept (the stored text): fineweb's Gopher and C4 columns, redpajama's rps_* columns."""
    if preset == "fineweb":
        return reason.startswith(("gopher_", "c4_")) and reason != "c4_bad_word_count"
    if preset == "redpajama":
        return reason in redpajama.RPS_SIGNALS or reason == "gopher_ellipsis_word_ratio"
    return False


def line_pass(text: str, signals: SignalConfig) -> tuple[str, float]:
    """The preset's C4 line pass, the function curate calls: (the text it keeps, the share of non-blank lines
    it removes) by `quality.c4.c4_clean` (clover), `presets.fineweb_c4` or `redpajama.redpajama_line_pass`."""
    c4 = signals.c4
    if signals.preset == "fineweb":
        kept, scores, _ = presets.fineweb_c4(text, c4.require_terminal_punct, preset_min_words(c4), c4.max_word_length)
        return kept, scores["c4_removed_line_frac"]
    if signals.preset == "redpajama":
        doc = redpajama.RedPajamaDocument(text)
        return redpajama.redpajama_line_pass(doc, c4.require_terminal_punct, preset_min_words(c4))
    return c4_clean(text, c4)


def line_outcomes(text: str, signals: SignalConfig) -> list[bool | None]:
    """Per line of `text`: True when the preset's C4 line pass drops it, False when it keeps it, None when it
    is blank (once citation markers are deleted). Each line goes through `line_pass` alone: citation markers
    and line rules act within a line, so a line is dropped alone exactly when it is dropped from the text."""
    outcomes: list[bool | None] = []
    for line in text.split("\n"):
        cleaned, removed = line_pass(line, signals)
        outcomes.append(True if removed == 1.0 else False if cleaned.strip() else None)
    return outcomes


def removed_line_spans(text: str, outcomes: list[bool | None]) -> list[Span]:
    """The lines `line_outcomes` says the line pass drops, as "removed" spans (struck through in the report)."""
    return _line_spans(text, {i for i, dropped in enumerate(outcomes) if dropped}, "removed")


def evidence(text: str, reason: str, signals: SignalConfig) -> list[Span]:
    """Marked spans explaining `reason` for this text under `signals.preset`, plus the lines its C4 line
    cleaning removes; sorted, never overlapping. Where they meet, what the rule saw wins: the struck line
    for a rule scored on the text cleaning kept, the rule's span for one scored before cleaning."""
    spans = _FINDERS[signals.preset](text, reason, signals.repeated_ngram_n)
    removed = removed_line_spans(text, line_outcomes(text, signals))
    if scored_before_cleaning(reason, signals.preset):
        spans, removed = removed, spans
    covered = [s for s in spans if not any(r.start < s.end and s.start < r.end for r in removed)]
    return sorted(covered + removed, key=lambda s: s.start)


def missing_stop_words(text: str, preset: str = "clover") -> list[str]:
    """Gopher's stop words absent from the text (clover: any case; fineweb: as datatrove, case-sensitively
    among spaCy words): why the stop-word rule failed; none listed for redpajama, whose signal is a fraction."""
    if preset == "redpajama":
        return []
    if preset == "fineweb":
        return sorted(presets.STOP_WORDS - set(presets.fineweb_words(text)))
    present = {w.lower() for w in DocumentView(text).words}
    return sorted(STOP_WORDS - present)
