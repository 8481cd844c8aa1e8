"""Dedup measurements, printed as tables.

    python benchmarks/dedup.py signatures --docs 5000
    python benchmarks/dedup.py quality --docs 3000
    python benchmarks/dedup.py scale --sizes 100000,300000,1000000 --master 'local[2]'

signatures: MinHash throughput per core, text to signature, against datasketch `MinHash.bulk` on the
    same documents, and a check that the signatures are identical given the same shingle hashes.
quality: precision and recall of the Spark stage's clusters against brute-force exact Jaccard on a
    corpus with near duplicates planted at known edit rates (truth: pairs at Jaccard >= 0.8).
scale: end-to-end time and peak memory of `clover dedup` on local Spark.
"""

from __future__ import annotations

import os
import sys

# runs from a checkout without an install: the repository, not this folder, goes first on sys.path
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import argparse
import itertools
import platform
import random
import tempfile
import threading
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dataprep.dedup import DedupConfig, run_dedup
from dataprep.spark import SparkConfig, spark_session
from quality.minhash import ShingleHasher, jaccard, lsh_params, shingle_words, signatures
from schemas.sample import edit_words, prose_documents


def table(header: tuple, rows: list[tuple]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def bench_signatures(docs: int, num_perm: int) -> str:
    from datasketch import MinHash

    texts = prose_documents(docs, 2000, seed=1)
    hasher = ShingleHasher(5)
    signatures([], num_perm, 1)  # import datasketch for the permutations before timing
    start = time.perf_counter()
    batches = [texts[i : i + 1000] for i in range(0, docs, 1000)]  # Spark hands over Arrow batches
    hashes = [h for batch in batches for h in hasher.batch(batch)]
    ours = signatures(hashes, num_perm, 1)
    ours_s = time.perf_counter() - start

    start = time.perf_counter()
    shingle_sets = []
    for text in texts:
        words = shingle_words(text)
        shingle_sets.append([b" ".join(words[i:i + 5]) for i in range(max(len(words) - 4, 1))])
    reference = MinHash.bulk(shingle_sets, num_perm=num_perm, seed=1)
    datasketch_s = time.perf_counter() - start

    start = time.perf_counter()
    same_hashes = MinHash.bulk([h.tolist() for h in hashes], num_perm=num_perm, seed=1, hashfunc=int)
    given_s = time.perf_counter() - start
    identical = all(np.array_equal(a, m.hashvalues) for a, m in zip(ours, same_hashes))
    assert len(reference) == docs
    rows = [
        ("clover (shingle, hash, sign; numpy over all documents)", f"{docs / ours_s:,.0f}", "1.00x", identical),
        ("datasketch MinHash.bulk (shingle strings, sha1)", f"{docs / datasketch_s:,.0f}",
         f"{datasketch_s / ours_s:.1f}x slower", "different hash function"),
        ("datasketch MinHash.bulk given clover's shingle hashes", f"{docs / given_s:,.0f}",
         f"{given_s / ours_s:.1f}x slower", identical),
    ]
    return table((f"signatures (one core, num_perm {num_perm}, ~2 KB docs)", "docs/s", "vs clover",
                  "identical to clover"), rows)


def planted_corpus(docs: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """`docs` documents: bases, each other one followed by a near duplicate at a known edit rate."""
    rng = random.Random(seed)
    base = prose_documents(-(-docs * 2 // 3), 2000, seed=seed)
    ids, texts = [], []
    for i, text in enumerate(base):
        ids.append(f"b{i:06d}")
        texts.append(text)
        if i % 2 == 0 and len(ids) < docs:
            rate = rng.choice([0.005, 0.01, 0.02, 0.03, 0.05, 0.1])
            ids.append(f"n{i:06d}")
            texts.append(edit_words(text, rate, rng))
    return ids, texts


def bench_quality(docs: int, master: str, threshold: float) -> str:
    ids, texts = planted_corpus(docs)
    hasher = ShingleHasher(5)
    shingles = hasher.batch(texts)
    # Brute force over pairs sharing any shingle (pairs sharing none have Jaccard 0).
    postings: dict[int, list[int]] = {}
    for i, s in enumerate(shingles):
        for h in set(s.tolist()):
            postings.setdefault(h, []).append(i)
    candidates = {pair for members in postings.values() if len(members) < 200
                  for pair in itertools.combinations(members, 2)}
    truth = {(ids[a], ids[b]) for a, b in candidates if jaccard(shingles[a], shingles[b]) >= 0.8}

    with tempfile.TemporaryDirectory() as tmp:
        pq.write_table(pa.table({"id": ids, "text": texts}), os.path.join(tmp, "docs.parquet"))
        spark = spark_session(SparkConfig(master=master), "clover-bench-dedup")
        rows = []
        optimum = lsh_params(threshold, 112)
        settings = (("default bands (FineWeb's)", 14, 8), ("--threshold (datasketch optimum)", optimum.bands,
                    optimum.rows), ("more, shorter bands", 16, 7), ("more, shorter bands", 28, 4))
        for label, bands, band_rows in settings:
            cfg = DedupConfig(threshold=threshold, bands=bands, rows=band_rows)
            run_dedup(spark, os.path.join(tmp, "docs.parquet"), os.path.join(tmp, "out"), cfg, validate=False,
                      allow_unvalidated=True)
            groups: dict[str, set[str]] = {}
            for row in pq.read_table(os.path.join(tmp, "out", "duplicates")).to_pylist():
                groups.setdefault(row["kept_id"], {row["kept_id"]}).add(row["id"])
            predicted = {tuple(sorted(p)) for g in groups.values() for p in itertools.combinations(sorted(g), 2)}
            hit = len(predicted & truth)
            precision = hit / len(predicted) if predicted else 1.0
            recall = hit / len(truth) if truth else 1.0
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
            rows.append((label, f"{cfg.bands}x{cfg.rows}", len(truth), len(predicted), f"{precision:.4f}",
                         f"{recall:.4f}", f"{f1:.4f}"))
        spark.stop()
    return table((f"{len(ids):,} docs, truth = pairs at Jaccard >= 0.8", "bands x rows", "true pairs",
                  "predicted pairs", "precision", "recall", "F1"), rows)


class PeakRss:
    """Peak resident memory of this Python driver and of the Spark JVM, sampled every 0.2 s."""

    def __init__(self) -> None:
        self.jvm_peak = 0
        self.python_peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            with open("/proc/self/status") as handle:
                for line in handle:
                    if line.startswith("VmRSS"):
                        self.python_peak = max(self.python_peak, int(line.split()[1]) * 1024)
            for pid in os.listdir("/proc"):
                if pid.isdigit():
                    try:
                        with open(f"/proc/{pid}/cmdline", "rb") as handle:
                            if b"java" not in handle.read(200):
                                continue
                        with open(f"/proc/{pid}/status") as handle:
                            for line in handle:
                                if line.startswith("VmRSS"):
                                    self.jvm_peak = max(self.jvm_peak, int(line.split()[1]) * 1024)
                    except OSError:
                        continue

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def write_planted(directory: str, size: int, files: int = 16) -> None:
    """Runs in a child process, so that making the corpus does not count as driver memory."""
    ids, texts = planted_corpus(size, seed=size)
    for f in range(files):
        part = slice(f * len(ids) // files, (f + 1) * len(ids) // files)
        pq.write_table(pa.table({"id": ids[part], "text": texts[part]}), os.path.join(directory, f"in-{f:02d}.parquet"),
                       row_group_size=4096)


def bench_scale(sizes: list[int], master: str, driver_memory: str, java_options: str = "") -> str:
    import multiprocessing

    rows = []
    for size in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            child = multiprocessing.get_context("fork").Process(target=write_planted, args=(tmp, size))
            child.start()
            child.join()
            conf = {"spark.driver.extraJavaOptions": java_options} if java_options else {}
            spark = spark_session(SparkConfig(master=master, driver_memory=driver_memory, conf=conf), "clover-bench-dedup")
            with PeakRss() as peak:
                start = time.perf_counter()
                report = run_dedup(spark, tmp, os.path.join(tmp, "out"), DedupConfig(), validate=False,
                                   allow_unvalidated=True)
                seconds = time.perf_counter() - start
            spark.stop()
            rows.append((f"{report.input:,}", f"{seconds:.0f}", f"{report.input / seconds:,.0f}",
                         f"{sum(report.removed.values()):,}", f"{peak.python_peak / 2**20:,.0f}",
                         f"{peak.jvm_peak / 2**20:,.0f}", report.extra["cc_iterations"]))
            print("row:", " | ".join(str(c) for c in rows[-1]), flush=True)
    return table(("docs", "seconds", "docs/s", "removed", "driver Python peak RSS MiB",
                  "Spark JVM peak RSS MiB (driver + local executors)", "CC iterations"), rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["signatures", "quality", "scale"])
    parser.add_argument("--docs", type=int, default=3000)
    parser.add_argument("--num-perm", type=int, default=112)
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument("--sizes", default="100000,300000,1000000")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--driver-memory", default="12g")
    parser.add_argument("--java-options", default="", help="driver JVM options (the first session's JVM keeps them)")
    args = parser.parse_args()
    header = f"{time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} cores, master {args.master}"
    if args.what == "signatures":
        result = bench_signatures(args.docs, args.num_perm)
    elif args.what == "quality":
        result = bench_quality(args.docs, args.master, args.threshold)
    else:
        result = bench_scale([int(s) for s in args.sizes.split(",")], args.master, args.driver_memory,
                             args.java_options)
    print(f"{header}\n`python benchmarks/dedup.py {' '.join(sys.argv[1:])}`\n\n{result}")


if __name__ == "__main__":
    main()
