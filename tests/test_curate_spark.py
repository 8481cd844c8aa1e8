"""The curation stage end to end on Spark, over a fixture holding every kind of malformed record."""

import gzip
import json
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pyspark
import pytest
import zstandard

from dataprep.curate import CurateConfig, run_curate
from dataprep.spark import (
    SparkConfig,
    fit_shuffle_partitions,
    map_units,
    partitions_for,
    write_parquet_routed,
)
from quality.signals import DocumentScorer, SignalConfig, first_failing_rule, paper_thresholds
from schemas import ReportMismatch, StageReport
from schemas.config import load_config
from schemas.sample import stdlib_docstrings

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPARK_SUBMIT = os.path.join(os.path.dirname(pyspark.__file__), "bin", "spark-submit")  # no PATH needed


def _good_docs(count):
    scorer, thresholds = DocumentScorer(SignalConfig()), paper_thresholds()
    docs = [d for d in stdlib_docstrings() if first_failing_rule(scorer(d)[1], thresholds) is None]
    return docs[:count]


def _jsonl(records):
    return b"".join(r if isinstance(r, bytes) else json.dumps(r).encode() + b"\n" for r in records)


@pytest.fixture(scope="module")
def dirty_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("dirty")
    good = _good_docs(30)
    records = [{"id": f"g{i}", "text": t, "url": f"https://example.org/{i}", "lang": "en"} for i, t in enumerate(good[:20])]
    records += [
        b"{this is not json\n",                                         # line 21
        b'{"id": "u1", "text": "caf\xe9 latin-1 bytes"}\n',             # line 22
        {"id": "m1", "body": "no text field"},                          # line 23
        {"id": "n1", "text": 42},                                       # line 24
        {"id": "z1", "text": "nul \u0000 inside"},                      # line 25
        {"id": "big", "text": "word " * 6000},                          # line 26
        {"id": {"nested": 1}, "text": "bad id"},                        # line 27
        {"id": "g0", "text": good[0]},                                  # line 28: repeated id
        b"   \n",                                                       # blank: not a record
        {"id": "e1", "text": " \n\t \r\n"},                             # line 30: empty after normalizing
        {"id": "s1", "text": "buy now cheap pills " * 200},             # line 31: repetitive spam
    ]
    (root / "main.jsonl").write_bytes(_jsonl(records))
    zst = zstandard.ZstdCompressor().compress(_jsonl([{"text": t} for t in good[20:24]]))
    (root / "more.jsonl.zst").write_bytes(zst)
    (root / "cut.jsonl.zst").write_bytes(zst[: len(zst) // 2])
    (root / "cut.jsonl.gz").write_bytes(gzip.compress(_jsonl([{"text": t} for t in good[24:28]]))[:-40])
    pq.write_table(pa.table({"text": [good[28], None], "id": ["p1", "p2"]}), root / "rows.parquet")
    pq.write_table(pa.table({"text": [1, 2, 3]}), root / "ints.parquet")
    (root / "corrupt.parquet").write_bytes(b"PAR1 not really parquet")
    (root / "docs").mkdir()
    (root / "docs" / "one.txt").write_text(good[29])
    (root / "docs" / "latin.txt").write_bytes(b"\xff\xfe broken")
    return root


@pytest.fixture(scope="module")
def curated(spark, dirty_corpus, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("curated") / "out")
    cfg = load_config(CurateConfig, None, {"ingest.max_record_bytes": 20_000, "spark.partitions": 3})
    report = run_curate(spark, [str(dirty_corpus / "*.jsonl*"), str(dirty_corpus / "*.parquet"),
                                str(dirty_corpus / "docs")], out, cfg)
    return out, report, cfg


def _read(path):
    return pq.read_table(path).to_pylist()


def test_report_sums_and_matches_outputs(curated):
    out, report, _ = curated
    with open(os.path.join(out, "report.json")) as handle:
        on_disk = StageReport.from_json(handle.read())
    assert on_disk.check().input == report.input
    documents, rejected, quarantine = (_read(os.path.join(out, d)) for d in ("documents", "rejected", "quarantine"))
    assert report.output == len(documents)
    assert sum(report.removed.values()) == len(rejected)
    assert sum(report.quarantined.values()) == len(quarantine)
    # 31 jsonl lines - 1 blank + 4 zst + (2 + truncation) + (gz records before the cut + truncation)
    # + 2 + 3 + 1 parquet rows + 2 txt files: every record is counted exactly once
    assert report.input == len(documents) + len(rejected) + len(quarantine)
    assert len({d["id"] for d in documents}) == len(documents)


def test_every_malformed_record_is_quarantined_with_its_reason(curated):
    out, report, _ = curated
    rows = _read(os.path.join(out, "quarantine"))
    where = {(os.path.basename(r["input_file"]), r["line"]): r["reason"] for r in rows}
    assert where[("main.jsonl", 21)] == "bad_json"
    assert where[("main.jsonl", 22)] == "invalid_utf8"
    assert where[("main.jsonl", 23)] == "missing_text"
    assert where[("main.jsonl", 24)] == "non_string_text"
    assert where[("main.jsonl", 25)] == "nul_bytes"
    assert where[("main.jsonl", 26)] == "oversized"
    assert where[("main.jsonl", 27)] == "bad_id"
    assert where[("main.jsonl", 28)] == "duplicate_id"
    assert where[("rows.parquet", 2)] == "missing_text"
    assert [where[("ints.parquet", i)] for i in (1, 2, 3)] == ["non_string_text"] * 3
    assert where[("corrupt.parquet", 0)] == "unreadable_file"
    assert where[("latin.txt", 1)] == "invalid_utf8"
    assert sorted(r for (f, _), r in where.items() if f.startswith("cut.")) == ["truncated_file"] * 2
    raw = {r["reason"]: r["raw"] for r in rows}
    assert raw["bad_json"] == "{this is not json\n"
    assert "\\xe9" in raw["invalid_utf8"] or "\\xff" in raw["invalid_utf8"]
    assert len(raw["oversized"]) == 1000  # truncated preview
    assert report.quarantined["truncated_file"] == 2


def test_rejections_carry_reason_and_all_scores(curated):
    out, report, cfg = curated
    rejected = {r["id"]: r for r in _read(os.path.join(out, "rejected"))}
    assert rejected["e1"]["reason"] == "empty"
    assert rejected["s1"]["reason"].startswith("gopher_")  # repetition caught first, in rule order
    assert rejected["s1"]["repeated_ngram_frac"] > 0.15
    assert report.removed["empty"] == 1
    # re-thresholding needs no re-scoring: the rule can be re-applied from the stored scores
    for row in rejected.values():
        if row["reason"] != "empty":
            scores = {k: row[k] for k in cfg.score_columns()}
            assert first_failing_rule(scores, cfg.thresholds) == row["reason"]


def test_kept_documents_keep_fields_and_pass_every_threshold(curated):
    out, _, cfg = curated
    documents = {d["id"]: d for d in _read(os.path.join(out, "documents"))}
    assert documents["g1"]["url"] == "https://example.org/1"
    assert json.loads(documents["g1"]["meta"]) == {"lang": "en"}
    assert documents["g1"]["source"] == "main.jsonl"
    assert "p1" in documents
    for doc in documents.values():
        assert first_failing_rule({k: doc[k] for k in cfg.score_columns()}, cfg.thresholds) is None


def test_rerun_is_byte_identical_and_leaves_no_staging(spark, curated, dirty_corpus, tmp_path):
    out, _, cfg = curated
    again = str(tmp_path / "again")
    run_curate(spark, [str(dirty_corpus / "*.jsonl*"), str(dirty_corpus / "*.parquet"),
                       str(dirty_corpus / "docs")], again, cfg, validate=False)
    for dataset in ("documents", "rejected", "quarantine"):
        first, second = sorted(os.listdir(os.path.join(out, dataset))), sorted(os.listdir(os.path.join(again, dataset)))
        assert first == second and all(name.startswith("part-") for name in first)
        for name in first:
            with open(os.path.join(out, dataset, name), "rb") as a, open(os.path.join(again, dataset, name), "rb") as b:
                assert a.read() == b.read(), f"{dataset}/{name} differs between runs"
    assert sorted(os.listdir(tmp_path)) == ["again"]  # the staging directory was renamed away


def test_report_check_fails_loudly_on_a_lost_record():
    with pytest.raises(ReportMismatch, match="10 records in but 9 accounted for"):
        StageReport("curate", input=10, output=5, removed={"x": 3}, quarantined={"y": 1}).check()


def test_spark_submit_runs_the_same_stage(dirty_corpus, tmp_path):
    out = tmp_path / "submitted"
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    result = subprocess.run(
        [SPARK_SUBMIT, "--master", "local[2]", os.path.join(REPO, "jobs", "curate.py"),
         str(dirty_corpus / "docs"), "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = StageReport.from_json((out / "report.json").read_text()).check()
    assert (report.input, report.output, report.quarantined) == (2, 1, {"invalid_utf8": 1})


def test_cli_reports_config_errors_clearly(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("ingest:\n  txt_field: body\n")
    result = subprocess.run([sys.executable, "-m", "jobs.cli", "curate", str(tmp_path), "--out", str(tmp_path / "o"),
                             "--config", str(bad)], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 2
    assert "unknown config key 'ingest.txt_field'" in result.stderr


def test_shuffle_partitions_a_stage_sets_win_on_an_existing_session(spark):
    assert fit_shuffle_partitions(spark, SparkConfig(), 1 << 40) == 4  # the session's explicit 4 stands
    try:
        assert fit_shuffle_partitions(spark, SparkConfig(conf={"spark.sql.shuffle.partitions": "3"}), 0) == 3
        assert spark.conf.get("spark.sql.shuffle.partitions") == "3"
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", "4")


def test_partitions_follow_the_input_only_with_a_floor_for_small_inputs():
    cfg = SparkConfig()
    assert partitions_for(cfg, 100) == 1 and partitions_for(cfg, 3 << 20) == 3  # a sample stays one file
    assert partitions_for(cfg, 104 << 20) == 16  # 104 MiB spreads over 16, not one 128 MiB partition
    assert partitions_for(cfg, 4 << 30) == 32 and partitions_for(SparkConfig(partitions=5), 4 << 30) == 5


def test_map_units_hands_each_task_its_contiguous_slice_in_order(spark):
    def read(units):
        from pyspark import TaskContext

        task = TaskContext.get().partitionId()
        for index, unit in units:
            yield pa.RecordBatch.from_pydict({"index": [index], "unit": [unit], "task": [task]})

    units = [f"u{i}" for i in range(7)]
    rows = map_units(spark, units, read, "index long, unit string, task long", slices=3).collect()
    assert [(r["index"], r["unit"]) for r in rows] == list(enumerate(units))
    assert [r["task"] for r in rows] == [0, 0, 1, 1, 2, 2, 2]  # spark.range's even, contiguous split
    assert map_units(spark, units, read, "index long, unit string, task long").rdd.getNumPartitions() == 7
    assert map_units(spark, [], read, "index long, unit string, task long").collect() == []


def test_routed_write_puts_every_row_in_exactly_one_output_and_counts_it(spark, tmp_path):
    rows = [(f"d{i}", ["keep", "drop", "hold"][i % 3], None if i % 3 == 0 else f"r{i % 2}") for i in range(30)]
    frame = spark.createDataFrame(rows, "id string, dest string, reason string").repartition(4, "id")
    schema = pa.schema([("id", pa.string()), ("reason", pa.string())])
    outputs = {dest: (str(tmp_path / dest), schema) for dest in ("keep", "drop", "hold", "never")}
    written = write_parquet_routed(frame, "dest", outputs, tally="reason")
    read = {dest: pq.read_table(str(tmp_path / dest)).to_pylist() for dest in outputs}
    assert sorted(r["id"] for rs in read.values() for r in rs) == sorted(r[0] for r in rows)
    for dest in outputs:
        assert sorted(r["id"] for r in read[dest]) == sorted(r[0] for r in rows if r[1] == dest)
        assert sum(f["rows"] for f in written[dest]["files"]) == len(read[dest])
        assert sum(written[dest]["counts"].values()) == len(read[dest])
    assert written["keep"]["counts"] == {None: 10} and written["drop"]["counts"] == {"r0": 5, "r1": 5}
    assert written["never"]["counts"] == {} and len(written["never"]["files"]) == 4  # every partition, schema kept
    assert not [p for p in tmp_path.rglob(".*attempt*")]
    stray = spark.createDataFrame([("x", "elsewhere", None), ("y", None, None)], "id string, dest string, reason string")
    with pytest.raises(Exception, match="rows routed to no output: dest in"):
        write_parquet_routed(stray, "dest", outputs, tally="reason")
