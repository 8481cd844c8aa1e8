"""`clover inspect` on a synthetic 10M-document curate output: is it under a minute on 2 cores?

The output's Parquet (every score column, short texts, reasons from the real thresholds) is written
directly with numpy and pyarrow, no Spark. Then each part of the report is timed.

    python benchmarks/inspect_report.py [--docs 10000000] [--dir /tmp/clover-inspect-bench]
"""

from __future__ import annotations

import os
import sys

sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import argparse
import json
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from jobs import inspection
from quality.signals import SCORE_RANGES, paper_thresholds

PART_ROWS = 1_000_000


def _scores(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Plausible score distributions: fractions mostly small, counts log-normal."""
    out = {}
    for name, (_, hi) in SCORE_RANGES.items():
        if hi <= 1.0:
            out[name] = np.clip(rng.beta(0.6, 12.0, n), 0, 1)
        elif name == "gopher_stop_words":
            out[name] = rng.integers(0, 9, n).astype(np.float64)
        else:
            out[name] = rng.lognormal(np.log(300 if "count" in name else 5), 0.8, n)
    return out


def _reasons(scores: dict[str, np.ndarray]) -> np.ndarray:
    """The first failing rule per row, vectorized in the same check order as curate."""
    reason = np.full(len(next(iter(scores.values()))), None, dtype=object)
    for name, bounds in paper_thresholds().items():
        bad = np.zeros(len(reason), dtype=bool)
        if bounds.min is not None:
            bad |= scores[name] < bounds.min
        if bounds.max is not None:
            bad |= scores[name] > bounds.max
        reason[bad & (reason == None)] = name  # noqa: E711
    return reason


def synthesize(root: str, docs: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    kept_total = 0
    for part in range(0, docs, PART_ROWS):
        n = min(PART_ROWS, docs - part)
        scores = _scores(rng, n)
        reason = _reasons(scores)
        ids = np.char.add("doc-", np.arange(part, part + n).astype(str))
        text = np.char.add("Some text of document ", ids)
        table = pa.table({"id": ids, "text": text, "source": rng.choice(["a.jsonl", "b.jsonl", "c.parquet"], n),
                          "url": pa.nulls(n, pa.string()), "meta": pa.nulls(n, pa.string()), **scores})
        kept = reason == None  # noqa: E711
        kept_total += int(kept.sum())
        for dest, mask in (("documents", kept), ("rejected", ~kept)):
            os.makedirs(f"{root}/{dest}", exist_ok=True)
            rows = table.filter(pa.array(mask))
            if dest == "rejected":
                rows = rows.append_column("reason", pa.array(reason[mask].tolist(), pa.string()))
            pq.write_table(rows, f"{root}/{dest}/part-{part // PART_ROWS:05d}.parquet")
    removed = {}
    for path in sorted(os.listdir(f"{root}/rejected")):
        for r in pq.read_table(f"{root}/rejected/{path}", columns=["reason"])["reason"].to_pylist():
            removed[r] = removed.get(r, 0) + 1
    thresholds = {k: {"min": b.min, "max": b.max} for k, b in paper_thresholds().items()}
    report = {"stage": "curate", "input": docs, "output": kept_total, "removed": removed, "quarantined": {},
              "seconds": 0, "config": {"thresholds": thresholds, "fasttext": [], "signals": {}}}
    with open(f"{root}/report.json", "w") as handle:
        json.dump(report, handle)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=10_000_000)
    parser.add_argument("--dir", default="/tmp/clover-inspect-bench")
    args = parser.parse_args()
    root = f"{args.dir}/curated-{args.docs}"
    if not os.path.exists(f"{root}/report.json"):
        started = time.time()
        synthesize(root, args.docs)
        print(f"synthesized {args.docs:,} documents in {time.time() - started:.1f} s -> {root}")
    view = inspection.CurateView.open(root)
    parts = {
        "funnel": lambda: inspection.funnel_section(view, []),
        "funnel with --set": lambda: inspection.funnel_section(view, ["thresholds.gopher_word_count.min=40"]),
        "removals per reason and source": lambda: inspection.sources_section(view),
        "histograms (31 scores)": lambda: inspection.histograms_section(view),
        "what-if (±10%, ±25%, every bound)": lambda: inspection.whatif_section(view),
        "examples (5 per reason)": lambda: inspection.samples_section(view, 5, 0),
    }
    print("| part | seconds |\n|---|---|")
    total = time.time()
    for name, run in parts.items():
        started = time.time()
        run()
        print(f"| {name} | {time.time() - started:.1f} |")
    started = time.time()
    html = inspection.build_report(root)
    print(f"| whole report (build_report) | {time.time() - started:.1f} |")
    print(f"\nall parts plus the whole report: {time.time() - total:.1f} s; report {len(html.encode()) / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
