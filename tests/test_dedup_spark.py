"""Dedup on Spark: exact and near duplicates, verification, representatives, determinism, the index."""

import os
import random
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pyspark
import pytest

from dataprep.components import connected_components
from dataprep.dedup import DedupConfig, run_dedup
from schemas import StageReport
from schemas.sample import edit_words, stdlib_docstrings

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPARK_SUBMIT = os.path.join(os.path.dirname(pyspark.__file__), "bin", "spark-submit")  # no PATH needed


def _components(spark, pairs, partitions=5, driver_max_edges=0, degrees=False):
    edges = spark.createDataFrame(pairs, "src string, dst string").repartition(partitions)
    result = connected_components(edges, edge_count=len(pairs), driver_max_edges=driver_max_edges)
    if degrees:
        return {r["node"]: (r["component"], r["degree"]) for r in result.assignment.collect()}
    return {r["node"]: r["component"] for r in result.assignment.collect()}


def test_components_on_the_driver_equal_the_distributed_ones(spark):
    rng = random.Random(11)
    nodes = [f"d{i:03d}" for i in range(120)]
    pairs = [(rng.choice(nodes), rng.choice(nodes)) for _ in range(90)]  # loops, repeats, chains and stars
    distributed = _components(spark, pairs, degrees=True)
    assert _components(spark, pairs, driver_max_edges=len(pairs), degrees=True) == distributed
    assert len({component for component, _ in distributed.values()}) > 5
    assert _components(spark, [("a", "b"), ("b", "a"), ("b", "c"), ("c", "c")], degrees=True) == {
        "a": ("a", 1), "b": ("a", 2), "c": ("a", 1)}  # distinct neighbours: repeats, reversals, loops once


def test_the_representative_is_the_member_most_alike_the_others(spark, tmp_path):
    """Releases of one file, a chain: v1~v2 (Jaccard 0.81), v2~v3 (0.81), v3~v4 (0.91), v1 unlike v3 and v4.
    With the smallest id, v1, as representative, v3 and v4 were both released and kept, near-duplicates of
    each other. The member with the most verified neighbours (v2) represents them instead."""
    rng = random.Random(7)
    base = " ".join(w for d in stdlib_docstrings() if len(d.split()) > 120 for w in d.split())[:6000]
    versions = {"v1": edit_words(base, 0.025, rng), "v2": base}
    versions["v3"] = edit_words(base, 0.025, rng)
    versions["v4"] = edit_words(versions["v3"], 0.01, rng)
    pq.write_table(pa.table({"id": list(versions), "text": list(versions.values())}), tmp_path / "v.parquet")
    report = run_dedup(spark, str(tmp_path / "v.parquet"), str(tmp_path / "out"), DedupConfig(), validate=False,
                       allow_unvalidated=True)
    kept = [d["id"] for d in _rows(tmp_path / "out" / "documents")]
    from quality.minhash import ShingleHasher, jaccard

    shingles = dict(zip(versions, ShingleHasher(5).batch(list(versions.values()))))
    assert not any(jaccard(shingles[a], shingles[b]) >= 0.75 for a in kept for b in kept if a < b), kept
    assert kept == ["v2", "v4"] and report.extra["released_from_chains"] == 1  # v4 is 0.73 from v2: kept


def test_components_transitive_chain(spark):
    assert _components(spark, [("a", "b"), ("b", "c")]) == {"a": "a", "b": "a", "c": "a"}


def test_components_star_and_separate_components(spark):
    got = _components(spark, [("m", "x"), ("m", "y"), ("m", "z"), ("p", "q")])
    assert got == {"m": "m", "x": "m", "y": "m", "z": "m", "p": "p", "q": "p"}


def test_components_long_chain_split_across_partitions(spark):
    nodes = [f"n{i:03d}" for i in range(40)]
    random.Random(3).shuffle(nodes)  # the chain's order has nothing to do with id order or partitioning
    got = _components(spark, list(zip(nodes, nodes[1:])), partitions=7)
    assert set(got.values()) == {min(nodes)} and len(got) == 40


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("dedup")
    rng = random.Random(5)
    base = [d for d in stdlib_docstrings() if len(d.split()) > 120][:12]
    rows = [(f"doc{i:02d}", t, 0.5) for i, t in enumerate(base)]
    rows += [
        ("exact-of-00", base[0] + "\n", 0.9),                       # same normalized text: exact
        ("near-of-01", edit_words(base[1], 0.02, rng), 0.9),        # near, and better scored: kept
        ("near-of-02", edit_words(base[2], 0.02, rng), 0.1),        # near, worse scored: removed
        ("near-of-near-02", edit_words(base[2], 0.01, rng), 0.2),
    ]
    rows += [(None, "no id", 0.0), ("no-text", None, 0.0), ("doc05", "a second doc05", 0.0)]
    table = pa.table({"id": [r[0] for r in rows], "text": [r[1] for r in rows], "quality": [r[2] for r in rows]})
    pq.write_table(table, root / "docs.parquet")
    return root, base


def _run(spark, corpus, out, **overrides):
    root, _ = corpus
    cfg = DedupConfig(score_column="quality", **overrides)
    return run_dedup(spark, str(root / "docs.parquet"), str(out), cfg, validate=False, allow_unvalidated=True)


@pytest.fixture(scope="module")
def deduped(spark, corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("deduped") / "out"
    return out, _run(spark, corpus, out)


def _rows(path):
    return pq.read_table(path).to_pylist()


def test_dedup_report_sums_and_outputs(deduped):
    out, report = deduped
    assert StageReport.from_json((out / "report.json").read_text()).check().input == 19
    assert report.quarantined == {"duplicate_id": 1, "missing_id": 1, "missing_text": 1}
    assert report.removed == {"exact_duplicate": 1, "near_duplicate": 3}
    kept = {d["id"] for d in _rows(out / "documents")}
    assert len(kept) == report.output == 12


def test_duplicates_trace_to_the_kept_document(deduped):
    out, _ = deduped
    kept = {d["id"]: d for d in _rows(out / "documents")}
    dups = {d["id"]: d for d in _rows(out / "duplicates")}
    assert all(d["kept_id"] in kept for d in dups.values())
    assert dups["doc00"]["kind"] == "exact" and dups["doc00"]["kept_id"] == "exact-of-00"  # higher score wins
    assert dups["doc01"]["kind"] == "near" and dups["doc01"]["kept_id"] == "near-of-01"
    assert {dups["near-of-02"]["kept_id"], dups["near-of-near-02"]["kept_id"]} == {"doc02"}
    assert dups["near-of-02"]["cluster_id"] == "doc02"  # the cluster is named by its smallest id
    assert len({d["exact_hash"] for d in kept.values()}) == len(kept)


def test_determinism_across_shuffle_partitions(spark, corpus, deduped, tmp_path):
    out, _ = deduped
    previous = spark.conf.get("spark.sql.shuffle.partitions")
    try:
        for partitions in ("1", "7"):
            spark.conf.set("spark.sql.shuffle.partitions", partitions)
            again = tmp_path / f"p{partitions}"
            _run(spark, corpus, again)
            for dataset in ("documents", "duplicates", "quarantine"):
                for name in sorted(os.listdir(out / dataset)):
                    assert (out / dataset / name).read_bytes() == (again / dataset / name).read_bytes(), name
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", previous)


def test_spark_submit_local1_matches_local2(corpus, deduped, tmp_path):
    out, _ = deduped
    root, _ = corpus
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    result = subprocess.run(
        [SPARK_SUBMIT, "--master", "local[1]", os.path.join(REPO, "jobs", "dedup.py"), str(root / "docs.parquet"),
         "--out", str(tmp_path / "one"), "--score-column", "quality", "--allow-unvalidated", "--no-validate"],
        capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    for dataset in ("documents", "duplicates"):
        for name in sorted(os.listdir(out / dataset)):
            assert (out / dataset / name).read_bytes() == (tmp_path / "one" / dataset / name).read_bytes()


def test_verification_stops_false_positive_merges(spark, tmp_path):
    base = [d for d in stdlib_docstrings() if len(d.split()) > 200][:2]
    half = " ".join(base[0].split()[:100])
    texts = {"a": half + " " + " ".join(base[1].split()[:100]), "b": half + " " + " ".join(base[1].split()[100:200])}
    pq.write_table(pa.table({"id": list(texts), "text": list(texts.values())}), tmp_path / "d.parquet")
    loose = dict(num_perm=20, bands=20, rows=1)  # one value per band: Jaccard ~0.3 pairs become candidates
    common = dict(validate=False, allow_unvalidated=True)
    verified = run_dedup(spark, str(tmp_path / "d.parquet"), str(tmp_path / "v"), DedupConfig(**loose), **common)
    unverified = run_dedup(spark, str(tmp_path / "d.parquet"), str(tmp_path / "u"), DedupConfig(verify=False, **loose),
                           **common)
    assert verified.extra["candidate_pairs"] == 1 and verified.extra["verified_pairs"] == 0
    assert verified.output == 2 and unverified.output == 1


def test_oversized_buckets_are_capped_and_counted(spark, corpus, tmp_path):
    report = _run(spark, corpus, tmp_path / "capped", max_bucket_size=2)
    assert report.extra["oversized_buckets"] > 0 and report.extra["unlinked_bucket_members"] > 0
    assert report.check()


def test_against_an_index_removes_earlier_duplicates(spark, corpus, tmp_path):
    root, base = corpus
    first = run_dedup(spark, str(root / "docs.parquet"), str(tmp_path / "first"), DedupConfig(),
                      write_index=str(tmp_path / "index"), validate=False, allow_unvalidated=True)
    assert first.output > 0 and (tmp_path / "index" / "index.json").exists()
    rng = random.Random(9)
    new = {"fresh": "A brand new document about something else entirely. " * 3,
           "again-03": base[3], "near-04": edit_words(base[4], 0.02, rng)}
    pq.write_table(pa.table({"id": list(new), "text": list(new.values())}), tmp_path / "new.parquet")
    report = run_dedup(spark, str(tmp_path / "new.parquet"), str(tmp_path / "second"), DedupConfig(),
                       against=str(tmp_path / "index"), allow_unvalidated=True)
    assert report.extra["validation"]["success"]  # kept_ids pointing into the index count as found
    dups = {d["id"]: d for d in _rows(tmp_path / "second" / "duplicates")}
    assert dups["again-03"]["kind"] == "exact" and dups["again-03"]["kept_id"] == "doc03"
    assert dups["near-04"]["kind"] == "near" and dups["near-04"]["kept_id"] == "doc04"
    assert [d["id"] for d in _rows(tmp_path / "second" / "documents")] == ["fresh"]
    assert report.check().output == 1


def test_a_dedup_output_can_be_deduplicated_again(spark, deduped, tmp_path):
    """Its documents carry an exact_hash column already (they used to make the new one ambiguous)."""
    out, first = deduped
    again = run_dedup(spark, str(out), str(tmp_path / "again"), DedupConfig(), validate=False, allow_unvalidated=True)
    assert again.input == first.output and again.output == first.output and again.removed == {}
    assert {d["id"] for d in _rows(tmp_path / "again" / "documents")} == {d["id"] for d in _rows(out / "documents")}
