"""Tokenizer training and token shards: settings, packing, manifest, exact decoding, plain-Parquet readers."""

import hashlib
import json

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sentencepiece as spm

from dataprep.tokenize_stage import TokenizeConfig, run_tokenize
from dataprep.train_tokenizer import CHAT_TOKENS, TokenizerConfig, train_tokenizer
from schemas import StageReport
from schemas.sample import stdlib_docstrings

SEQ_LEN = 64


@pytest.fixture(scope="module")
def documents(tmp_path_factory):
    root = tmp_path_factory.mktemp("tok")
    texts = [d for d in stdlib_docstrings()[:150]]
    texts += ["Ünïcödé — naïve café, 12345 and an emoji 🦜.\n\n\tIndented  double  spaces  ", "x"]
    ids = [f"d{i:04d}" for i in range(len(texts))]
    pq.write_table(pa.table({"id": ids + ["empty", "nulltext"], "text": texts + ["", None]}), root / "docs.parquet")
    return root, dict(zip(ids, texts))


@pytest.fixture(scope="module")
def tokenizer(spark, documents, tmp_path_factory):
    root, _ = documents
    out = tmp_path_factory.mktemp("tokenizer") / "tok"
    meta = train_tokenizer(spark, str(root / "docs.parquet"), str(out), TokenizerConfig(vocab_size=800, sample_docs=120))
    return out, meta


@pytest.fixture(scope="module")
def shards(spark, documents, tokenizer, tmp_path_factory):
    root, _ = documents
    out = tmp_path_factory.mktemp("shards") / "out"
    cfg = TokenizeConfig(seq_len=SEQ_LEN, shard_bytes=20_000, row_group_rows=16)
    cfg.spark.partitions = 3
    report, manifest = run_tokenize(spark, str(root / "docs.parquet"), str(tokenizer[0]), str(out), cfg,
                                    allow_unvalidated=True)
    return out, report, manifest


def test_tokenizer_settings_and_metadata(tokenizer):
    out, meta = tokenizer
    data = (out / "tokenizer.model").read_bytes()
    assert meta["sha256"] == hashlib.sha256(data).hexdigest()
    assert json.loads((out / "tokenizer.json").read_text())["vocab_size"] == meta["vocab_size"] == 800
    assert meta["special_ids"] == {"pad": 0, "bos": 1, "eos": 2, "unk": 3}
    assert set(CHAT_TOKENS) <= set(meta["control_ids"])
    sp = spm.SentencePieceProcessor(model_proto=data)
    assert sp.unk_id() not in sp.encode("🦜 ∮ ꙮ")            # byte fallback: nothing is unknown
    assert [sp.id_to_piece(i) for i in sp.encode("2024")] == ["2", "0", "2", "4"]  # digits split
    assert sp.encode("<|user|>") != [meta["control_ids"]["<|user|>"]]  # control tokens never come from text


def test_report_accounts_for_every_document(shards):
    out, report, manifest = shards
    assert StageReport.from_json((out / "report.json").read_text()).check().input == 154
    assert report.removed == {"empty": 1} and report.quarantined == {"missing_text": 1}
    assert report.output == manifest["documents"] == 152


def test_manifest_matches_shards(shards):
    out, _, manifest = shards
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk == manifest and on_disk["validation"]["success"], on_disk["validation"]
    assert on_disk["input_validation"]["allowed_unvalidated"] is True  # the override is recorded
    assert on_disk["seq_len"] == SEQ_LEN and on_disk["token_dtype"] == "uint16"
    assert len(on_disk["shards"]) > 1
    for shard in on_disk["shards"]:
        data = (out / shard["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == shard["sha256"] and len(data) == shard["bytes"]
        assert pq.ParquetFile(out / shard["file"]).metadata.num_rows == shard["rows"]
    assert sum(s["rows"] for s in on_disk["shards"]) == on_disk["sequences"]


def test_shards_are_plain_parquet_for_polars_and_pyarrow(shards):
    out, _, manifest = shards
    frame = pl.read_parquet(out / "shards" / "*.parquet")
    assert frame.height == manifest["sequences"]
    assert frame["tokens"].list.len().unique().to_list() == [SEQ_LEN + 1]
    table = pq.read_table(out / "shards")
    assert table.schema.field("tokens").type == pa.list_(pa.uint16())
    assert int(pa.compute.sum(table["num_tokens"]).as_py()) >= manifest["tokens"]
    assert pq.ParquetFile(next((out / "shards").glob("*.parquet"))).metadata.row_group(0).num_rows <= 16


def test_decoding_shards_reproduces_every_document_exactly(shards, tokenizer, documents):
    out, _, _ = shards
    _, texts = documents
    sp = spm.SentencePieceProcessor(model_file=str(tokenizer[0] / "tokenizer.model"))
    rows = sorted(pq.read_table(out / "shards").to_pylist(), key=lambda r: (r["pack_partition"], r["pack_index"]))
    streams: dict[int, list[int]] = {}
    for row in rows:
        tokens = row["tokens"][: row["num_tokens"]]
        stream = streams.setdefault(row["pack_partition"], [])
        stream.extend(tokens if not stream else tokens[1:])  # rows overlap by one token
        starts = row["doc_starts"]
        assert all(row["tokens"][s - 1] == 2 for s in starts if s > 0)  # a document starts after </s>
    decoded = []
    for stream in streams.values():
        ids = np.array(stream)
        cuts = np.flatnonzero(ids == 2)
        assert cuts[-1] == len(ids) - 1
        decoded += [sp.decode(part.tolist()) for part in np.split(ids, cuts + 1)[:-1]]
    assert sorted(decoded) == sorted(texts.values())


def test_rerun_is_byte_identical_even_with_documents_encoded_in_pieces(spark, documents, tokenizer, shards, tmp_path):
    """Documents cut at newlines and spaces (max_encode_chars, for huge documents) keep their token ids."""
    out, _, manifest = shards
    root, texts = documents
    cfg = TokenizeConfig(seq_len=SEQ_LEN, shard_bytes=20_000, row_group_rows=16, max_encode_chars=120)
    assert sum(len(t) > cfg.max_encode_chars for t in texts.values()) > 100
    cfg.spark.partitions = 3
    _, again = run_tokenize(spark, str(root / "docs.parquet"), str(tokenizer[0]), str(tmp_path / "again"), cfg,
                            validate=False, allow_unvalidated=True)
    assert [s["sha256"] for s in again["shards"]] == [s["sha256"] for s in manifest["shards"]]
