"""A document's shared views (tokens, lines, word ids), computed once and reused by every signal."""

from __future__ import annotations

from functools import cached_property

import numpy as np

from quality.repetition import word_ids
from quality.text import nonblank_lines, paragraphs, split_tokens, strip_punctuation


class DocumentView:
    """Lazily derived views of one normalized text."""

    def __init__(self, text: str) -> None:
        self.text = text

    @cached_property
    def tokens(self) -> list[str]:
        return split_tokens(self.text)

    @cached_property
    def words(self) -> list[str]:
        """Tokens without surrounding punctuation; punctuation-only tokens are not words."""
        return [w for w in map(strip_punctuation, self.tokens) if w]

    @cached_property
    def lines(self) -> list[str]:
        return nonblank_lines(self.text)

    @cached_property
    def paragraphs(self) -> list[str]:
        return paragraphs(self.text)

    @cached_property
    def token_ids(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, character lengths) of the whitespace tokens."""
        return word_ids(self.tokens)


def duplicate_fractions(elements: list[str], count_first: bool) -> tuple[float, float]:
    """(fraction of elements, fraction of their characters) that are duplicated.

    With count_first, every occurrence of an element seen more than once counts (Gopher's reading);
    without, only the copies after the first (FineWeb's reading).
    """
    if not elements:
        return 0.0, 0.0
    counts: dict[str, int] = {}
    for element in elements:
        counts[element] = counts.get(element, 0) + 1
    total_chars = sum(len(e) for e in elements)
    dup_elements = dup_chars = 0
    for element, count in counts.items():
        if count > 1:
            copies = count if count_first else count - 1
            dup_elements += copies
            dup_chars += copies * len(element)
    return dup_elements / len(elements), (dup_chars / total_chars if total_chars else 0.0)
