"""Where a preset's scorer spends its time, step by step, and what curate's `early_exit` saves it.

    python benchmarks/early_exit.py --docs 2000 [--preset fineweb]

Clover stores every score so that thresholds can change without re-scoring; with `early_exit: true` a
document stops being scored at the first step that settles its rejection (`quality.signals.settles`), as
datatrove stops it at its first failing filter in FineWeb's pipeline. On the real corpus of
benchmarks/curate.py this times the scorer's own steps (`DocumentScorer.steps`) one at a time, under the
preset's default thresholds: the share of the time each step takes, the documents each step stops, and
the scorer's time with every score against its time with the early exit. benchmarks/curate.py measures
the whole stage with it (`--presets fineweb+early_exit`).
"""

from __future__ import annotations

import os
import sys

sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import argparse
import time

from benchmarks.curate import real_corpus
from benchmarks.tables import table
from quality.presets import PRESETS
from quality.signals import SCORE_RANGES, DocumentScorer, SignalConfig, preset_thresholds, settles
from quality.text import normalize_text


def timed_steps(scorer: DocumentScorer, text: str) -> list[tuple[str, float, dict[str, float]]]:
    """(step, seconds, its scores) for each of the scorer's steps on one text."""
    timed = []
    start = time.perf_counter()
    for name, scores, _ in scorer.steps(text):
        timed.append((name, time.perf_counter() - start, scores))
        start = time.perf_counter()
    return timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--preset", choices=PRESETS, default="fineweb")
    parser.add_argument("--sdists", default="/tmp/agreement-sdists", help="cache of real_text.DOC_SDISTS")
    parser.add_argument("--releases", default="/tmp/clover-real-corpus", help="cache of real_text.PACKAGE_RELEASES")
    args = parser.parse_args()
    scorer = DocumentScorer(SignalConfig(preset=args.preset))
    settled = settles(preset_thresholds(args.preset), SCORE_RANGES)
    texts = [normalize_text(text) for _, text in real_corpus(args.docs, args.sdists, args.releases)]
    for text in texts[:200]:  # a worker's caches are warm after its first documents
        timed_steps(scorer, text)
    names = [name for name, *_ in timed_steps(scorer, texts[0])]
    spent, stopped = [0.0] * len(names), [0] * len(names)
    every = early = 0.0
    for text in texts:
        timed, scores = timed_steps(scorer, text), {}
        stop = len(timed) - 1
        for i, (_, _, step_scores) in enumerate(timed):
            scores.update(step_scores)
            if settled(scores):
                stop = i
                break
        stopped[stop] += 1
        every += sum(seconds for _, seconds, _ in timed)
        early += sum(seconds for _, seconds, _ in timed[: stop + 1])
        for i, (_, seconds, _) in enumerate(timed):
            spent[i] += seconds
    rows = [(name, f"{stopped[i]:,}", f"{spent[i] / sum(spent):.0%}") for i, name in enumerate(names)]
    print(f"{len(texts):,} real documents, {args.preset} preset and its default thresholds\n")
    print(table(("step (check order)", "documents it stops (the last: and those kept)", "share of the time of every step"),
                rows))
    print(f"\nevery score: {every:.2f} s; with the early exit: {early:.2f} s; saving {1 - early / every:.0%}")


if __name__ == "__main__":
    main()
