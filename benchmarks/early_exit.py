"""What an early exit would save the fineweb preset: each document scored in datatrove's filter order,
timed per filter, stopped (on paper) at its first failing filter.

    python benchmarks/early_exit.py --docs 2000

Clover stores every score so that thresholds can change without re-scoring; datatrove, as FineWeb ran
it, stops a document at its first failing filter. This measures the difference on the real corpus of
benchmarks/curate.py. The scorer's own steps (`DocumentScorer.fineweb_filters`) are timed one filter at a
time; a document's cost with an early exit is the time of the filters up to the one whose rule rejects
it, or all of them for a document kept. The line and paragraph rules of Gopher repetition come first,
as in datatrove, since they need no words.
"""

from __future__ import annotations

import os
import sys

sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import argparse
import time

from benchmarks.curate import real_corpus
from benchmarks.tables import table
from quality.signals import (
    SCORE_RANGES,
    DocumentScorer,
    SignalConfig,
    first_failing_rule,
    preset_thresholds,
)
from quality.text import normalize_text


def timed_filters(scorer: DocumentScorer, text: str) -> list[tuple[str, float, dict[str, float], str]]:
    """(filter, seconds, its scores, the text kept after it) for each of the scorer's fineweb filters."""
    timed = []
    start = time.perf_counter()
    for name, scores, kept in scorer.fineweb_filters(text):
        timed.append((name, time.perf_counter() - start, scores, kept))
        start = time.perf_counter()
    return timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--sdists", default="/tmp/agreement-sdists", help="cache of real_text.DOC_SDISTS")
    parser.add_argument("--releases", default="/tmp/clover-real-corpus", help="cache of real_text.PACKAGE_RELEASES")
    args = parser.parse_args()
    scorer, thresholds = DocumentScorer(SignalConfig(preset="fineweb")), preset_thresholds("fineweb")
    texts = [normalize_text(text) for _, text in real_corpus(args.docs, args.sdists, args.releases)]
    for text in texts[:200]:  # a worker's caches are warm after its first documents
        timed_filters(scorer, text)
    names = [name for name, *_ in timed_filters(scorer, texts[0])]
    spent, stopped = [0.0] * len(names), [0] * len(names)
    every = early = 0.0
    for text in texts:
        timed = timed_filters(scorer, text)
        scores = {name: value for _, _, filter_scores, _ in timed for name, value in filter_scores.items()}
        in_rule_order = {name: scores[name] for name in SCORE_RANGES}
        reason = first_failing_rule(in_rule_order, thresholds) if timed[-1][3] else None
        stop = next((i for i, (_, _, filter_scores, _) in enumerate(timed) if reason in filter_scores), len(timed) - 1)
        stopped[stop] += 1
        every += sum(seconds for _, seconds, _, _ in timed)
        early += sum(seconds for _, seconds, _, _ in timed[: stop + 1])
        for i, (_, seconds, _, _) in enumerate(timed):
            spent[i] += seconds
    rows = [(name, f"{stopped[i]:,}", f"{spent[i] / sum(spent):.0%}") for i, name in enumerate(names)]
    print(f"{len(texts):,} real documents, fineweb preset and thresholds\n")
    print(table(("filter (datatrove's order)", "documents it stops", "share of the time of every filter"), rows))
    print(f"\nevery score: {every:.2f} s; with an early exit: {early:.2f} s; saving {1 - early / every:.0%}")


if __name__ == "__main__":
    main()
