"""Documents per second per core of `clover curate`, against datatrove's Gopher, C4 and FineWeb filters.

    python benchmarks/curate.py --docs 100000 --master 'local[2]'

datatrove must be importable (install it in the benchmark's environment only, never as a dependency)
or given as another interpreter with --datatrove-python. It scores a subset of the same documents,
one process on one core, with its usual early exit (a document stops at its first failing filter).
"""

from __future__ import annotations

import os
import sys

# runs from a checkout without an install: the repository, not this folder, goes first on sys.path
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import argparse
import json
import platform
import subprocess
import tempfile
import time

from dataprep.curate import CurateConfig, run_curate
from dataprep.spark import SparkConfig, spark_session
from quality.signals import DocumentScorer, SignalConfig
from quality.text import normalize_text
from schemas.sample import prose_documents

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
docs = [Document(text=t, id=str(i)) for i, t in enumerate(texts)]
start = time.perf_counter()
kept = 0
for doc in docs:
    for f in filters:
        verdict = f.filter(doc)
        if verdict is False or (isinstance(verdict, tuple) and not verdict[0]):
            break
    else:
        kept += 1
print(json.dumps({"docs": len(docs), "seconds": time.perf_counter() - start, "kept": kept}))
"""


def make_corpus(directory: str, docs: int, doc_chars: int, files: int) -> list[str]:
    """Prose documents of about doc_chars characters, one in ten made repetitive, as JSONL files."""
    texts = prose_documents(docs, doc_chars, seed=0)
    for i in range(0, docs, 10):
        texts[i] = (texts[i][:200] + " ") * (doc_chars // 200)
    paths = []
    per_file = -(-docs // files)
    for f in range(files):
        path = os.path.join(directory, f"part-{f:03d}.jsonl")
        with open(path, "w", encoding="utf-8") as handle:
            for i in range(f * per_file, min(docs, (f + 1) * per_file)):
                handle.write(json.dumps({"id": f"doc-{i:07d}", "text": texts[i]}) + "\n")
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--doc-chars", type=int, default=2000)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--datatrove-docs", type=int, default=5000, help="subset datatrove scores")
    parser.add_argument("--datatrove-python", default=sys.executable, help="interpreter with datatrove installed")
    parser.add_argument("--write", help="also write the table as markdown to this file")
    args = parser.parse_args()
    cores = int(args.master.split("[")[1].rstrip("]")) if "[" in args.master else os.cpu_count()

    with tempfile.TemporaryDirectory() as tmp:
        paths = make_corpus(tmp, args.docs, args.doc_chars, files=max(cores * 4, 8))
        spark = spark_session(SparkConfig(master=args.master, driver_memory="4g"), "clover-bench-curate")
        cfg = CurateConfig(spark=SparkConfig(partitions=cores * 4))
        start = time.perf_counter()
        report = run_curate(spark, paths, os.path.join(tmp, "out"), cfg, validate=False)
        spark_seconds = time.perf_counter() - start
        spark.stop()

        with open(paths[0], encoding="utf-8") as handle:
            texts = [json.loads(line)["text"] for line in handle][: args.datatrove_docs]
        scorer = DocumentScorer(SignalConfig())
        start = time.perf_counter()
        for text in texts:
            scorer(normalize_text(text))
        scorer_rate = len(texts) / (time.perf_counter() - start)

        result = subprocess.run([args.datatrove_python, "-c", DATATROVE_SCRIPT, paths[0], str(args.datatrove_docs)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            sys.exit(f"datatrove run failed (install it with --datatrove-python):\n{result.stderr[-2000:]}")
        datatrove = json.loads(result.stdout.strip().splitlines()[-1])

    stage_rate = report.input / spark_seconds / cores
    datatrove_rate = datatrove["docs"] / datatrove["seconds"]
    rows = [
        ("clover curate (Spark, end to end: read, score, write)", f"{report.input:,}", f"{spark_seconds:.1f}",
         f"{stage_rate:,.0f}", f"{stage_rate / datatrove_rate:.2f}x"),
        ("clover scorer alone (one process, all scores, no early exit)", f"{len(texts):,}", "",
         f"{scorer_rate:,.0f}", f"{scorer_rate / datatrove_rate:.2f}x"),
        ("datatrove Gopher+C4+FineWeb filters (one process, early exit)", f"{datatrove['docs']:,}",
         f"{datatrove['seconds']:.1f}", f"{datatrove_rate:,.0f}", "1.00x"),
    ]
    header = ("run", "docs", "seconds", "docs/s/core", "vs datatrove")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    meta = (f"{time.strftime('%Y-%m-%d')}, {platform.machine()} {os.cpu_count()} cores, master {args.master}, "
            f"{args.docs:,} docs of ~{args.doc_chars} chars; kept {report.output:,}, removed "
            f"{sum(report.removed.values()):,}")
    table = "\n".join([meta, "", *lines])
    print(table)
    if args.write:
        with open(args.write, "w", encoding="utf-8") as handle:
            handle.write(f"# curate benchmark\n\n`python benchmarks/curate.py {' '.join(sys.argv[1:])}`\n\n{table}\n")


if __name__ == "__main__":
    main()
