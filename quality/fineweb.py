"""FineWeb's custom filters (Penedo et al. 2024, Section 3.3) and datatrove's newline ratio."""

from __future__ import annotations

from quality.document import DocumentView, duplicate_fractions

TERMINAL_PUNCTUATION = (".", "!", "?", "…", '"', "'", "”", "’", ")", ":", ";")
SHORT_LINE_CHARS = 30


def fineweb(doc: DocumentView) -> dict[str, float]:
    lines = doc.lines
    n_lines = len(lines)
    _, dup_char_frac = duplicate_fractions(lines, count_first=False)
    n_words = len(doc.tokens)
    return {
        "fineweb_line_punct_frac": sum(line.endswith(TERMINAL_PUNCTUATION) for line in lines) / n_lines if n_lines else 0.0,
        "fineweb_short_line_frac": sum(len(line) <= SHORT_LINE_CHARS for line in lines) / n_lines if n_lines else 0.0,
        "fineweb_dup_line_char_frac": dup_char_frac,
        "fineweb_newline_word_ratio": doc.text.count("\n") / n_words if n_words else 0.0,
    }
