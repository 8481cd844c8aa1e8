"""Documents per second per core of `clover curate` on real text, beside Clover's scorer alone and datatrove.

    python benchmarks/curate.py --docs 10000 --master 'local[2]'
    python benchmarks/curate.py --corpus generated --docs 100000 --doc-chars 2000

For each signal preset, and for `fineweb+early_exit` (the fineweb preset with `early_exit: true`: a
document stops being scored at its first failing rule, as in FineWeb's pipeline), in one run on the same
documents:
- `clover curate` end to end, as a user runs it (a fresh `clover curate` process: Spark start, read,
  normalize, score, write three outputs, Great Expectations validation, commit), per core of the master;
  the median of --repeats runs, after an untimed warm-up run that leaves the driver's class archive in place;
- Clover's normalization and scorer alone, one process on one core, all scores (up to the first failing
  rule with +early_exit), measured
  right before each `clover curate` run: the ratio of the two is the median of the runs' ratios, each
  from rates measured minutes apart at most;
- datatrove's Gopher repetition, Gopher quality, C4 and FineWeb filters, one process on one core, with
  the early exit FineWeb ran them with (a document stops at its first failing filter), measured right
  before each preset's runs. It is the peer of every preset; install it in the benchmark's environment
  only (`--datatrove-python`, see benchmarks/agreement.py).
Then the stage's fixed cost, `clover curate` on the first --small-docs documents (Spark and the Python
workers starting, Great Expectations, commit, exit), and its per-document rate beyond it, which is what
more data sees; and where the stage's time went, from Spark's event log: each Spark stage's wall time
and its tasks' run and CPU time.

The real corpus is the Python standard library's text files and those inside the sdists of
`real_text.DOC_SDISTS` and `real_text.PACKAGE_RELEASES` (cached in --sdists and --releases; fetched once
with network), 200 B to 100 kB each, in a fixed mixed order.
"""

from __future__ import annotations

import os
import sys

# runs from a checkout without an install: the repository, not this folder, goes first on sys.path
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import argparse
import glob
import json
import platform
import statistics
import subprocess
import tempfile
import time

from benchmarks.real_text import (
    DOC_SDISTS,
    PACKAGE_RELEASES,
    archive_members,
    fetch_sdists,
    sdist_path,
    stable_order,
    stdlib_files,
)
from benchmarks.tables import table
from quality.presets import PRESETS
from quality.signals import SCORE_RANGES, DocumentScorer, SignalConfig, preset_thresholds, settles
from quality.text import normalize_text
from schemas.sample import prose_documents

TEXT_SUFFIXES = (".py", ".rst", ".txt", ".md")
MIN_BYTES, MAX_BYTES = 200, 100_000

DATATROVE_SCRIPT = r"""
import json, sys, time
from datatrove.data import Document
from datatrove.pipeline.filters import (C4QualityFilter, FineWebQualityFilter, GopherQualityFilter,
                                        GopherRepetitionFilter)
texts = [json.loads(line)["text"] for line in open(sys.argv[1])][: int(sys.argv[2])]
filters = [GopherRepetitionFilter(), GopherQualityFilter(), C4QualityFilter(filter_no_terminal_punct=False),
           FineWebQualityFilter()]
for f in filters:
    f.filter(Document(text=texts[0], id="warmup"))
def run(early_exit):
    docs = [Document(text=t, id=str(i)) for i, t in enumerate(texts)]
    start = time.perf_counter()
    for doc in docs:
        for f in filters:
            verdict = f.filter(doc)
            if early_exit and (verdict is False or (isinstance(verdict, tuple) and not verdict[0])):
                break
    return time.perf_counter() - start
print(json.dumps({"docs": len(texts), "seconds": run(True), "seconds_every_filter": run(False)}))
"""


def real_corpus(docs: int, sdists: str, releases: str) -> list[tuple[str, str]]:
    """(id, text) of up to `docs` real text files: the standard library's, then the sdists'."""
    releases_only = [f"{p}=={v}" for p, vs in PACKAGE_RELEASES.items() for v in vs if f"{p}=={v}" not in DOC_SDISTS]
    specs = {sdists: list(DOC_SDISTS), releases: releases_only}
    named = [(f"stdlib/{name}", data) for name, data in stdlib_files(TEXT_SUFFIXES, MIN_BYTES, MAX_BYTES)]
    for folder, pins in specs.items():
        fetch_sdists(pins, folder)
        for spec in pins:
            named += [(f"{spec}/{name}", data) for name, data in
                      archive_members(sdist_path(folder, spec), TEXT_SUFFIXES, MAX_BYTES) if len(data) >= MIN_BYTES]
    texts = [(name, data.decode("utf-8", errors="replace")) for name, data in named]
    return stable_order(texts)[:docs]


def generated_corpus(docs: int, doc_chars: int) -> list[tuple[str, str]]:
    """Prose documents of about doc_chars characters, one in ten made repetitive."""
    texts = prose_documents(docs, doc_chars, seed=0)
    for i in range(0, docs, 10):
        texts[i] = (texts[i][:200] + " ") * (doc_chars // 200)
    return [(f"doc-{i:07d}", text) for i, text in enumerate(texts)]


def write_jsonl(directory: str, documents: list[tuple[str, str]], files: int) -> list[str]:
    os.makedirs(directory, exist_ok=True)
    paths = []
    per_file = -(-len(documents) // files)
    for f in range(files):
        path = os.path.join(directory, f"part-{f:03d}.jsonl")
        with open(path, "w", encoding="utf-8") as handle:
            for doc_id, text in documents[f * per_file:(f + 1) * per_file]:
                handle.write(json.dumps({"id": doc_id, "text": text}) + "\n")
        paths.append(path)
    return paths


EARLY_EXIT = "+early_exit"  # a --presets entry's suffix: the preset with `early_exit: true`


def run_stage(paths: list[str], out: str, preset: str, master: str, event_dir: str) -> tuple[float, dict]:
    """Wall seconds of one `clover curate` process, and its report."""
    # Code-heavy text loses more than half its documents to one rule under some presets; the speed run
    # lets it (removal_rate_bounds), so every preset runs the same passing validation.
    preset, early_exit = preset.removesuffix(EARLY_EXIT), preset.endswith(EARLY_EXIT)
    sets = {"signals.preset": preset, "early_exit": str(early_exit).lower(), "spark.master": master,
            "removal_rate_bounds.*.max": 1.0,
            "spark.conf.spark.eventLog.enabled": "true",
            "spark.conf.spark.eventLog.dir": event_dir, "spark.conf.spark.eventLog.compress": "false",
            "spark.conf.spark.eventLog.rolling.enabled": "false"}
    os.makedirs(event_dir, exist_ok=True)
    command = [sys.executable, "-m", "jobs.cli", "curate", *paths, "--out", out]
    for key, value in sets.items():
        command += ["--set", f"{key}={value}"]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"clover curate failed ({result.returncode}):\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    with open(os.path.join(out, "report.json"), encoding="utf-8") as handle:
        return seconds, json.load(handle)


def spark_stages(event_dir: str) -> list[tuple[str, int, float, float, float]]:
    """(call site, Spark stages, wall s, task run s, task CPU s) from the event log, summed by call site:
    the file:line of Clover's code (or the library's) that ran the job."""
    (log,) = glob.glob(os.path.join(event_dir, "*"))
    sites: dict[str, list[float]] = {}
    with open(log, encoding="utf-8") as handle:
        for line in handle:
            event = json.loads(line)
            if event.get("Event") != "SparkListenerStageCompleted":
                continue
            info = event["Stage Info"]
            metrics = {m["Name"]: m.get("Value", 0) for m in info.get("Accumulables", [])}
            verb, _, where = info["Stage Name"].partition(" at ")
            site = f"{verb} at {os.path.basename(where)}"
            if "great_expectations" in where:
                site = "Great Expectations validation"
            totals = sites.setdefault(site, [0, 0.0, 0.0, 0.0])
            totals[0] += 1
            totals[1] += (info["Completion Time"] - info["Submission Time"]) / 1000
            totals[2] += metrics.get("internal.metrics.executorRunTime", 0) / 1000
            totals[3] += metrics.get("internal.metrics.executorCpuTime", 0) / 1e9
    return sorted(((site, *totals) for site, totals in sites.items()), key=lambda row: -row[2])


def scorer_rate(texts: list[str], preset: str) -> float:
    """Documents per second of normalization and scoring in this process (as curate scores: with the
    early exit's test on the preset's thresholds for a +early_exit entry)."""
    name = preset.removesuffix(EARLY_EXIT)
    scorer = DocumentScorer(SignalConfig(preset=name))
    settled = settles(preset_thresholds(name), SCORE_RANGES) if preset.endswith(EARLY_EXIT) else None
    scorer(normalize_text(texts[0]))
    start = time.perf_counter()
    for text in texts:
        scorer(normalize_text(text), settled)
    return len(texts) / (time.perf_counter() - start)


def measure_preset(paths: list[str], folder: str, preset: str, master: str, repeats: int,
                   sample: list[str] | None = None, cores: int = 1) -> tuple[dict, list]:
    """`repeats` `clover curate` runs: the median run's wall seconds (with the spread), report and Spark
    breakdown. With a `sample`, each run comes right after a measurement of the scorer alone on it, so
    that the two rates of a ratio share the machine's state (on this shared VM a core's speed drifted by a
    fifth within an hour); then also the median scorer rate and the median of the runs' ratios (per core
    of the master's `cores`)."""
    runs = []
    for attempt in range(repeats):
        scorer = scorer_rate(sample, preset) if sample else None
        event_dir = os.path.join(folder, f"events-{attempt}")
        seconds, report = run_stage(paths, os.path.join(folder, f"out-{attempt}"), preset, master, event_dir)
        runs.append((seconds, report, event_dir, scorer))
    runs.sort(key=lambda run: run[0])
    seconds, report, event_dir, _ = runs[len(runs) // 2]
    row = {"seconds": seconds, "spread": f"{runs[0][0]:.1f}-{runs[-1][0]:.1f}", "input": report["input"],
           "output": report["output"]}
    if sample:
        row["scorer"] = statistics.median(run[3] for run in runs)
        row["ratio"] = statistics.median(report["input"] / run[0] / cores / run[3] for run in runs)
    return row, spark_stages(event_dir)


def preset_rows(full: list[str], small: str, sample_path: str, folder: str, preset: str, args: argparse.Namespace,
                sample: list[str], cores: int) -> tuple[dict, list]:
    """One preset's rates: datatrove's, then `clover curate` on every document, each run beside the scorer
    alone, and on the small input (its fixed cost: Spark and Python workers starting, Great Expectations,
    commit, exit), and the Spark breakdown."""
    peer, peer_every = datatrove_rates(args.datatrove_python, sample_path, len(sample))
    row, sites = measure_preset(full, os.path.join(folder, "full"), preset, args.master, args.repeats, sample,
                                cores)
    fixed, _ = measure_preset([small], os.path.join(folder, "small"), preset, args.master, args.repeats)
    row.update(rate=row["input"] / row["seconds"] / cores, fixed=fixed["seconds"],
               per_document=(row["input"] - fixed["input"]) / (row["seconds"] - fixed["seconds"]) / cores,
               peer=peer, peer_every=peer_every)
    return row, [(preset, site, count, f"{wall:.1f}", f"{run:.1f}", f"{cpu:.1f}") for site, count, wall, run, cpu in sites]


def datatrove_rates(python: str, path: str, docs: int) -> tuple[float, float]:
    """Documents per second of datatrove's four filters with FineWeb's early exit, and with every filter
    run on every document (what Clover's scorer does: it keeps every score)."""
    result = subprocess.run([python, "-c", DATATROVE_SCRIPT, path, str(docs)], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"datatrove run failed (install it with --datatrove-python):\n{result.stderr[-2000:]}")
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    return measured["docs"] / measured["seconds"], measured["docs"] / measured["seconds_every_filter"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", choices=["real", "generated"], default="real")
    parser.add_argument("--docs", type=int, default=10_000)
    parser.add_argument("--doc-chars", type=int, default=2000, help="generated: characters per document")
    parser.add_argument("--presets", default=",".join([*PRESETS, "fineweb" + EARLY_EXIT]))
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--sample-docs", type=int, default=2000, help="documents the one-process runs score")
    parser.add_argument("--sdists", default="/tmp/agreement-sdists", help="real: cache of DOC_SDISTS")
    parser.add_argument("--releases", default="/tmp/clover-real-corpus", help="real: cache of PACKAGE_RELEASES")
    parser.add_argument("--datatrove-python", default="/tmp/venv-dt/bin/python")
    parser.add_argument("--small-docs", type=int, default=100, help="documents of the run that measures the fixed cost")
    parser.add_argument("--repeats", type=int, default=3, help="`clover curate` runs per preset; the median is reported")
    parser.add_argument("--write", help="also write the tables as markdown to this file")
    args = parser.parse_args()
    cores = int(args.master.split("[")[1].rstrip("]")) if "[" in args.master else os.cpu_count()
    documents = (real_corpus(args.docs, args.sdists, args.releases) if args.corpus == "real"
                 else generated_corpus(args.docs, args.doc_chars))
    sample = [text for _, text in documents[: args.sample_docs]]
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_jsonl(tmp, documents, files=max(cores * 4, 8))
        (sample_path,) = write_jsonl(os.path.join(tmp, "sample"), documents[: args.sample_docs], files=1)
        # the first session writes the driver's class archive as it exits (dataprep/jvm_archive.py): not timed
        run_stage([sample_path], os.path.join(tmp, "warm-up"), "clover", args.master, os.path.join(tmp, "warm-up-events"))
        (small_path,) = write_jsonl(os.path.join(tmp, "small"), documents[: args.small_docs], files=1)
        rates, costs, breakdown = [], [], []
        for preset in args.presets.split(","):
            row, sites = preset_rows(paths, small_path, sample_path, os.path.join(tmp, preset), preset, args, sample,
                                     cores)
            rates.append((preset, f"{row['input']:,}", f"{row['seconds']:.1f} ({row['spread']})", f"{row['rate']:,.0f}",
                          f"{row['scorer']:,.0f}", f"{row['peer']:,.0f} / {row['peer_every']:,.0f}", f"{row['ratio']:.0%}",
                          f"{row['rate'] / row['peer']:.2f}x", f"{row['output']:,}"))
            costs.append((preset, f"{row['fixed']:.1f}", f"{row['per_document']:,.0f}",
                          f"{row['per_document'] / row['scorer']:.0%}"))
            breakdown += sites
    size = sum(len(text.encode()) for _, text in documents) / len(documents)
    meta = (f"{time.strftime('%Y-%m-%d')}, {platform.machine()} {os.cpu_count()} cores, master {args.master}; "
            f"{len(documents):,} {args.corpus} documents, mean {size / 1000:.1f} kB; one-process rates on the "
            f"first {len(sample):,}")
    lines = [meta, "", table(("preset", "docs", f"curate s (median of {args.repeats}: min-max)", "curate docs/s/core",
                                  "scorer alone docs/s/core (median)", "datatrove docs/s/core (early exit / every filter)",
                                  "curate / scorer (median of the runs')",
                                  "curate / datatrove (early exit)", "kept"), rates),
             "", f"Fixed and per-document cost: `clover curate` on the first {args.small_docs} documents (median of "
             f"{args.repeats}), and the rate of the documents beyond them:", "",
             table(("preset", "fixed s", "per-document docs/s/core", "per-document / scorer"), costs),
             "", "Where `clover curate`'s Spark time went (event log):", "",
             table(("preset", "call site", "Spark stages", "wall s", "task run s", "task CPU s"), breakdown)]
    print("\n".join(lines))
    if args.write:
        with open(args.write, "w", encoding="utf-8") as handle:
            handle.write(f"# curate benchmark\n\n`python benchmarks/curate.py {' '.join(sys.argv[1:])}`\n\n"
                         + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
