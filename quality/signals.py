"""Every per-document quality score in one place: names, valid ranges, paper thresholds, and the scorer."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from quality.c4 import C4Config, c4_clean, c4_document, load_bad_words
from quality.document import DocumentView
from quality.fineweb import fineweb
from quality.gopher import gopher_quality, gopher_repetition, line_paragraph_repetition
from quality.presets import (
    PRESETS,
    fineweb_c4,
    fineweb_gopher_quality,
    fineweb_line_paragraph_repetition,
    fineweb_ngram_repetition,
    fineweb_quality,
    fineweb_words,
)
from quality.redpajama import RedPajamaDocument, redpajama_line_pass, redpajama_scores
from quality.repetition import repeated_ngram_fraction
from quality.text import spacy_words_and_sentences
from schemas.config import DEFAULTED, ConfigError

INF = math.inf
FRACTION = (0.0, 1.0)
NONNEGATIVE = (0.0, INF)

# name -> valid range. Order is the order rules are checked in, so it decides a rejection's reason.
SCORE_RANGES: dict[str, tuple[float, float]] = {
    "gopher_dup_line_frac": FRACTION,
    "gopher_dup_para_frac": FRACTION,
    "gopher_dup_line_char_frac": FRACTION,
    "gopher_dup_para_char_frac": FRACTION,
    # the fineweb and redpajama definitions exceed 1 where the top n-gram overlaps itself ("a a a a")
    **{f"gopher_top_{n}gram_char_frac": NONNEGATIVE for n in (2, 3, 4)},
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


def fineweb_thresholds() -> dict[str, Bounds]:
    """datatrove's defaults for the filters of FineWeb's pipeline (Gopher's Table A1 values, C4's five
    sentences, FineWeb's 0.12 / 0.67 / 0.01 / 0.3). FineWeb has no bad-word or repeated n-gram rule."""
    thresholds = paper_thresholds()
    for name in ("c4_bad_word_count", "repeated_ngram_frac"):
        del thresholds[name]
    thresholds["fineweb_dup_line_char_frac"] = Bounds(max=0.01)
    return thresholds


def redpajama_thresholds() -> dict[str, Bounds]:
    """The RPv2 dataset card's example Gopher rules on its signals (huggingface.co/datasets/togethercomputer/
    RedPajama-Data-V2, README `gopher_rules_pass`: 50 <= words <= 100,000, 3 <= mean word length <= 10,
    symbol/word ratio <= 0.1, bullet lines / lines <= 0.9, top 2-gram <= 0.2), the rules it elides ("rule 5:
    ...") at Gopher's Table A1 values, and C4's document rules (>= 5 sentences, no lorem ipsum, no curly
    bracket, no bad word). No rule where RPv2 has no signal (duplicate lines and paragraphs, FineWeb's rules,
    the repeated n-gram gate), for the stop-word fraction (no published threshold; Gopher's counts 8 words),
    or for the ellipsis share of the symbol ratio (its rule is the symbol ratio's, on gopher_hash_word_ratio)."""
    thresholds = paper_thresholds()
    for name in ("gopher_dup_line_frac", "gopher_dup_para_frac", "gopher_dup_line_char_frac",
                 "gopher_dup_para_char_frac", "gopher_ellipsis_word_ratio", "gopher_stop_words",
                 "fineweb_line_punct_frac", "fineweb_short_line_frac", "fineweb_dup_line_char_frac",
                 "fineweb_newline_word_ratio", "repeated_ngram_frac"):
        del thresholds[name]
    return thresholds


_PRESET_THRESHOLDS = {"clover": paper_thresholds, "fineweb": fineweb_thresholds, "redpajama": redpajama_thresholds}


def check_preset(preset: str) -> None:
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset 'signals.preset: {preset}' (known: {', '.join(PRESETS)})")


def preset_thresholds(preset: str) -> dict[str, Bounds]:
    """A preset's default thresholds, each marked as a default so that `resolve_thresholds` can tell
    them from bounds a user set."""
    check_preset(preset)
    thresholds = _PRESET_THRESHOLDS[preset]()
    for bounds in thresholds.values():
        bounds._preset_default = True
    return thresholds


def resolve_thresholds(thresholds: dict[str, Bounds], preset: str) -> dict[str, Bounds]:
    """The thresholds a config means under `preset`, given the dict the config loader built by merging
    the user's entries into the clover defaults:

    - an entry the user did not touch (still a marked default) becomes the preset's entry, or goes
      when the preset has no such rule;
    - an entry the user set keeps the sides the user set, a value equal to clover's included; a side
      the user left takes the preset's, or none where the preset has no such rule;
    - an entry the user removed (`null`) stays removed.
    """
    target = preset_thresholds(preset)
    resolved: dict[str, Bounds] = {}
    for name, bounds in thresholds.items():
        if getattr(bounds, "_preset_default", False):
            if name in target:
                resolved[name] = target[name]
            continue
        left, preset_bounds = getattr(bounds, DEFAULTED, frozenset()), target.get(name, Bounds())
        resolved[name] = Bounds(min=preset_bounds.min if "min" in left else bounds.min,
                                max=preset_bounds.max if "max" in left else bounds.max)
    return resolved


@dataclass
class SignalConfig:
    """How the scores are computed (not whether a document is kept: that is the thresholds)."""

    preset: str = field(default="clover", metadata={
        "help": "definitions and default thresholds: clover (Clover's reading of the papers), fineweb "
                "(datatrove's, as FineWeb ran them), redpajama (RedPajama-V2's rps_* signals, its README's "
                "Gopher rules and C4's); see docs/quality.md"})
    c4: C4Config = field(default_factory=C4Config)
    repeated_ngram_n: int = field(default=10, metadata={"help": "n of the repeated n-gram fraction over words"})

    def __post_init__(self) -> None:
        check_preset(self.preset)


class DocumentScorer:
    """Turns a normalized text into (text to keep, scores). Built once per worker."""

    def __init__(self, cfg: SignalConfig) -> None:
        check_preset(cfg.preset)
        self.cfg = cfg
        self.bad_words = load_bad_words(cfg.c4.bad_words_file)

    def __call__(self, text: str, settled: Callable[[dict[str, float]], bool] | None = None
                 ) -> tuple[str, dict[str, float]]:
        """(text kept, scores in check order). With `settled` (an early exit, see `settles`), scoring stops
        after the first step whose scores settle the document's rejection: the scores so far, and the text
        as that step left it."""
        scores: dict[str, float] = {}
        kept = text
        for _, step_scores, step_kept in self.steps(text):
            scores.update(step_scores)
            kept = step_kept
            if settled is not None and settled(scores):
                break
        return kept, {name: scores[name] for name in SCORE_RANGES if name in scores}

    def steps(self, text: str) -> Iterator[tuple[str, dict[str, float], str]]:
        """The preset's scores one step at a time, in check order: (step, its scores, the text kept after it)."""
        if self.cfg.preset == "fineweb":
            return self._fineweb(text)
        if self.cfg.preset == "redpajama":
            return self._redpajama(text)
        return self._clover(text)

    def _clover(self, text: str) -> Iterator[tuple[str, dict[str, float], str]]:
        """C4's line pass first (its fraction stored at once: a row holds it whenever the pass ran), then every
        rule on the text it keeps (DocumentView computes a view once, on first use, so a step computes only the
        views it reads)."""
        cleaned, removed_frac = c4_clean(text, self.cfg.c4)
        if self.cfg.c4.apply_line_cleaning:
            text = cleaned
        doc = DocumentView(text)
        yield "c4 line pass", {"c4_removed_line_frac": removed_frac}, text
        yield "gopher repetition", gopher_repetition(doc), text
        yield "gopher quality", gopher_quality(doc), text
        yield "c4", c4_document(doc, removed_frac, self.bad_words), text
        yield "fineweb quality", fineweb(doc), text
        yield "repeated n-grams", {
            "repeated_ngram_frac": repeated_ngram_fraction(doc.token_ids[0], self.cfg.repeated_ngram_n)}, text

    def _fineweb(self, text: str) -> Iterator[tuple[str, dict[str, float], str]]:
        """The fineweb preset's scores one datatrove filter at a time, in its pipeline's order: (filter,
        its scores, the text kept after it). Gopher on the text as it arrives (the line and paragraph
        rules first: they need no words), C4's line pass, FineWeb on what C4 kept (on the text as it
        arrives when line cleaning is off), then the columns no fineweb rule reads."""
        c4 = self.cfg.c4
        views: dict[str, tuple[list[str], int]] = {}

        def line_view(line: str) -> tuple[list[str], int]:
            view = views.get(line)
            if view is None:
                view = views[line] = spacy_words_and_sentences(line)
            return view

        yield "gopher repetition: lines, paragraphs", fineweb_line_paragraph_repetition(text), text
        words = fineweb_words(text, line_view)
        yield "gopher repetition: n-grams", fineweb_ngram_repetition(text, words), text
        yield "gopher quality", fineweb_gopher_quality(text, words), text
        cleaned, c4_scores, cleaned_words = fineweb_c4(text, c4.require_terminal_punct, preset_min_words(c4),
                                                       c4.max_word_length, line_view)
        kept, kept_words = (cleaned, cleaned_words) if c4.apply_line_cleaning else (text, words)
        yield "c4", c4_scores, kept
        yield "fineweb quality", fineweb_quality(kept, kept_words), kept
        doc = DocumentView(kept)
        yield "no fineweb rule", {
            "c4_bad_word_count": c4_document(doc, 0.0, self.bad_words)["c4_bad_word_count"],
            "repeated_ngram_frac": repeated_ngram_fraction(doc.token_ids[0], self.cfg.repeated_ngram_n),
        }, kept

    def _redpajama(self, text: str) -> Iterator[tuple[str, dict[str, float], str]]:
        """RPv2 computes every signal on the whole document: the rps_* columns score the text as it
        arrives, C4's line rules on its line signals pick the text kept, and the columns RPv2 has no signal
        for take Clover's definitions on the text kept (no rule in this preset's thresholds)."""
        c4 = self.cfg.c4
        rp = RedPajamaDocument(text)
        cleaned, removed_frac = redpajama_line_pass(rp, c4.require_terminal_punct, preset_min_words(c4))
        kept = cleaned if c4.apply_line_cleaning else text
        doc = DocumentView(kept)
        scores = {
            **line_paragraph_repetition(doc),
            **fineweb(doc),
            "c4_removed_line_frac": removed_frac,
            "repeated_ngram_frac": repeated_ngram_fraction(doc.token_ids[0], self.cfg.repeated_ngram_n),
            **redpajama_scores(rp, self.bad_words),  # fineweb_line_punct_frac included: RPv2's line flag
        }
        yield "redpajama", scores, kept


def preset_min_words(c4: C4Config) -> int:
    """C4's minimum words per line under the fineweb and redpajama presets: the config's, else C4's 3."""
    return 3 if c4.min_words_per_line is None else c4.min_words_per_line


def first_failing_rule(scores: dict[str, float], thresholds: dict[str, Bounds]) -> str | None:
    """The name of the first score (in score order) outside its bounds, or None to keep."""
    for name, value in scores.items():
        bounds = thresholds.get(name)
        if bounds is not None and not bounds.holds(value):
            return name
    return None


def settles(thresholds: dict[str, Bounds], order: Iterable[str]) -> Callable[[dict[str, float]], bool]:
    """An early exit's test: whether the scores so far settle a document's rejection, that is the first rule
    in check order that is unscored or failing is failing. Every rule before it passes, so scoring on cannot
    change the reason (`first_failing_rule` of the partial scores names it); a kept document never settles."""
    rules = [(name, thresholds[name]) for name in order if name in thresholds]

    def settled(scores: dict[str, float]) -> bool:
        for name, bounds in rules:
            value = scores.get(name)
            if value is None:
                return False
            if not bounds.holds(value):
                return True
        return False

    return settled
