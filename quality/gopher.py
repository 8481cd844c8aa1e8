"""Gopher quality and repetition signals (Rae et al. 2021, Appendix A; thresholds in Table A1)."""

from __future__ import annotations

import re

from quality.document import DocumentView, duplicate_fractions
from quality.repetition import duplicate_ngram_weight_fraction, top_ngram_weight_fraction
from quality.text import ratio

STOP_WORDS = frozenset({"the", "be", "to", "of", "and", "that", "have", "with"})
BULLETS = ("•", "‣", "◦", "⁃", "∙", "●", "▪", "-", "*", "–", "—")
ELLIPSES = ("...", "…")
TOP_NGRAMS = (2, 3, 4)
DUPLICATE_NGRAMS = (5, 6, 7, 8, 9, 10)
_HAS_LETTER = re.compile(r"[^\W\d_]")


def is_alphabetic(word: str) -> bool:
    """Gopher's alphabetic-word test: the word holds at least one letter."""
    return _HAS_LETTER.search(word) is not None


def gopher_quality(doc: DocumentView) -> dict[str, float]:
    words, lines, text = doc.words, doc.lines, doc.text
    n_words = len(words)
    return {
        "gopher_word_count": float(n_words),
        "gopher_mean_word_length": ratio(sum(map(len, words)), n_words),
        "gopher_hash_word_ratio": ratio(text.count("#"), n_words),
        "gopher_ellipsis_word_ratio": ratio(text.count("...") + text.count("…"), n_words),
        "gopher_bullet_line_frac": ratio(sum(line.lstrip().startswith(BULLETS) for line in lines), len(lines)),
        "gopher_ellipsis_line_frac": ratio(sum(line.endswith(ELLIPSES) for line in lines), len(lines)),
        "gopher_alpha_word_frac": ratio(sum(1 for w in words if is_alphabetic(w)), n_words),
        "gopher_stop_words": float(len(STOP_WORDS.intersection(w.lower() for w in words))),
    }


def line_paragraph_repetition(doc: DocumentView) -> dict[str, float]:
    """Gopher's duplicate line and paragraph fractions, every copy counted (also the redpajama preset's,
    which has no such signal of RedPajama-V2 to use)."""
    line_frac, line_char_frac = duplicate_fractions(doc.lines, count_first=True)
    para_frac, para_char_frac = duplicate_fractions(doc.paragraphs, count_first=True)
    return {
        "gopher_dup_line_frac": line_frac,
        "gopher_dup_para_frac": para_frac,
        "gopher_dup_line_char_frac": line_char_frac,
        "gopher_dup_para_char_frac": para_char_frac,
    }


def gopher_repetition(doc: DocumentView) -> dict[str, float]:
    scores = line_paragraph_repetition(doc)
    ids, lengths = doc.token_ids
    for n in TOP_NGRAMS:
        scores[f"gopher_top_{n}gram_char_frac"] = top_ngram_weight_fraction(ids, lengths, n)
    for n in DUPLICATE_NGRAMS:
        scores[f"gopher_dup_{n}gram_char_frac"] = duplicate_ngram_weight_fraction(ids, lengths, n)
    return scores
