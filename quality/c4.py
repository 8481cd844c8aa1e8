"""C4 line cleaning and document rules (Raffel et al. 2020, Section 2.2)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from quality.document import DocumentView

POLICY_PHRASES = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")
TERMINAL_PUNCTUATION = (".", "!", "?", '"', "”")
_CITATION = re.compile(r"\[\d+\]|\[edit\]|\[citation needed\]", re.IGNORECASE)
_SENTENCE_END = re.compile(r"[.!?]+[\"'”’)\]]*(?:\s+|$)")
_BLANK_RUNS = re.compile(r"\n{3,}")


@dataclass
class C4Config:
    """C4's line rules. Clover's defaults: no terminal-punctuation or min-words line rule."""

    apply_line_cleaning: bool = field(default=True, metadata={"help": "keep the cleaned text (else only score it)"})
    require_terminal_punct: bool = field(default=False, metadata={"help": "drop lines not ending in . ! ? or a quote (C4 paper: true)"})
    min_words_per_line: int | None = field(default=None, metadata={
        "help": "drop lines with fewer words; unset: the preset's (clover 0, fineweb and redpajama 3; "
                "C4 paper: 3)"})
    max_word_length: int = field(default=1000, metadata={
        "help": "drop lines holding a longer word (not in the redpajama preset: RedPajama-V2 has no such signal)"})
    bad_words_file: str = field(default="", metadata={"help": "optional word list, one per line; matches are counted"})


def drop_line(line: str, cfg: C4Config) -> bool:
    """Whether C4 line cleaning removes this line (the report strikes such lines through)."""
    lowered = line.lower()
    words = line.split()
    return (
        "javascript" in lowered
        or any(phrase in lowered for phrase in POLICY_PHRASES)
        or any(len(w) > cfg.max_word_length for w in words)
        or (cfg.require_terminal_punct and not line.rstrip().endswith(TERMINAL_PUNCTUATION))
        or len(words) < (cfg.min_words_per_line or 0)
    )


def c4_clean(text: str, cfg: C4Config) -> tuple[str, float]:
    """(cleaned text, fraction of non-blank lines removed). Citation markers are deleted in place."""
    kept: list[str] = []
    nonblank = removed = 0
    for line in _CITATION.sub("", text).split("\n"):
        if not line.strip():
            kept.append("")
            continue
        nonblank += 1
        if drop_line(line, cfg):
            removed += 1
        else:
            kept.append(line.rstrip())
    cleaned = _BLANK_RUNS.sub("\n\n", "\n".join(kept)).strip("\n")
    return cleaned, (removed / nonblank if nonblank else 0.0)


def count_sentences(text: str) -> int:
    """Sentence ends (runs of . ! ? with closing quotes or brackets, then whitespace or the end), plus
    a final unterminated sentence if text follows the last end."""
    ends = list(_SENTENCE_END.finditer(text))
    trailing = text[ends[-1].end():] if ends else text
    return len(ends) + (1 if trailing.strip() else 0)


def load_bad_words(path: str) -> frozenset[str]:
    if not path:
        return frozenset()
    with open(path, encoding="utf-8") as handle:
        return frozenset(line.strip().lower() for line in handle if line.strip())


def c4_document(doc: DocumentView, removed_line_frac: float, bad_words: frozenset[str]) -> dict[str, float]:
    lowered = doc.text.lower()
    return {
        "c4_removed_line_frac": removed_line_frac,
        "c4_sentence_count": float(count_sentences(doc.text)),
        "c4_lorem_ipsum": float("lorem ipsum" in lowered),
        "c4_curly_bracket": float("{" in doc.text),
        "c4_bad_word_count": float(sum(1 for w in doc.words if w.lower() in bad_words)) if bad_words else 0.0,
    }
