"""Fault injection: unsafe loads, escaping paths, corrupt inputs and shards, torn checkpoints, fuzzed JSONL.

Each fault must end in a quarantine row with a reason or a fast, clear error; nothing is lost and
nothing hangs. Cases too slow for CI (a 200 MB line, longer fuzzing campaigns) are in benchmarks/faults.py.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dataprep.pairs import PAIRS_UNWRAP_META, PairsConfig, _PairParser
from dataprep.tokenize_stage import TokenizeConfig, encode_documents, split_text
from dataprep.train_tokenizer import CHAT_TOKENS, RESERVED_TOKENS, TokenizerConfig, train_model
from quality.gate import UnsafeManifestPath
from schemas.ingest import RAW, IngestConfig, parquet_units, read_unit
from schemas.sample import stdlib_docstrings
from tests.token_shards import write_token_shards
from training.trainer.checkpoint import complete_checkpoints
from training.trainer.data import CorruptShard, DataConfig, TokenStream
from training.trainer.gate import GateConfig, GatedStream
from training.trainer.pretrain import TrainConfig, train

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("dataprep", "jobs", "quality", "schemas", "training", "benchmarks")


def _package_sources() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (REPO / package).rglob("*.py"))


def test_no_unsafe_deserialization_in_the_package():
    """torch.load only with weights_only=True; no pickle, no yaml.load, no np.load(allow_pickle=True)."""
    unsafe = []
    for path in _package_sources():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            owner = node.func.value.id if isinstance(node.func.value, ast.Name) else ""
            call = f"{owner}.{node.func.attr}"
            keywords = {k.arg: getattr(k.value, "value", None) for k in node.keywords}
            if (call == "torch.load" and keywords.get("weights_only") is not True
                    or owner in ("pickle", "cPickle", "dill", "marshal") and node.func.attr.startswith("load")
                    or call == "yaml.load" or call in ("np.load", "numpy.load") and keywords.get("allow_pickle")):
                unsafe.append(f"{path.relative_to(REPO)}:{node.lineno}: {call}")
        text = path.read_text()
        for needle in ("weights_only" + "=False", "pickle" + ".load"):
            unsafe += [f"{path.relative_to(REPO)}: {needle}"] if needle in text else []
    assert not unsafe, "unsafe deserialization:\n" + "\n".join(unsafe)
    assert len(_package_sources()) > 50  # the scan saw the package


# --- token shards: paths that escape the dataset, corrupt bytes --------------------------------------------------

def _manifest(root: Path) -> dict:
    return json.loads((root / "manifest.json").read_text())


def _set_manifest(root: Path, manifest: dict) -> None:
    (root / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("name, why", [("../outside.parquet", "goes up with '..'"), ("shards/../../outside.parquet", "goes up with '..'"),
                                       ("/etc/passwd", "is absolute"), ("s3://other-bucket/x.parquet", "is absolute"),
                                       ("", "is empty")])
def test_manifest_paths_cannot_escape_the_dataset(tmp_path, name, why):
    data = write_token_shards(tmp_path / "tok")
    shutil.copy(data / "shards" / "part-00000.parquet", tmp_path / "outside.parquet")  # readable, were it allowed
    manifest = _manifest(data)
    manifest["shards"][0]["file"] = name
    _set_manifest(data, manifest)
    with pytest.raises(UnsafeManifestPath, match=re.escape(why) + "; a manifest may only name files inside its dataset"):
        TokenStream(str(data), 2, DataConfig())


def _flip_byte(path: Path, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x5A
    path.write_bytes(bytes(raw))


def test_a_flipped_byte_in_a_validated_shard_stops_the_loader_naming_the_shard(tmp_path):
    data = write_token_shards(tmp_path / "tok", rows=64)
    shard = data / "shards" / "part-00001.parquet"
    _flip_byte(shard, shard.stat().st_size // 3)  # inside a data page: the footer still parses
    stream = TokenStream(str(data), 2, DataConfig())
    with pytest.raises(CorruptShard, match=r"part-00001.parquet: sha256 .* differs from the manifest's"):
        for index in range(stream.per_epoch):
            stream.micro_batch(index)
    stream.close()
    with pytest.raises(CorruptShard, match="part-00001.parquet"):
        train(_tiny(4), str(data), str(tmp_path / "run"))


def test_a_truncated_shard_footer_is_refused_at_open(tmp_path):
    data = write_token_shards(tmp_path / "tok")
    shard = data / "shards" / "part-00000.parquet"
    shard.write_bytes(shard.read_bytes()[:-9])
    with pytest.raises(CorruptShard, match="part-00000.parquet: not a readable Parquet shard"):
        TokenStream(str(data), 2, DataConfig())


def test_old_manifests_without_sha256_stay_readable(tmp_path):
    data = write_token_shards(tmp_path / "tok")
    manifest = _manifest(data)
    for entry in manifest["shards"]:
        entry.pop("sha256", None)
    _set_manifest(data, manifest)
    stream = TokenStream(str(data), 2, DataConfig())
    assert stream.micro_batch(0).tokens.shape == (2, 65)
    stream.close()


def test_a_corrupt_shard_on_another_rank_stops_this_one_too(tmp_path):
    """The gate's all-gather carries a -1 from the rank that hit the corrupt shard: nobody waits forever."""
    data = write_token_shards(tmp_path / "tok")
    stream = TokenStream(str(data), 2, DataConfig())
    gated = GatedStream(stream, GateConfig(), 0, 2, lambda values: [values, [-1.0]])
    with pytest.raises(CorruptShard, match="rank 1 found a corrupt shard"):
        gated.next()
    stream.close()


def _tiny(steps: int) -> TrainConfig:
    cfg = TrainConfig(model="clover-tiny", micro_batch=2, grad_accum=2, max_steps=steps, tensorboard=False)
    cfg.checkpoint.every = 2
    cfg.schedule.warmup_steps, cfg.schedule.max_lr, cfg.schedule.total_steps = 2, 3e-3, 20
    return cfg


# --- checkpoints: every file of the newest one truncated in turn ------------------------------------------------

def test_a_truncated_checkpoint_file_falls_back_to_the_previous_checkpoint(tmp_path):
    data = str(write_token_shards(tmp_path / "tok", repetitive_rows=(3, 40)))
    cfg = _tiny(4)
    train(cfg, data, str(tmp_path / "whole"))
    whole = _losses(tmp_path / "whole")
    newest = tmp_path / "whole" / "checkpoints" / "step-00000004"
    names = sorted(p.name for p in newest.iterdir())
    assert {"COMPLETE", "trainer.json", ".metadata", "rng-rank00000.pt"} <= set(names)
    for name in names:
        run = tmp_path / f"cut-{name.strip('.')}"
        shutil.copytree(tmp_path / "whole", run)
        target = run / "checkpoints" / "step-00000004" / name
        target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
        with pytest.warns(UserWarning, match="skipping checkpoint .*step-00000004"):
            train(cfg, data, str(run))  # resumes from step 2 and trains steps 3 and 4 again
        assert _losses(run) == whole, name  # bitwise: the same floats as the uninterrupted run
        assert [s for s, _ in complete_checkpoints(run / "checkpoints")] == [4, 2]  # step 4 trained and written again


def _losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


# --- corrupt inputs to curate: each record quarantined with a reason, or kept; nothing raises, nothing lost -------

def _read(path: Path, cfg: IngestConfig | None = None, unwrap_meta: bool = True) -> list[dict]:
    return [row for batch in read_unit(str(path), 0, cfg or IngestConfig(), unwrap_meta) for row in batch.to_pylist()]


def _outcome(rows: list[dict]) -> list[tuple]:
    return [(row["id"], row["line"], row["error"]) for row in rows]


def _parquet_with_flipped_page(path: Path) -> None:
    pq.write_table(pa.table({"id": [f"p{i}" for i in range(200)], "text": [f"text number {i} " * 20 for i in range(200)]}),
                   path, write_page_checksum=True, compression="none", use_dictionary=False)
    meta = pq.ParquetFile(path).metadata.row_group(0).column(1)
    _flip_byte(path, meta.data_page_offset + meta.total_compressed_size // 2)  # inside the text column's page:
    # uncompressed, so only the page's CRC can tell (pyarrow reads the garbled text silently without it)


CORRUPT_INPUTS = {
    "nested.jsonl": ('{"id": "a", "text": "x", "meta": ' + "[" * 100_000 + "]" * 100_000 + '}\n'
                     '{"id": "b", "text": "ok"}\n').encode(),
    "surrogates.jsonl": b'{"id": "s", "text": "lone \\ud800"}\n{"id": "p", "text": "pair \\ud83d\\ude00"}\n'
                        b'{"id": "u", "text": "x", "url": "\\udfff"}\n',
    "bom.jsonl": b'\xef\xbb\xbf{"id": "bom", "text": "hello"}\n',
    "crlf.jsonl": b'{"id": "c1", "text": "one"}\r\n{"id": "c2", "text": "two"}\r\n',
    "cr.jsonl": b'{"id": "r1", "text": "one"}\r{"id": "r2", "text": "two"}\r',
    "zero.jsonl": b"",
}
EXPECTED = {
    "nested.jsonl": [(None, 1, "nested_too_deep"), ("b", 2, None)],
    "surrogates.jsonl": [(None, 1, "invalid_surrogate"), ("p", 2, None), (None, 3, "invalid_surrogate")],
    "bom.jsonl": [("bom", 1, None)],
    "crlf.jsonl": [("c1", 1, None), ("c2", 2, None)],
    "cr.jsonl": [("r1", 1, None), ("r2", 2, None)],
    "zero.jsonl": [],
}


@pytest.mark.parametrize("name", sorted(CORRUPT_INPUTS))
def test_corrupt_jsonl_inputs_are_read_or_quarantined_with_a_reason(tmp_path, name):
    (tmp_path / name).write_bytes(CORRUPT_INPUTS[name])
    assert _outcome(_read(tmp_path / name)) == EXPECTED[name]


def test_corrupt_compressed_and_parquet_inputs(tmp_path):
    (tmp_path / "tail.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(b'{"id": "z", "text": "zz"}\n')
                                              + b"garbage after the last frame")
    assert _outcome(_read(tmp_path / "tail.jsonl.zst")) == [("z", 1, None), (None, 2, "truncated_file")]
    _parquet_with_flipped_page(tmp_path / "flipped.parquet")
    assert _outcome(_read(tmp_path / "flipped.parquet")) == [(None, 0, "unreadable_file")]
    pq.write_table(pa.table({"id": ["t"], "text": ["fine"]}), tmp_path / "cut.parquet")
    (tmp_path / "cut.parquet").write_bytes((tmp_path / "cut.parquet").read_bytes()[:-6])  # a truncated footer
    (tmp_path / "zero.parquet").write_bytes(b"")
    for name in ("cut.parquet", "zero.parquet"):
        assert parquet_units(str(tmp_path / name)) == [0]
        assert _outcome(_read(tmp_path / name)) == [(None, 0, "unreadable_file")]


def test_a_huge_jsonl_line_is_bounded(tmp_path):
    """The reader never holds more than the cap of one line (the 200 MB case: benchmarks/faults.py)."""
    cfg = IngestConfig(max_record_bytes=1 << 20)
    huge = b'{"id": "big", "text": "' + b"x" * (8 << 20) + b'"}\n'
    (tmp_path / "huge.jsonl").write_bytes(b'{"id": "a", "text": "before"}\n' + huge + b'{"id": "c", "text": "after"}\n')
    rows = _read(tmp_path / "huge.jsonl", cfg)
    assert _outcome(rows) == [("a", 1, None), (None, 2, "oversized"), ("c", 3, None)]
    assert len(rows[1]["raw"]) == cfg.raw_preview_chars


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                          max_size=4), max_leaves=12)
RECORDS = st.fixed_dictionaries({}, optional={"id": JSON_VALUES, "text": st.text() | JSON_VALUES,
                                              "url": JSON_VALUES, "meta": JSON_VALUES}) | JSON_VALUES
READ_REASONS = {"bad_json", "invalid_utf8", "invalid_surrogate", "nested_too_deep", "bad_id", "missing_text",
                "non_string_text", "nul_bytes", "oversized", "truncated_file"}


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=st.lists(RECORDS, max_size=8))
def test_fuzzed_json_values_each_become_exactly_one_row(tmp_path, records):
    path = tmp_path / "fuzz.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    rows = _read(path)
    assert [r["line"] for r in rows] == list(range(1, len(records) + 1))
    for row in rows:
        assert (row["text"] is None) == (row["error"] is not None) and row["error"] in READ_REASONS | {None}


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=400))
def test_fuzzed_bytes_never_raise_and_every_row_is_kept_or_has_a_reason(tmp_path, data):
    path = tmp_path / "fuzz.jsonl"
    path.write_bytes(data)
    rows = _read(path)
    lines = [r["line"] for r in rows]
    assert lines == sorted(set(lines)) and len(rows) <= data.count(b"\n") + data.count(b"\r") + 1
    for row in rows:
        assert (row["text"] is None) == (row["error"] is not None) and row["error"] in READ_REASONS | {None}


def test_curate_on_every_fault_and_fuzzed_lines_sums_and_loses_nothing(spark, tmp_path):
    """One Spark job over all the corrupt files plus 300 seeded random lines: each record lands once."""
    import random

    from dataprep.curate import CurateConfig, run_curate

    raw = tmp_path / "raw"
    raw.mkdir()
    for name, data in CORRUPT_INPUTS.items():
        (raw / name).write_bytes(data)
    (raw / "tail.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(b'{"id": "z", "text": "zz"}\n') + b"junk")
    _parquet_with_flipped_page(raw / "flipped.parquet")
    (raw / "zero.parquet").write_bytes(b"")
    rng = random.Random(15)
    lines = [bytes(rng.randrange(256) for _ in range(rng.randrange(60))).replace(b"\n", b"") if rng.random() < 0.3
             else json.dumps({"id": f"f{i}", "text": " ".join(rng.choice(["lorem", "ipsum", "\ud83d\ude00", "\x00", "\u00e9"])
                                                              for _ in range(rng.randrange(40)))}).encode()
             for i in range(300)]
    (raw / "fuzz.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    report = run_curate(spark, [str(raw)], str(tmp_path / "out"), CurateConfig(), validate=False)
    report.check()
    landed = {name: pq.read_table(tmp_path / "out" / name).num_rows for name in ("documents", "rejected", "quarantine")}
    assert sum(landed.values()) == report.input and landed["quarantine"] == sum(report.quarantined.values())
    assert {"nested_too_deep", "invalid_surrogate", "truncated_file", "unreadable_file"} <= set(report.quarantined)
    ids = pq.read_table(tmp_path / "out" / "documents").column("id").to_pylist()
    assert {"b", "p", "bom", "c1", "c2", "r1", "r2", "z"} <= set(ids) | set(
        pq.read_table(tmp_path / "out" / "rejected").column("id").to_pylist())


# --- a 20-million-character document: encoded in bounded pieces, the same ids, decoded back exactly -------------

@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    """A Clover tokenizer (train_model, Spark-free) on docstring lines."""
    lines = [line for doc in stdlib_docstrings()[:300] for line in doc.split("\n") if line.strip()]
    path = tmp_path_factory.mktemp("spm") / "tokenizer.model"
    path.write_bytes(train_model(lines, TokenizerConfig(vocab_size=800, threads=1)))
    return path


@pytest.fixture(scope="module")
def processor(model_file):
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_file=str(model_file))


def test_documents_split_at_newlines_and_spaces_encode_to_the_same_ids(processor):
    texts = stdlib_docstrings()[:200] + ["Ünïcödé  café\n\n\tdouble  spaces   and 12345 🦜" * 20]
    assert encode_documents(processor, texts, 80) == processor.encode(texts)
    assert encode_documents(processor, texts, 1 << 20) == processor.encode(texts)  # short ones: one call, as before
    pieces = split_text("word " * 50 + "x" * 300 + "\nend", 100)
    assert "".join(pieces) == "word " * 50 + "x" * 300 + "\nend" and max(map(len, pieces)) <= 100
    assert pieces[0] == ("word " * 20)[:-1]  # before the last run of spaces, never inside a word


def test_a_20_million_character_document_is_encoded_in_bounded_pieces(processor):
    """Whole, SentencePiece holds 20M characters at once (about 10 s and 840 MB more RSS on the dev VM; split:
    about 6 s and 350 MB, mostly the ids themselves). The document stays one document and decodes exactly."""
    limit = TokenizeConfig().max_encode_chars
    seen = []

    class Recording:  # the real processor; records the longest text it is given
        def encode(self, texts, num_threads):
            seen.append(max(map(len, texts)))
            return processor.encode(texts, num_threads=num_threads)

    words = " ".join(stdlib_docstrings()[:50])
    text = ((words * (12_000_000 // len(words) + 1))[:12_000_000] + "x" * 3_000_000  # 3M without a boundary
            + ("line\n" * 1_000_000))
    text += " " * (20_000_000 - len(text))
    started = time.monotonic()
    (ids,) = encode_documents(Recording(), [text], limit)
    assert time.monotonic() - started < 120 and max(seen) <= limit and len(text) == 20_000_000
    assert processor.decode(ids) == text


# --- prep-pairs over fuzzed JSONL: every line lands in exactly one of pairs, removed or quarantine -------------

PAIR_FIELDS = ("pair_id", "prompt", "chosen", "rejected", "source", "meta")
PAIR_RECORDS = st.fixed_dictionaries({}, optional={k: st.text(max_size=30) | JSON_VALUES for k in PAIR_FIELDS}) | JSON_VALUES
PAIR_REASONS = READ_REASONS - {"missing_text", "non_string_text"} | {"duplicate_id", "nul_bytes"} | {
    f"{why}_{name}" for why in ("missing", "non_string", "empty") for name in ("prompt", "chosen", "rejected")}


def _prep_pairs_rows(path: Path, model_file: Path, cfg: PairsConfig) -> list[dict]:
    """The stage's per-executor work on one file: read, order by pair id as the shuffle does, parse."""
    from sentencepiece import SentencePieceProcessor

    sp = SentencePieceProcessor(model_file=str(model_file))
    ids = {"bos": sp.bos_id(), **{piece: sp.piece_to_id(piece) for piece in CHAT_TOKENS + RESERVED_TOKENS}}
    rows = sorted(_read(path, cfg.ingest, unwrap_meta=PAIRS_UNWRAP_META), key=lambda r: (r["id"] or f"{r['input_file']}:{r['line']}", r["line"]))
    batch = pa.RecordBatch.from_pylist(rows, schema=RAW)
    return [row for out in _PairParser(cfg, str(model_file), ids)(iter([batch])) for row in out.to_pylist()]


def _assert_each_row_lands_once(rows: list[dict], lines: list[int]) -> None:
    assert sorted(r["line"] for r in rows) == lines
    for row in rows:
        assert row["dest"] in ("pairs", "removed", "quarantine")
        assert (row["reason"] is None) == (row["dest"] == "pairs"), row
        if row["dest"] == "quarantine":
            assert row["reason"] in PAIR_REASONS, row["reason"]
        else:
            assert all(isinstance(row[k], str) and row[k] for k in ("pair_id", "prompt", "chosen", "rejected"))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=st.lists(PAIR_RECORDS, min_size=1, max_size=6))
@example(records=[{"prompt": "p", "meta": "0"}, {"prompt": "q", "meta": "not json"}])  # crashed the parser
def test_fuzzed_pair_records_each_land_once(tmp_path, model_file, records):
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    _assert_each_row_lands_once(_prep_pairs_rows(path, model_file, PairsConfig(max_length=64, max_prompt_length=32)),
                                list(range(1, len(records) + 1)))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(min_size=1, max_size=300))
@example(data=b"\n\x00")  # a blank line first: the reader skips it
def test_fuzzed_pair_bytes_never_raise(tmp_path, model_file, data):
    path = tmp_path / "pairs.jsonl"
    path.write_bytes(data.replace(b"\r", b"") + b"\n")
    rows = _prep_pairs_rows(path, model_file, PairsConfig())
    lines = sorted({r["line"] for r in rows})  # blank lines make no row
    assert len(lines) <= data.count(b"\n") + 1
    _assert_each_row_lands_once(rows, lines)


def test_a_lone_meta_stays_metadata(tmp_path, model_file):
    """A record whose only extra field is `meta` holding chosen/rejected has no responses of its own."""
    responses = {"chosen": "x", "rejected": "y"}
    records = [{"pair_id": "a", "prompt": "p", "meta": responses},
               {"pair_id": "b", "prompt": "p", "meta": json.dumps(responses)},
               {"pair_id": "c", "prompt": "q", "chosen": "good answer", "rejected": "bad answer", "meta": {"chosen": "x", "n": 1}},
               {"pair_id": "d", "prompt": "r", "chosen": "good answer", "rejected": "bad answer", "meta": "a note"},
               {"pair_id": "e", "prompt": "s", "chosen": "good answer", "rejected": "bad answer", "meta": {"k": 1}, "n": 2}]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    rows = {r["pair_id"]: r for r in _prep_pairs_rows(path, model_file, PairsConfig(max_length=64, max_prompt_length=32))}
    assert [(rows[k]["dest"], rows[k]["reason"]) for k in "ab"] == [("quarantine", "missing_chosen")] * 2
    assert all(rows[k]["dest"] == "pairs" and rows[k]["chosen"] == "good answer" for k in "cde")
    assert [rows[k]["meta"] for k in "cde"] == ['{"chosen": "x", "n": 1}', "a note", '{"meta": {"k": 1}, "n": 2}']


def test_dpo_on_raw_pairs_says_to_run_prep_pairs(tmp_path):
    from quality.gate import UnvalidatedDataset
    from training.trainer.dpo import PairsDataConfig, PairStream

    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "pairs.jsonl").write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n')
    with pytest.raises(UnvalidatedDataset, match=re.escape(f"Run `clover prep-pairs {tmp_path / 'raw'} --tokenizer DIR")):
        PairStream(str(tmp_path / "raw"), 2, PairsDataConfig())
