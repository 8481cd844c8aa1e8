"""Great Expectations gates: planted violations fail and are named, clean datasets pass, the gate blocks."""

import gzip
import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dataprep.curate import CurateConfig, run_curate
from dataprep.dedup import DedupConfig, run_dedup
from dataprep.tokenize_stage import TokenizeConfig, run_tokenize
from dataprep.train_tokenizer import TokenizerConfig, train_tokenizer
from dataprep.validate import run_suites, validate_dataset
from jobs.validate import main as validate_main
from quality.expectations import documents_suite, preference_pairs_suite
from quality.gate import UnvalidatedDataset, require_validated
from quality.signals import Bounds
from schemas.sample import stdlib_docstrings


def _failed(result):
    return {(c["suite"], c["expectation"], c["column"]) for c in result.failed}


@pytest.fixture(scope="module")
def curated(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("val")
    docs = stdlib_docstrings()[:120]
    (root / "in.jsonl").write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(docs)))
    out = root / "curated"
    report = run_curate(spark, [str(root / "in.jsonl")], str(out), CurateConfig())
    return out, report


def test_clean_curate_output_passes_and_publishes_data_docs(curated):
    out, report = curated
    assert report.extra["validation"]["success"], report.extra["validation"]["table"]
    record = json.loads((out / "report.json").read_text())["validation"]
    assert record["success"] and record["expectations"] > 40 and record["data_docs"] == "data_docs/index.html"
    assert (out / "data_docs" / "index.html").exists()
    pages = list((out / "data_docs" / "validations").rglob("*.html"))
    assert {p.name.split("-", 1)[1] for p in pages} >= {"documents.html", "removal_rates.html"}
    assert require_validated(str(out))["success"]


def test_duplicate_id_fails_and_is_named(spark, curated, tmp_path):
    out, _ = curated
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    first = pq.read_table(bad / "documents").slice(0, 1)
    pq.write_table(first, bad / "documents" / "part-99999.parquet")
    result = validate_dataset(spark, str(bad))
    assert not result.success
    assert ("documents", "expect_column_values_to_be_unique", "id") in _failed(result)
    examples = list((bad / "data_docs" / "validations" / "curate" / "documents" / "unexpected").rglob("*.html"))
    assert examples and f">{first.column('id')[0].as_py()}<" in examples[0].read_text()  # the failing check's values
    with pytest.raises(UnvalidatedDataset, match="validation failed.*expect_column_values_to_be_unique"):
        run_dedup(spark, str(bad), str(tmp_path / "dedup"), DedupConfig())


def test_an_empty_text_fails_on_its_length(spark, curated, tmp_path):
    out, _ = curated
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    documents = pq.read_table(bad / "documents")
    row = documents.slice(0, 1).to_pylist()[0] | {"id": "empty-text", "text": ""}
    pq.write_table(pa.Table.from_pylist([row], schema=documents.schema), bad / "documents" / "part-99999.parquet")
    result = validate_dataset(spark, str(bad))
    assert ("documents", "expect_column_values_to_be_between", "text_chars") in _failed(result)


def test_removal_rate_out_of_bounds_fails(spark, curated, tmp_path):
    out, report = curated
    bad = tmp_path / "strict"
    shutil.copytree(out, bad)
    record = json.loads((bad / "report.json").read_text())
    record["config"]["removal_rate_bounds"] = {"*": {"min": None, "max": 0.001}}
    (bad / "report.json").write_text(json.dumps(record))
    result = validate_dataset(spark, str(bad))
    names = {(c["suite"], c["column"]) for c in result.failed}
    assert {("removal_rates", f"rate__{reason}") for reason in report.removed} & names


def test_gate_blocks_unvalidated_input_and_records_the_override(spark, curated, tmp_path):
    out, _ = curated
    raw = tmp_path / "raw.parquet"
    pq.write_table(pq.read_table(out / "documents"), raw)
    with pytest.raises(UnvalidatedDataset, match="no report.json or manifest.json"):
        run_dedup(spark, str(raw), str(tmp_path / "d1"), DedupConfig())
    report = run_dedup(spark, str(raw), str(tmp_path / "d2"), DedupConfig(), allow_unvalidated=True)
    assert report.extra["input_validation"]["allowed_unvalidated"] is True
    chained = run_dedup(spark, str(out), str(tmp_path / "d3"), DedupConfig())  # a validated input passes the gate
    assert chained.extra["input_validation"]["success"] and chained.extra["validation"]["success"]


@pytest.fixture(scope="module")
def tokens(spark, curated, tmp_path_factory):
    out, _ = curated
    root = tmp_path_factory.mktemp("valtok")
    train_tokenizer(spark, str(out / "documents"), str(root / "tok"), TokenizerConfig(vocab_size=400, sample_docs=80))
    report, manifest = run_tokenize(spark, str(out), str(root / "tok"), str(root / "tokens"),
                                    TokenizeConfig(seq_len=32, shard_bytes=4000))
    assert report.extra["validation"]["success"], report.extra["validation"]["table"]
    return root / "tokens", manifest


def _rewrite_first_shard(tokens_dir, tmp_path, change):
    bad = tmp_path / "tokens"
    shutil.copytree(tokens_dir, bad)
    manifest = json.loads((bad / "manifest.json").read_text())
    path = bad / manifest["shards"][0]["file"]
    rows = pq.read_table(path).to_pylist()
    change(rows)
    pq.write_table(pa.Table.from_pylist(rows, schema=pq.read_schema(path)), path)
    return bad


def test_out_of_vocabulary_token_fails(spark, tokens, tmp_path):
    tokens_dir, manifest = tokens

    def plant(rows):
        rows[0]["tokens"][5] = manifest["tokenizer"]["vocab_size"]

    result = validate_dataset(spark, str(_rewrite_first_shard(tokens_dir, tmp_path, plant)))
    failed = _failed(result)
    assert ("token_rows", "expect_column_values_to_be_between", "max_token") in failed
    assert ("token_shards", "expect_column_values_to_be_in_set", "sha256_match") in failed


def test_short_row_fails(spark, tokens, tmp_path):
    tokens_dir, _ = tokens
    result = validate_dataset(spark, str(_rewrite_first_shard(tokens_dir, tmp_path, lambda rows: rows[0]["tokens"].pop())))
    assert ("token_rows", "expect_column_values_to_be_between", "row_length") in _failed(result)


def test_manifest_sha256_mismatch_fails(spark, tokens, tmp_path):
    tokens_dir, _ = tokens
    bad = tmp_path / "tokens"
    shutil.copytree(tokens_dir, bad)
    manifest = json.loads((bad / "manifest.json").read_text())
    manifest["shards"][0]["sha256"] = "0" * 64
    (bad / "manifest.json").write_text(json.dumps(manifest))
    result = validate_dataset(spark, str(bad))
    assert _failed(result) == {("token_shards", "expect_column_values_to_be_in_set", "sha256_match")}
    with pytest.raises(UnvalidatedDataset):
        require_validated(str(bad))


def test_preference_pairs_suite(spark, tmp_path):
    rows = [("p1", "Say hi", "Hi!", "Go away."), ("p1", "Dup id", "a", "b"), ("p3", "", "same", "same")]
    pairs = spark.createDataFrame(rows, "pair_id string, prompt string, chosen string, rejected string")
    checked = pairs.withColumn("chosen_differs", pairs.chosen != pairs.rejected)
    result = run_suites({"preference_pairs": (checked, preference_pairs_suite())}, str(tmp_path / "docs"), "pairs")
    assert _failed(result) == {
        ("preference_pairs", "expect_column_values_to_be_unique", "pair_id"),
        ("preference_pairs", "expect_column_value_lengths_to_be_between", "prompt"),
        ("preference_pairs", "expect_column_values_to_be_in_set", "chosen_differs"),
    }
    clean = checked.where("pair_id = 'p1' and prompt = 'Say hi'")
    assert run_suites({"preference_pairs": (clean, preference_pairs_suite())}, str(tmp_path / "d2"), "pairs").success


def test_driver_and_spark_validation_agree(spark, tmp_path):
    """A small frame is validated on the driver in pandas, a large one on Spark: the same checks fail with
    the same counts either way, a NaN score included (pandas calls NaN null, which a range check skips)."""
    rows = [("a", 10, 0.1, 0.5), ("a", 12, float("nan"), 0.2), (None, None, 0.3, None), ("d", 0, 0.9, 1.5),
            ("e", 7, 0.2, 0.4)]
    frame = spark.createDataFrame(rows, "id string, text_chars long, stop double, frac double")
    results = {rows: run_suites({"documents": (frame, documents_suite({"stop": (0.0, 8.0), "frac": (0.0, 1.0)},
                                                                      {"stop": Bounds(max=0.8)}))},
                                str(tmp_path / f"d{rows}"), "curate", driver_rows=rows)
               for rows in (100, 0)}
    counts = {rows: {(c["expectation"], c["column"], c["unexpected_count"]) for c in result.failed}
              for rows, result in results.items()}
    assert counts[100] == counts[0] == {
        ("expect_column_values_to_not_be_null", "id", 1), ("expect_column_values_to_be_unique", "id", 2),
        ("expect_column_values_to_not_be_null", "text_chars", 1),
        ("expect_column_values_to_be_between", "text_chars", 1),
        ("expect_column_values_to_be_between", "stop", 2),  # 0.9 and NaN
        ("expect_column_values_to_be_between", "frac", 1)}
    assert {c["engine"] for c in results[100].checks} == {"driver"} and {c["engine"] for c in results[0].checks} == {"spark"}


def test_validate_cli_exit_codes(curated, tokens, tmp_path, capsys):
    out, _ = curated
    assert validate_main([str(out)]) == 0
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    pq.write_table(pq.read_table(bad / "documents").slice(0, 1), bad / "documents" / "part-99999.parquet")
    assert validate_main([str(bad)]) == 1
    printed = capsys.readouterr().out
    assert "FAILED" in printed and "expect_column_values_to_be_unique" in printed
    assert validate_main([str(tmp_path / "nothing")]) == 2


def test_validate_a_dataset_clover_did_not_write(spark, curated, tmp_path, capsys):
    """`clover dedup raw/` says to validate raw/ first; the command it suggests works, and the gate then passes."""
    from dataprep.validate import check_dataset

    out, _ = curated
    raw = tmp_path / "raw"
    raw.mkdir()
    pq.write_table(pq.read_table(out / "documents").select(["id", "text"]), raw / "part-0.parquet")
    with pytest.raises(UnvalidatedDataset, match=f"Run `clover validate {raw} --kind documents` first"):
        require_validated(str(raw))
    assert validate_main([str(raw)]) == 2  # checked before Spark: the kind is unknown
    assert f"run `clover validate {raw} --kind documents`" in capsys.readouterr().err
    assert validate_main([str(raw), "--kind", "documents"]) == 0
    record = json.loads((raw / "validation.json").read_text())
    assert record["kind"] == "documents" and record["validation"]["success"] and record["files"] == {
        "part-0.parquet": (raw / "part-0.parquet").stat().st_size}
    assert require_validated(str(raw))["success"] and validate_main([str(raw)]) == 0  # the kind is now recorded
    pq.write_table(pq.read_table(raw / "part-0.parquet").slice(0, 1), raw / "part-1.parquet")  # a duplicate id
    assert validate_main([str(raw)]) == 1
    with pytest.raises(UnvalidatedDataset, match="validation failed.*expect_column_values_to_be_unique"):
        require_validated(str(raw))
    with pytest.raises(ValueError, match="is a Clover curate dataset, not pairs"):
        check_dataset(str(out), "pairs")
    with pytest.raises(ValueError, match="token shards are read through the manifest.json"):
        check_dataset(str(raw), "tokens")


def test_validate_a_single_file(curated, tmp_path, capsys):
    """A single Parquet or JSONL file validates where it lies; its record and Data Docs go beside it."""
    out, _ = curated
    single = tmp_path / "docs.parquet"
    pq.write_table(pq.read_table(out / "documents").select(["id", "text"]), single)
    assert validate_main([str(single)]) == 2  # checked before Spark: the kind is unknown
    assert f"run `clover validate {single} --kind documents`" in capsys.readouterr().err
    assert validate_main([str(single), "--kind", "documents"]) == 0
    record = json.loads((tmp_path / "docs.parquet.validation.json").read_text())
    assert record["kind"] == "documents" and record["validation"]["success"]
    assert record["files"] == {"docs.parquet": single.stat().st_size}
    assert record["validation"]["data_docs"] == "docs.parquet.data_docs/index.html"
    assert (tmp_path / "docs.parquet.data_docs" / "index.html").exists()
    assert validate_main([str(single)]) == 0  # the kind is now recorded beside it
    assert require_validated(str(single))["record"] == f"{single}.validation.json"  # the gate reads it too ...
    with single.open("ab") as handle:
        handle.write(b"appended")
    with pytest.raises(UnvalidatedDataset, match="changed since it was validated"):  # ... while the file is unchanged
        require_validated(str(single))

    pairs = tmp_path / "pairs.jsonl.gz"
    lines = [json.dumps({"pair_id": i, "prompt": f"question {i}", "chosen": "yes", "rejected": "no"}) for i in range(20)]
    pairs.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    assert validate_main([str(pairs), "--kind", "pairs"]) == 0
    assert json.loads((tmp_path / "pairs.jsonl.gz.validation.json").read_text())["format"] == "jsonl"
    pairs.write_bytes(gzip.compress(("\n".join([*lines, lines[3], "not json", '{"pair_id": "x"}']) + "\n").encode()))
    capsys.readouterr()
    assert validate_main([str(pairs)]) == 1
    printed = capsys.readouterr().out
    assert "expect_column_values_to_be_unique" in printed and "expect_column_values_to_not_be_null" in printed
    assert not json.loads((tmp_path / "pairs.jsonl.gz.validation.json").read_text())["validation"]["success"]


@pytest.mark.parametrize("fault, message", [
    ("no_text", "a documents dataset needs columns id, text; missing text"),
    ("zero_bytes", "not a readable Parquet file"),
    ("missing", "no such file or directory"),
    ("file_no_text", "a documents dataset needs columns id, text; missing text"),
    ("file_zero_bytes", "not a readable Parquet file"),
    ("jsonl_no_text", "a documents file needs fields id, text; line 2 misses text .has id, body."),
    ("jsonl_not_object", "line 1 is not a JSON object"),
    ("jsonl_bad_json", "line 1 is not JSON"),
    ("jsonl_empty", "no records"),
    ("text_file", "for text run `clover curate"),
    ("record_file", "is the validation record of a dataset, not a dataset: run `clover validate"),
])
def test_foreign_datasets_fail_before_spark_with_a_clear_error(tmp_path, fault, message):
    from dataprep.validate import check_dataset

    raw = tmp_path / "raw"
    raw.mkdir()
    pq.write_table(pa.table({"id": ["a"], "text": ["hello"]}), raw / "good.parquet")
    files = {"file_no_text": "one.parquet", "file_zero_bytes": "one.parquet", "jsonl_no_text": "one.jsonl",
             "jsonl_not_object": "one.jsonl", "jsonl_bad_json": "one.jsonl", "jsonl_empty": "one.jsonl",
             "text_file": "one.txt", "record_file": "good.parquet.validation.json"}
    one = tmp_path / files.get(fault, "none")
    if fault == "no_text":
        pq.write_table(pa.table({"id": ["b"], "body": ["x"]}), raw / "other.parquet")
    elif fault == "zero_bytes":
        (raw / "empty.parquet").write_bytes(b"")
    elif fault == "file_no_text":
        pq.write_table(pa.table({"id": ["b"], "body": ["x"]}), one)
    elif fault in ("file_zero_bytes", "jsonl_empty"):
        one.write_bytes(b"" if fault == "file_zero_bytes" else b"\n \n")
    elif fault.startswith("jsonl"):
        one.write_text({"jsonl_no_text": '\n{"id": "b", "body": "x"}\n', "jsonl_not_object": '["a"]\n',
                        "jsonl_bad_json": '{"id": \n'}[fault])
    elif fault in files:
        one.write_text("{}")
    target = {"missing": tmp_path / "nope"}.get(fault, one if fault in files else raw)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        check_dataset(str(target), "documents")


def test_a_single_file_is_checked_before_spark(tmp_path):
    from dataprep.validate import check_dataset

    one = tmp_path / "one.jsonl"
    one.write_text('{"id": 1, "text": "hello"}\n')
    with pytest.raises(FileNotFoundError, match=f"kind is unknown: run `clover validate {one} --kind documents`"):
        check_dataset(str(one))
    target = check_dataset(str(one), "documents")
    assert (target.single_file, target.record_uri, target.docs_dir) == (
        True, f"{one}.validation.json", f"{one}.data_docs")
    assert target.record == {"kind": "documents", "written_by": "clover validate --kind", "format": "jsonl",
                             "files": {"one.jsonl": one.stat().st_size}}
    with pytest.raises(ValueError, match="token shards are read through the manifest.json"):
        check_dataset(str(one), "tokens")


def test_documents_suite_checks_each_score_once_within_its_range_and_rule():
    from math import inf

    from quality.expectations import documents_suite
    from quality.signals import Bounds

    suite = documents_suite({"a": (0.0, 1.0), "b": (0.0, inf)}, {"a": Bounds(max=0.3), "c": Bounds(min=2)})
    between = [(e.column, e.min_value, e.max_value) for e in suite if type(e).__name__ == "ExpectColumnValuesToBeBetween"]
    assert between == [("text_chars", 1, None), ("a", 0.0, 0.3), ("b", 0.0, None), ("c", 2, None)]
