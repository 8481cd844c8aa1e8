"""`clover inspect` on a synthetic demo-shaped directory: a 10M-document curate output, a dedup output of its kept
documents, token shards, a pretraining run, a DPO run and the gate story. Is the curate page under a minute
on 2 cores, and what does each page of the whole-directory report cost?

Everything is written directly with numpy and pyarrow (no Spark, no training): the curate output's Parquet (every
score column, short texts, reasons from the real thresholds), one JSON-lines curate input of multi-line
documents for the C4 examples to read again (report.json `inputs`), duplicates/ of near and exact clusters,
token shards (training/trainer/synthetic.py), and metrics.jsonl of the runs. Then the curate page's parts are
timed one by one, each page of the directory, and the whole report (`build_report`, what `clover inspect DIR` runs).

    python benchmarks/inspect_report.py [--docs 10000000] [--steps 100000] [--token-rows 100000]
                                        [--dir /tmp/clover-inspect-bench]
"""

from __future__ import annotations

import os
import sys

sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from jobs import inspection
from quality.signals import SCORE_RANGES, paper_thresholds

PART_ROWS = 1_000_000


def _scores(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Plausible score distributions, most documents passing each rule: fractions with an upper bound mostly
    small, with a lower bound mostly large; counts log-normal; the C4 flags rare; cleaning changes 5% of documents."""
    thresholds = paper_thresholds()
    out = {}
    for name, (_, hi) in SCORE_RANGES.items():
        bounds = thresholds.get(name)
        if name in ("c4_lorem_ipsum", "c4_curly_bracket"):
            out[name] = (rng.random(n) < 0.01).astype(np.float64)
        elif name == "c4_bad_word_count":
            out[name] = rng.poisson(0.01, n).astype(np.float64)
        elif name == "c4_removed_line_frac":
            out[name] = np.where(rng.random(n) < 0.05, rng.beta(1.0, 6.0, n), 0.0)
        elif name == "gopher_stop_words":
            out[name] = rng.integers(0, 30, n).astype(np.float64)
        elif hi <= 1.0 or (bounds is not None and bounds.max is not None and bounds.max <= 1.0):  # ratios too
            low = rng.beta(0.5, 25.0, n)
            out[name] = 1.0 - low if bounds is not None and bounds.min is not None else low
        elif name == "gopher_mean_word_length":
            out[name] = rng.normal(5.0, 1.0, n)
        elif name == "c4_sentence_count":
            out[name] = rng.lognormal(np.log(25), 0.8, n)
        else:
            out[name] = rng.lognormal(np.log(300), 0.8, n)
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


INPUT_DOCS = 25_000  # records of the curate input: more than inspection.INPUT_RECORDS, the most it reads again
PROSE = ("The river runs to the sea and the town grew with it over the years. People of the valley have kept the old "
         "road. It is said that the bridge was built with stone from the hills. The market opens at dawn.")


def write_input(root: str, docs: int) -> None:
    """A JSON-lines curate input of the first documents (ids doc-0 ...), each about 2 KB over 10 lines, none with a
    line C4 cleaning removes: the C4 examples then read inspection.INPUT_RECORDS records, their most."""
    path = f"{root}/input/part-00000.jsonl"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for i in range(docs):
            text = "\n".join(f"{PROSE} Line {line} of document {i}." for line in range(10))
            handle.write(json.dumps({"id": f"doc-{i}", "text": text}) + "\n")
    report = json.loads(Path(f"{root}/report.json").read_text())
    report["inputs"] = [path]
    Path(f"{root}/report.json").write_text(json.dumps(report))


def synthesize_dedup(root: str, curated: str, seed: int = 0) -> None:
    """A dedup output of the curate output's kept documents: 10% of them removed, in clusters whose sizes are
    Zipf-distributed (a few large ones), half exact and half near; removed texts are read from the source."""
    rng = np.random.default_rng(seed)
    ids = pa.concat_arrays([c for f in sorted(os.listdir(f"{curated}/documents"))
                            for c in pq.read_table(f"{curated}/documents/{f}", columns=["id"])["id"].chunks])
    n = len(ids)
    order = rng.permutation(n)
    removed, reps = order[: n // 10], order[n // 10: n // 10 + n // 30]
    cluster = np.minimum(rng.zipf(1.8, len(removed)) - 1, len(reps) - 1)
    kept_id = ids.take(pa.array(reps[cluster]))
    kind = np.where(rng.random(len(removed)) < 0.5, "exact", "near")
    os.makedirs(f"{root}/duplicates", exist_ok=True)
    for part, start in enumerate(range(0, len(removed), PART_ROWS)):
        sl = slice(start, start + PART_ROWS)
        pq.write_table(pa.table({"id": ids.take(pa.array(removed[sl])), "cluster_id": kept_id[sl.start:sl.stop],
                                 "kept_id": kept_id[sl.start:sl.stop], "kind": kind[sl]}),
                       f"{root}/duplicates/part-{part:05d}.parquet")
    gone = pa.array(ids.take(pa.array(removed)))
    os.makedirs(f"{root}/documents", exist_ok=True)
    for f in sorted(os.listdir(f"{curated}/documents")):
        table = pq.read_table(f"{curated}/documents/{f}", columns=["id", "text"])
        pq.write_table(table.filter(pc.invert(pc.is_in(table["id"], gone))), f"{root}/documents/{f}")
    exact = int((kind == "exact").sum())
    report = {"stage": "dedup", "input": n, "output": n - len(removed), "quarantined": {}, "seconds": 0,
              "removed": {"exact_duplicate": exact, "near_duplicate": len(removed) - exact},
              "config": {"text_column": "text", "shingle_n": 5, "num_perm": 128, "bands": 16, "rows": 8,
                         "threshold": 0.8, "verify": True},
              "source": f"{curated}/documents", "candidate_pairs": 2 * len(removed), "verified_pairs": len(removed),
              "components": len(np.unique(cluster))}
    Path(f"{root}/report.json").write_text(json.dumps(report))


def _metrics(rng: np.random.Generator, steps: int, dpo: bool, eval_every: int, rejection_rate: float) -> list[dict]:
    loss = 2.5 + 8.0 * np.exp(-np.arange(1, steps + 1) / (steps / 8)) + rng.normal(0, 0.05, steps)
    records, total = [], 0
    for step in range(1, steps + 1):
        rejected = int(rng.random() < rejection_rate)
        total += rejected
        record = {"step": step, "loss": float(loss[step - 1]), "lr": 3e-4 * min(1.0, step / 100),
                  "grad_norm": float(abs(rng.normal(0.8, 0.3)) + (8.0 if rng.random() < 0.002 else 0.0)),
                  "tokens_per_s": float(rng.normal(5e4, 1e3)), "gate_rejections": rejected,
                  "gate_rejections_total": total, "update_skipped": False}
        if dpo:
            record.update(reward_accuracy=float(min(1.0, 0.5 + step / steps / 2)), reward_margin=step / steps)
        if step % eval_every == 0 or step == steps:
            record.update({"eval_loss": float(loss[step - 1] + 0.1), "eval_ppl": float(np.exp(loss[step - 1] + 0.1)),
                           "eval_tokens": 131072} if not dpo else
                          {"eval_loss": 0.6, "eval_reward_accuracy": 0.7, "eval_reward_margin": 0.3, "eval_pairs": 256})
        records.append(record)
    return records


def write_run(out: Path, steps: int, data: str, dpo: bool = False, clip: float = 1.0, gate: bool = True,
              rejection_rate: float = 0.01, extra: dict | None = None, seed: int = 0) -> None:
    """A run directory as the trainer leaves it: config.json, metrics.jsonl, gate_rejections.jsonl, checkpoints."""
    rng = np.random.default_rng(seed)
    metrics = _metrics(rng, steps, dpo, 250 if dpo else 1000, rejection_rate if gate and not dpo else 0.0)
    out.mkdir(parents=True, exist_ok=True)
    engine = {"micro_batch": 8, "grad_accum": 4, "max_steps": steps, "optimizer": {"grad_clip": clip},
              "gate": {"enabled": gate, "ngram": 13, "max_fraction": 0.15}, "data": {"seed": 0}}
    config = {"kind": "dpo" if dpo else "pretrain", "model": "clover-tiny", "data": data, "engine": engine,
              **(extra or {})}
    (out / "config.json").write_text(json.dumps(config))
    (out / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    rejections = [{"micro_batch": int(i), "epoch": 0, "fraction": 0.5, "shards": ["shards/part-00000.parquet"]}
                  for m in metrics if m["gate_rejections"] for i in [rng.integers(0, 1000)]]
    (out / "gate_rejections.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rejections))
    for step in range(steps // 4, steps + 1, max(steps // 4, 1)):
        (out / "checkpoints" / f"step-{step:08d}").mkdir(parents=True, exist_ok=True)
        (out / "checkpoints" / f"step-{step:08d}" / "COMPLETE").write_text("{}")


def synthesize_runs(root: Path, steps: int, token_rows: int) -> None:
    """Token shards, a pretraining run of `steps`, a DPO run of steps / 5 and the gate story's two 150-step arms."""
    from training.trainer.synthetic import write_token_shards

    write_token_shards(root / "tokens", rows=token_rows, seq_len=512, vocab=32000, shards=max(token_rows // 5000, 1),
                       row_group_rows=128, repetitive_rows=tuple(range(0, token_rows, 50)), doc_length=128)
    write_run(root / "runs" / "pretrain", steps, str(root / "tokens"),
              extra={"eval": {"data": str(root / "tokens"), "held_out_shards": ["shards/part-00000.parquet"]}})
    write_run(root / "runs" / "dpo", steps // 5, str(root / "pairs"), dpo=True,
              extra={"eval": {"data": str(root / "pairs"), "holdout_fraction": 0.05, "held_out_pairs": 500}})
    data = write_token_shards(root / "gate-story" / "data", rows=2000, seq_len=512, vocab=32000, shards=1,
                              repetitive_rows=tuple(range(0, 2000, 12)), validated=False)
    manifest = json.loads((data / "manifest.json").read_text())
    manifest["uncurated"] = {"looping_rows": 167, "curated_rows": 1833, "share": 167 / 2000, "why": "synthetic"}
    (data / "manifest.json").write_text(json.dumps(manifest))
    for name, gate, clip in (("ungated", False, 1.0), ("gated", True, 0.5)):
        write_run(root / "gate-story" / name, 150, str(data), clip=clip, gate=gate, rejection_rate=0.3,
                  extra={"init_from": "runs/pretrain/checkpoints/step-00001000", "init_step": 1000,
                         "gate_story": {"arm": name, "gate": gate, "clip": clip}})


def _timed(run, *args) -> tuple[float, object]:
    started = time.time()
    result = run(*args)
    return time.time() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=10_000_000)
    parser.add_argument("--steps", type=int, default=100_000, help="steps of the pretraining run (DPO: a fifth)")
    parser.add_argument("--token-rows", type=int, default=100_000, help="rows of 512 tokens")
    parser.add_argument("--dir", default="/tmp/clover-inspect-bench")
    args = parser.parse_args()
    root = Path(f"{args.dir}/demo-{args.docs}-{args.steps}-{args.token_rows}")
    curated = str(root / "curated")
    if not (root / "done").exists():
        started = time.time()
        synthesize(curated, args.docs)
        write_input(curated, INPUT_DOCS)
        synthesize_dedup(str(root / "deduped"), curated)
        synthesize_runs(root, args.steps, args.token_rows)
        (root / "done").write_text("")
        print(f"synthesized {args.docs:,} documents, {args.token_rows:,} token rows, runs of {args.steps:,} steps "
              f"in {time.time() - started:.1f} s -> {root}")

    view = inspection.CurateView.open(curated)
    picked = inspection.pick_samples(view, 5, 0)
    parts = {
        "funnel": lambda: inspection.funnel_section(view, []),
        "funnel with --set": lambda: inspection.funnel_section(view, ["thresholds.gopher_word_count.min=40"]),
        "removals per reason and source": lambda: inspection.sources_section(view),
        "histograms (31 scores)": lambda: inspection.histograms_section(view),
        "what-if (±10%, ±25%, every bound)": lambda: inspection.whatif_section(view),
        "examples (5 per reason)": lambda: inspection.samples_section(view, inspection.pick_samples(view, 5, 0), None),
        "C4 examples: the input read again (worst case) and the section": lambda: inspection.c4_section(
            view, 5, 0, before.append(inspection.read_before_cleaning(
                view, set(picked["id"]), inspection.CANDIDATES_PER_EXAMPLE * 5)) or before[-1]),
    }
    before: list = []
    print(f"curate page, part by part ({args.docs:,} documents, {view.report['output']:,} kept)\n")
    print("| part | seconds |\n|---|---|")
    for name, run in parts.items():
        seconds, _ = _timed(run)
        extra = f" ({before[-1].read:,} records read)" if name.startswith("C4") else ""
        print(f"| {name}{extra} | {seconds:.1f} |")

    cfg = inspection.InspectConfig()
    print("\nwhole directory, page by page\n\n| page | seconds |\n|---|---|")
    for path, kind in inspection.find_outputs(str(root)):
        seconds, _ = _timed(inspection.stage_sections, path, kind, cfg, [])
        print(f"| {kind} {os.path.relpath(path, root)} | {seconds:.1f} |")
    seconds, html = _timed(lambda: inspection.build_report(str(root), out=str(root / "report.html")))
    print(f"| **whole report (`build_report`, what `clover inspect DIR` runs)** | **{seconds:.1f}** |")
    print(f"\nreport {len(html.encode()) / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
