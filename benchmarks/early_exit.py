"""What an early exit would save the fineweb preset: each document scored in datatrove's filter order,
timed per filter, stopped (on paper) at its first failing filter.

    python benchmarks/early_exit.py --docs 2000

Clover stores every score so that thresholds can change without re-scoring; datatrove, as FineWeb ran
it, stops a document at its first failing filter. This measures the difference on the real corpus of
benchmarks/curate.py: the scorer's steps (`quality.signals.DocumentScorer`, fineweb preset) run one
filter at a time, each timed, and the early exit's cost of a document is the time of the filters up to
the one that rejects it. The line and paragraph rules of Gopher repetition come first, as in datatrove,
since they need no words. Every document's scores are checked against the scorer's own.
"""

from __future__ import annotations

import os
import sys

sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import argparse
import time

from benchmarks.curate import real_corpus
from benchmarks.tables import table
from quality.c4 import c4_document, load_bad_words
from quality.document import DocumentView
from quality.presets import fineweb_c4, fineweb_gopher_quality, fineweb_gopher_repetition, fineweb_quality
from quality.repetition import repeated_ngram_fraction
from quality.signals import (
    DocumentScorer,
    SignalConfig,
    first_failing_rule,
    preset_min_words,
    preset_thresholds,
)
from quality.text import normalize_text, spacy_words_and_sentences

FILTERS = ("gopher repetition: lines, paragraphs", "gopher repetition: n-grams", "gopher quality", "c4",
           "fineweb quality", "kept (+ the columns no fineweb rule reads)")


def filter_times(text: str, cfg: SignalConfig, bad_words: frozenset[str]) -> tuple[list[float], dict[str, float]]:
    """Seconds of each of FILTERS on one document, and the scores they make."""
    c4 = cfg.c4
    views: dict[str, tuple[list[str], int]] = {}

    def line_view(line: str) -> tuple[list[str], int]:
        if line not in views:
            views[line] = spacy_words_and_sentences(line)
        return views[line]

    marks = [time.perf_counter()]
    fineweb_gopher_repetition(text, [])
    marks.append(time.perf_counter())
    words = [word for line in text.splitlines() for word in line_view(line.strip())[0]]
    scores = fineweb_gopher_repetition(text, words)
    marks.append(time.perf_counter())
    scores |= fineweb_gopher_quality(text, words)
    marks.append(time.perf_counter())
    cleaned, c4_scores, cleaned_words = fineweb_c4(text, c4.require_terminal_punct, preset_min_words(c4),
                                                   c4.max_word_length, line_view)
    scores |= c4_scores
    marks.append(time.perf_counter())
    scores |= fineweb_quality(cleaned, cleaned_words)
    marks.append(time.perf_counter())
    doc = DocumentView(cleaned)
    scores["c4_bad_word_count"] = c4_document(doc, 0.0, bad_words)["c4_bad_word_count"]
    scores["repeated_ngram_frac"] = repeated_ngram_fraction(doc.token_ids[0], cfg.repeated_ngram_n)
    marks.append(time.perf_counter())
    return [b - a for a, b in zip(marks, marks[1:])], scores


def stopping_filter(reason: str | None) -> int:
    """The index in FILTERS of the filter whose rule `reason` is (the last entry: kept)."""
    if reason is None:
        return len(FILTERS) - 1
    if reason in ("gopher_dup_line_frac", "gopher_dup_para_frac", "gopher_dup_line_char_frac", "gopher_dup_para_char_frac"):
        return 0
    if reason.startswith(("gopher_top_", "gopher_dup_")):
        return 1
    return {"gopher": 2, "c4": 3, "fineweb": 4}[reason.split("_")[0]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--sdists", default="/tmp/agreement-sdists", help="cache of real_text.DOC_SDISTS")
    parser.add_argument("--releases", default="/tmp/clover-real-corpus", help="cache of real_text.PACKAGE_RELEASES")
    args = parser.parse_args()
    cfg = SignalConfig(preset="fineweb")
    scorer, thresholds, bad_words = DocumentScorer(cfg), preset_thresholds("fineweb"), load_bad_words(cfg.c4.bad_words_file)
    texts = [normalize_text(text) for _, text in real_corpus(args.docs, args.sdists, args.releases)]
    for text in texts[:200]:  # a worker's caches are warm after its first documents
        filter_times(text, cfg, bad_words)
    spent, stopped = [0.0] * len(FILTERS), [0] * len(FILTERS)
    every = early = 0.0
    for text in texts:
        seconds, scores = filter_times(text, cfg, bad_words)
        kept_text, expected = scorer(text)
        if scores != expected:
            sys.exit("the timed steps no longer score as DocumentScorer does: update filter_times")
        stop = stopping_filter(first_failing_rule(scores, thresholds) if kept_text else None)
        stopped[stop] += 1
        every += sum(seconds[1:])  # the scorer finds the line and paragraph rules with the n-grams
        early += sum(seconds[: stop + 1])
        for i, value in enumerate(seconds):
            spent[i] += value
    rows = [(name, f"{stopped[i]:,}", f"{spent[i] / sum(spent):.0%}") for i, name in enumerate(FILTERS)]
    print(f"{len(texts):,} real documents, fineweb preset and thresholds\n")
    print(table(("filter (datatrove's order)", "documents it stops", "share of the time of every filter"), rows))
    print(f"\nevery score: {every:.2f} s; with an early exit: {early:.2f} s; saving {1 - early / every:.0%}")


if __name__ == "__main__":
    main()
