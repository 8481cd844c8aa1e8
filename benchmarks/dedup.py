"""Dedup measurements, printed as tables.

    python benchmarks/dedup.py signatures --docs 5000
    python benchmarks/dedup.py quality --docs 3000
    python benchmarks/dedup.py scale --sizes 100000,300000,1000000 --master 'local[2]'

signatures: MinHash throughput per core, text to signature, against datasketch `MinHash.bulk` on the
    same documents, and a check that the signatures are identical given the same shingle hashes.
quality: precision and recall of the Spark stage's clusters against brute-force exact Jaccard on a
    corpus with near duplicates planted at known edit rates (truth: pairs at Jaccard >= 0.8).
scale: end-to-end time and peak memory of `clover dedup` on local Spark.
real: outcome on real near-duplicates nobody planted: the text files of several released versions of a
    few PyPI packages (fetched with `pip download`, unpacked here; the recipe is PACKAGE_RELEASES, the data
    is not committed). Truth is exact Jaccard on Clover's own shingles over all pairs. Per setting:
    residual (true pairs whose documents are both kept, share of true pairs), unjustified (removed
    documents whose best Jaccard with any kept document is below the threshold, share of removals) and
    cost (seconds per 1k documents); datasketch's MinHashLSH with union-find on the same corpus.

    python benchmarks/dedup.py real --threshold 0.75 --cache /tmp/clover-real-corpus
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

from benchmarks.real_text import PACKAGE_RELEASES, archive_members, fetch_sdists, sdist_path
from benchmarks.tables import table
from dataprep.dedup import DedupConfig, run_dedup
from dataprep.spark import SparkConfig, spark_session
from quality.minhash import ShingleHasher, jaccard, lsh_params, shingle_words, signatures
from schemas.sample import edit_words, prose_documents


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


TEXT_SUFFIXES = (".py", ".rst", ".txt", ".md", ".toml", ".cfg", ".html", ".pyi")


def real_corpus(cache: str, min_words: int = 50) -> tuple[list[str], list[str]]:
    """(ids, texts): every text file of at least `min_words` words in each sdist of PACKAGE_RELEASES."""
    specs = [f"{package}=={version}" for package, versions in PACKAGE_RELEASES.items() for version in versions]
    fetch_sdists(specs, cache)
    ids, texts = [], []
    for spec in specs:
        for name, data in archive_members(sdist_path(cache, spec), TEXT_SUFFIXES):
            text = data.decode("utf-8", errors="replace")
            if len(text.split()) >= min_words:
                ids.append(f"{spec.replace('==', '-')}/{name.split('/', 1)[-1]}")
                texts.append(text)
    return ids, texts


def exact_jaccard_pairs(shingles: list[np.ndarray], threshold: float) -> dict[tuple[int, int], float]:
    """Every pair of documents at Jaccard >= threshold, exactly: intersections from a sparse product."""
    from scipy import sparse

    sets = [np.unique(s) for s in shingles]
    vocabulary, columns = np.unique(np.concatenate(sets), return_inverse=True)
    rows = np.repeat(np.arange(len(sets)), [len(s) for s in sets])
    matrix = sparse.csr_matrix((np.ones(len(rows), dtype=np.int32), (rows, columns)), shape=(len(sets), len(vocabulary)))
    inter = sparse.triu(matrix @ matrix.T, k=1).tocoo()
    sizes = np.array([len(s) for s in sets])
    union = sizes[inter.row] + sizes[inter.col] - inter.data
    score = inter.data / np.maximum(union, 1)
    keep = score >= threshold
    return {(int(a), int(b)): float(j) for a, b, j in zip(inter.row[keep], inter.col[keep], score[keep])}


def best_kept_jaccard(shingles: list[np.ndarray], removed: list[int], kept: set[int]) -> dict[int, float]:
    """For each removed document, its highest Jaccard with any kept document (0 when none shares a shingle)."""
    from scipy import sparse

    sets = [np.unique(s) for s in shingles]
    vocabulary, columns = np.unique(np.concatenate(sets), return_inverse=True)
    rows = np.repeat(np.arange(len(sets)), [len(s) for s in sets])
    matrix = sparse.csr_matrix((np.ones(len(rows), dtype=np.int32), (rows, columns)), shape=(len(sets), len(vocabulary)))
    kept_index = np.array(sorted(kept))
    inter = (matrix[removed] @ matrix[kept_index].T).tocoo()
    sizes = np.array([len(s) for s in sets])
    union = sizes[np.asarray(removed)[inter.row]] + sizes[kept_index[inter.col]] - inter.data
    best = dict.fromkeys(removed, 0.0)
    for r, j in zip(inter.row, inter.data / np.maximum(union, 1)):
        best[removed[r]] = max(best[removed[r]], float(j))
    return best


def outcome(shingles, truth: dict, kept: set[int], threshold: float) -> tuple[float, float, int]:
    """(residual share of true pairs, unjustified share of removals, removals)."""
    removed = sorted(set(range(len(shingles))) - kept)
    residual = sum(1 for a, b in truth if a in kept and b in kept)
    best = best_kept_jaccard(shingles, removed, kept) if removed else {}
    unjustified = sum(1 for j in best.values() if j < threshold)
    return residual / max(len(truth), 1), unjustified / max(len(removed), 1), len(removed)


def datasketch_union_find(shingles, threshold: float, num_perm: int) -> tuple[set[int], float]:
    """datasketch MinHashLSH over the same shingle hashes; each connected component keeps its smallest index."""
    from datasketch import MinHashLSH

    start = time.perf_counter()
    matrix = signatures(shingles, num_perm, 1)
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    from datasketch import LeanMinHash

    parent = list(range(len(shingles)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, row in enumerate(matrix):
        minhash = LeanMinHash(seed=1, hashvalues=row, scheme="affine32")
        for j in lsh.query(minhash):
            a, b = find(i), find(j)
            if a != b:
                parent[max(a, b)] = min(a, b)
        lsh.insert(i, minhash)
    kept = {i for i in range(len(shingles)) if find(i) == i}
    return kept, time.perf_counter() - start


def bench_real(threshold: float, cache: str, master: str) -> str:
    ids, texts = real_corpus(cache)
    hasher = ShingleHasher(5)
    shingles = hasher.batch(texts)
    truth = exact_jaccard_pairs(shingles, threshold)
    index = {doc: i for i, doc in enumerate(ids)}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        pq.write_table(pa.table({"id": ids, "text": texts}), os.path.join(tmp, "docs.parquet"))
        spark = spark_session(SparkConfig(master=master), "clover-bench-dedup", input_bytes=0)
        optimum = lsh_params(threshold, 112)
        settings = (("clover default (FineWeb's bands)", 14, 8), ("clover, datasketch's optimum bands",
                    optimum.bands, optimum.rows), ("clover, 28x4", 28, 4), ("clover, 20x5", 20, 5))
        for label, bands, band_rows in settings:
            cfg = DedupConfig(threshold=threshold, bands=bands, rows=band_rows)
            out = os.path.join(tmp, f"out-{bands}x{band_rows}")
            start = time.perf_counter()
            report = run_dedup(spark, os.path.join(tmp, "docs.parquet"), out, cfg, validate=False, allow_unvalidated=True)
            seconds = time.perf_counter() - start
            kept = {index[d] for d in pq.read_table(os.path.join(out, "documents"), columns=["id"]).column("id").to_pylist()}
            residual, unjustified, removed = outcome(shingles, truth, kept, threshold)
            rows.append((label, f"{bands}x{band_rows}", removed, f"{residual:.2%}", f"{unjustified:.2%}",
                         f"{seconds / len(ids) * 1000:.2f}", report.extra["candidate_pairs"]))
        spark.stop()
    kept, seconds = datasketch_union_find(shingles, threshold, 112)
    residual, unjustified, removed = outcome(shingles, truth, kept, threshold)
    rows.append(("datasketch MinHashLSH + union-find (one process)", f"threshold {threshold}", removed,
                 f"{residual:.2%}", f"{unjustified:.2%}", f"{seconds / len(ids) * 1000:.2f}", ""))
    header = (f"{len(ids):,} real documents ({len(PACKAGE_RELEASES)} packages x 6 releases), {len(truth):,} true pairs "
              f"at Jaccard >= {threshold}", "bands x rows", "removed", "residual (of true pairs)",
              "unjustified (of removals)", "s per 1k docs", "candidate pairs")
    return table(header, rows)


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
    parser.add_argument("what", choices=["signatures", "quality", "scale", "real"])
    parser.add_argument("--cache", default="/tmp/clover-real-corpus", help="real: where the sdists are kept")
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
    elif args.what == "real":
        result = bench_real(args.threshold, args.cache, args.master)
    else:
        result = bench_scale([int(s) for s in args.sizes.split(",")], args.master, args.driver_memory,
                             args.java_options)
    print(f"{header}\n`python benchmarks/dedup.py {' '.join(sys.argv[1:])}`\n\n{result}")


if __name__ == "__main__":
    main()
