"""Every per-document quality score in one place: names, valid ranges, paper thresholds, and the scorer."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from quality.c4 import C4Config, c4_clean, c4_document, load_bad_words
from quality.document import DocumentView
from quality.fineweb import fineweb
from quality.gopher import gopher_quality, gopher_repetition
from quality.repetition import repeated_ngram_fraction

INF = math.inf
FRACTION = (0.0, 1.0)
NONNEGATIVE = (0.0, INF)

# name -> valid range. Order is the order rules are checked in, so it decides a rejection's reason.
SCORE_RANGES: dict[str, tuple[float, float]] = {
    "gopher_dup_line_frac": FRACTION,
    "gopher_dup_para_frac": FRACTION,
    "gopher_dup_line_char_frac": FRACTION,
    "gopher_dup_para_char_frac": FRACTION,
    **{f"gopher_top_{n}gram_char_frac": FRACTION for n in (2, 3, 4)},
    **{f"gopher_dup_{n}gram_char_frac": FRACTION for n in range(5, 11)},
    "gopher_word_count": NONNEGATIVE,
    "gopher_mean_word_length": NONNEGATIVE,
    "gopher_hash_word_ratio": NONNEGATIVE,
    "gopher_ellipsis_word_ratio": NONNEGATIVE,
    "gopher_bullet_line_frac": FRACTION,
    "gopher_ellipsis_line_frac": FRACTION,
    "gopher_alpha_word_frac": FRACTION,
    "gopher_stop_words": (0.0, 8.0),
    "c4_removed_line_frac": FRACTION,
    "c4_sentence_count": NONNEGATIVE,
    "c4_lorem_ipsum": FRACTION,
    "c4_curly_bracket": FRACTION,
    "c4_bad_word_count": NONNEGATIVE,
    "fineweb_line_punct_frac": FRACTION,
    "fineweb_short_line_frac": FRACTION,
    "fineweb_dup_line_char_frac": FRACTION,
    "fineweb_newline_word_ratio": NONNEGATIVE,
    "repeated_ngram_frac": FRACTION,
}


@dataclass
class Bounds:
    """Keep a document when min <= score <= max; an absent bound does not constrain."""

    min: float | None = None
    max: float | None = None

    def holds(self, value: float) -> bool:
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)


def paper_thresholds() -> dict[str, Bounds]:
    """Gopher Table A1, C4 Section 2.2, FineWeb Section 3.3, and the write-up's 15% repetition gate."""
    top = {2: 0.20, 3: 0.18, 4: 0.16}
    dup = {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}
    return {
        "gopher_dup_line_frac": Bounds(max=0.30),
        "gopher_dup_para_frac": Bounds(max=0.30),
        "gopher_dup_line_char_frac": Bounds(max=0.20),
        "gopher_dup_para_char_frac": Bounds(max=0.20),
        **{f"gopher_top_{n}gram_char_frac": Bounds(max=v) for n, v in top.items()},
        **{f"gopher_dup_{n}gram_char_frac": Bounds(max=v) for n, v in dup.items()},
        "gopher_word_count": Bounds(min=50, max=100_000),
        "gopher_mean_word_length": Bounds(min=3, max=10),
        "gopher_hash_word_ratio": Bounds(max=0.1),
        "gopher_ellipsis_word_ratio": Bounds(max=0.1),
        "gopher_bullet_line_frac": Bounds(max=0.9),
        "gopher_ellipsis_line_frac": Bounds(max=0.3),
        "gopher_alpha_word_frac": Bounds(min=0.8),
        "gopher_stop_words": Bounds(min=2),
        "c4_sentence_count": Bounds(min=5),
        "c4_lorem_ipsum": Bounds(max=0),
        "c4_curly_bracket": Bounds(max=0),
        "c4_bad_word_count": Bounds(max=0),
        "fineweb_line_punct_frac": Bounds(min=0.12),
        "fineweb_short_line_frac": Bounds(max=0.67),
        "fineweb_dup_line_char_frac": Bounds(max=0.10),
        "fineweb_newline_word_ratio": Bounds(max=0.3),
        "repeated_ngram_frac": Bounds(max=0.15),
    }


@dataclass
class SignalConfig:
    """How the scores are computed (not whether a document is kept: that is the thresholds)."""

    c4: C4Config = field(default_factory=C4Config)
    repeated_ngram_n: int = field(default=10, metadata={"help": "n of the repeated n-gram fraction over words"})


class DocumentScorer:
    """Turns a normalized text into (text to keep, scores). Built once per worker."""

    def __init__(self, cfg: SignalConfig) -> None:
        self.cfg = cfg
        self.bad_words = load_bad_words(cfg.c4.bad_words_file)

    def __call__(self, text: str) -> tuple[str, dict[str, float]]:
        cleaned, removed_frac = c4_clean(text, self.cfg.c4)
        if self.cfg.c4.apply_line_cleaning:
            text = cleaned
        doc = DocumentView(text)
        scores = {
            **gopher_repetition(doc),
            **gopher_quality(doc),
            **c4_document(doc, removed_frac, self.bad_words),
            **fineweb(doc),
            "repeated_ngram_frac": repeated_ngram_fraction(doc.token_ids[0], self.cfg.repeated_ngram_n),
        }
        return text, scores


def first_failing_rule(scores: dict[str, float], thresholds: dict[str, Bounds]) -> str | None:
    """The name of the first score (in score order) outside its bounds, or None to keep."""
    for name, value in scores.items():
        bounds = thresholds.get(name)
        if bounds is not None and not bounds.holds(value):
            return name
    return None
