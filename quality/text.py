"""Text normalization and the word/line views every quality signal shares."""

from __future__ import annotations

import re
import unicodedata

# C0/C1 control characters except tab and newline; carriage returns are unified before this runs.
_CONTROL_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f]")
_LINE_BREAKS = re.compile("\r\n|[\r\x85\u2028\u2029]")
_TRAILING_SPACE = re.compile(r"[^\S\n]+(?=\n|\Z)")
_PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~…«»“”‘’„‚‹›—–·•¡¿"


def normalize_text(text: str) -> str:
    """NFC, unified line endings, control characters removed, trailing whitespace trimmed.

    Leading and trailing blank lines are dropped too, so an all-whitespace document becomes empty.
    """
    text = unicodedata.normalize("NFC", text)
    text = _LINE_BREAKS.sub("\n", text)
    text = _CONTROL_CHARS.sub("", text)
    text = _TRAILING_SPACE.sub("", text)
    return text.strip("\n")


def split_tokens(text: str) -> list[str]:
    """Whitespace-separated tokens: the unit of every word n-gram signal."""
    return text.split()


def strip_punctuation(token: str) -> str:
    """A token without surrounding punctuation; empty when the token is punctuation only."""
    return token.strip(_PUNCTUATION)


def nonblank_lines(text: str) -> list[str]:
    """Lines with content; blank lines separate paragraphs but are not lines of their own."""
    return [line for line in text.split("\n") if line.strip()]


def paragraphs(text: str) -> list[str]:
    """Blocks separated by one or more blank lines."""
    return [p for p in re.split(r"\n\s*\n", text) if p.strip()]
