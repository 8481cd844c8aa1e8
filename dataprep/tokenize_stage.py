"""The tokenize stage: encode on executors, pack into seq_len + 1 rows, shuffle globally, write shards
and a manifest (written last).

Packing (Megatron's layout): the documents of one read unit (a row group of an input Parquet file, in
file order) form one token stream, every document followed by </s>. Row i of a stream holds tokens [i*seq_len, i*seq_len + seq_len + 1): rows
overlap by one token so that every token is a label exactly once. The stream's remainder becomes one
last row padded with <pad>; `num_tokens` tells the trainer where real tokens end. Nothing is dropped,
so decoding every row in stream order gives back every document exactly.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import posixpath
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from dataprep.spark import (
    SparkConfig,
    fit_shuffle_partitions,
    map_units,
    quarantine_rows,
    read_parquet,
    ship_file,
    write_parquet,
)
from dataprep.stages import TOKENIZER_OPTION, Option, Stage, register
from dataprep.train_tokenizer import load_tokenizer_metadata
from dataprep.validate import commit_stage
from quality import expectations as suites
from quality.gate import member_uri, require_validated
from schemas import QUARANTINE, StageReport, storage
from schemas.config import ConfigError, to_dict
from schemas.tokens import MANIFEST_SCHEMA_VERSION, PACKED, token_dtype, token_shard_schema


@dataclass
class TokenizeConfig:
    seq_len: int = field(default=8192, metadata={"help": "tokens per training sequence (rows hold seq_len + 1)"})
    text_column: str = field(default="text", metadata={"help": "column holding the text"})
    seed: int = field(default=0, metadata={"help": "seed of the global row shuffle"})
    shard_bytes: int = field(default=256 << 20, metadata={"help": "target uncompressed bytes of tokens per shard"})
    row_group_rows: int = field(default=128, metadata={"help": "rows per Parquet row group (the streaming unit)"})
    encode_batch: int = field(default=512, metadata={"help": "documents encoded per SentencePiece call"})
    max_encode_chars: int = field(default=1 << 20, metadata={
        "help": "longer documents are encoded in pieces of at most this many characters, cut after a newline "
                "or before a space (SentencePiece's time and memory grow with one input's length)"})
    spark: SparkConfig = field(default_factory=SparkConfig)

    def validate(self) -> None:
        if self.seq_len < 1:
            raise ConfigError(f"'seq_len' must be positive, got {self.seq_len}")
        if self.max_encode_chars < 1:
            raise ConfigError(f"'max_encode_chars' must be positive, got {self.max_encode_chars}")


def split_text(text: str, max_chars: int) -> list[str]:
    """Cut text into pieces of at most max_chars: after the window's last newline or before its last run of
    spaces, whichever is later; a hard cut only where the window has neither.

    No SentencePiece piece of a Clover tokenizer spans those boundaries (newlines are byte-fallback tokens,
    a space only begins a piece), so encoding the pieces gives the ids of the whole text; a hard cut may
    change the ids next to it. Decoding the pieces' ids always gives the text back.
    """
    pieces, start = [], 0
    while len(text) - start > max_chars:
        window = text[start : start + max_chars]
        spaces = window.rfind(" ")
        cut = max(window.rfind("\n") + 1, len(window[:spaces].rstrip(" ")) if spaces > 0 else 0)
        cut = cut or max_chars
        pieces.append(text[start : start + cut])
        start += cut
    pieces.append(text[start:])
    return pieces


def encode_documents(processor, texts: list[str], max_chars: int) -> list[list[int]]:
    """Token ids of each text, those longer than max_chars encoded piece by piece (split_text): a document of
    20 million characters costs pieces of bounded time and memory instead of one huge SentencePiece call."""
    if all(len(t) <= max_chars for t in texts):
        return processor.encode(texts, num_threads=1)
    pieces = [split_text(t, max_chars) for t in texts]
    ids = iter(processor.encode([p for parts in pieces for p in parts], num_threads=1))
    return [list(itertools.chain.from_iterable(next(ids) for _ in parts)) for parts in pieces]


class _Packer:
    """Cuts one partition's token stream into rows of seq_len + 1 tokens overlapping by one."""

    def __init__(self, seq_len: int, pad_id: int, eos_id: int, partition: int, dtype: np.dtype) -> None:
        self.seq_len, self.width = seq_len, seq_len + 1
        self.pad_id, self.eos_id, self.partition, self.dtype = pad_id, eos_id, partition, np.dtype(dtype).newbyteorder("<")
        self.buffer = np.empty(0, dtype=np.uint32)
        self.starts = np.empty(0, dtype=np.int64)  # document start positions in the buffer
        self.index = 0  # rows emitted so far; after the first, the buffer begins with the overlap token

    def add(self, docs: list[list[int]]) -> pa.RecordBatch | None:
        sizes = np.array([len(d) for d in docs], dtype=np.int64)
        tokens = np.fromiter(itertools.chain.from_iterable(docs), dtype=np.uint32, count=int(sizes.sum()))
        flat = np.insert(tokens, np.cumsum(sizes), self.eos_id)  # </s> after every document
        lengths = sizes + 1
        begins = len(self.buffer) + np.concatenate(([0], np.cumsum(lengths)[:-1]))
        self.starts = np.concatenate([self.starts, begins])
        self.buffer = np.concatenate([self.buffer, flat])
        return self._emit(final=False)

    def finish(self) -> pa.RecordBatch | None:
        return self._emit(final=True)

    def _emit(self, final: bool) -> pa.RecordBatch | None:
        size = len(self.buffer)
        full = (size - 1) // self.seq_len if size >= self.width else 0
        rows = [(self.buffer[r * self.seq_len : r * self.seq_len + self.width], self.width, r * self.seq_len)
                for r in range(full)]
        consumed = full * self.seq_len
        overlap = 1 if (self.index or full) else 0
        if final and size - consumed > overlap:
            padded = np.full(self.width, self.pad_id, dtype=np.uint32)
            padded[: size - consumed] = self.buffer[consumed:]
            rows.append((padded, size - consumed, consumed))
        if not rows:
            return None
        columns: dict[str, list] = {name: [] for name in PACKED.names}
        for tokens, valid, begin in rows:
            inside = self.starts[(self.starts >= begin) & (self.starts < begin + valid)] - begin
            labels = tokens[1:valid]  # every token but a row's first is a label exactly once
            columns["tokens"].append(tokens.astype(self.dtype).tobytes())
            columns["num_tokens"].append(int(valid))
            columns["doc_starts"].append(inside.astype(np.int32).tolist())
            columns["pack_partition"].append(self.partition)
            columns["pack_index"].append(self.index)
            columns["documents"].append(int((labels == self.eos_id).sum()))
            self.index += 1
        self.buffer = self.buffer[consumed:]  # keeps the overlap token for the next row
        self.starts = self.starts[self.starts >= consumed] - consumed
        return pa.RecordBatch.from_pydict(columns, schema=PACKED)


def _encode_and_pack(cfg: TokenizeConfig, model_file, special: dict[str, int], dtype: np.dtype):
    """A `map_units` reader over (stream, (uri, row_group)) read units: each unit's usable documents become
    one stream, numbered by the unit's place in the input."""

    def run(units: Iterator[tuple[int, tuple[str, int]]]) -> Iterator[pa.RecordBatch]:
        import pyarrow.compute as pc
        import pyarrow.parquet as pq
        import sentencepiece as spm

        processor = spm.SentencePieceProcessor(model_file=model_file())
        for stream, (uri, row_group) in units:
            fs, path = storage.resolve(uri)
            with fs.open_input_file(path) as handle:
                table = pq.ParquetFile(handle).read_row_group(row_group, columns=["id", cfg.text_column])
            text = table.column(cfg.text_column)
            usable = pc.and_(pc.is_valid(table.column("id")), pc.greater(pc.utf8_length(text), 0))
            texts = text.filter(pc.fill_null(usable, False)).to_pylist()
            packer = _Packer(cfg.seq_len, special["pad"], special["eos"], stream, dtype)
            for start in range(0, len(texts), cfg.encode_batch):
                emitted = packer.add(encode_documents(processor, texts[start : start + cfg.encode_batch],
                                                      cfg.max_encode_chars))
                if emitted is not None:
                    yield emitted
            last = packer.finish()
            if last is not None:
                yield last

    return run


def _column_bytes(meta, column: str) -> int:
    """Uncompressed bytes of one column, from a file's footer."""
    index = meta.schema.names.index(column)
    return sum(meta.row_group(g).column(index).total_uncompressed_size for g in range(meta.num_row_groups))


def source_fingerprint(footers: list) -> str:
    """sha256 over each input file's name, size and Parquet footer: identifies the source cheaply."""
    digest = hashlib.sha256()
    for f, meta in footers:
        digest.update(f"{posixpath.basename(f.uri)}\0{f.size}\0{meta.num_rows}\0{meta.serialized_size}\n".encode())
    return digest.hexdigest()


@storage.writes_output("out")
def run_tokenize(spark, input_uri: str, tokenizer_dir: str, out: str, cfg: TokenizeConfig, validate: bool = True,
                 allow_unvalidated: bool = False) -> tuple[StageReport, dict]:
    """Tokenize a validated documents dataset into shards, validate them; returns (report, manifest)."""
    started = time.time()
    cfg.validate()
    gate = require_validated(input_uri, allow_unvalidated)
    source = storage.documents_path(input_uri)
    tokenizer = load_tokenizer_metadata(tokenizer_dir)
    flagged = _flag_invalid(read_parquet(spark, source), source, cfg)
    # Read units in a fixed order (file name, row group): the streams do not depend on the cluster.
    footers = [(f, storage.parquet_metadata(f.uri)) for f in storage.expand(source, (".parquet",))]
    units = [(f.uri, rg) for f, meta in footers for rg in range(meta.num_row_groups)]
    shuffle_partitions = fit_shuffle_partitions(spark, cfg.spark, sum(f.size for f, _ in footers))
    dtype = token_dtype(tokenizer["vocab_size"])
    shuffled = _packed_rows(spark, units, footers, cfg, tokenizer, tokenizer_dir, dtype)

    staging = storage.staging_dir(out)
    written = write_parquet(shuffled, storage.join(staging, "shards"), token_shard_schema(tokenizer["vocab_size"]).arrow(),
                            row_group_rows=cfg.row_group_rows, convert=_token_lists(dtype, cfg.seq_len + 1))
    write_parquet(quarantine_rows(flagged.drop("_empty"), source).coalesce(1), storage.join(staging, "quarantine"),
                  QUARANTINE.arrow())
    per_file = _shard_totals(spark, staging)
    report = _report(flagged, per_file, cfg, written, units)
    report.extra["shuffle_partitions"] = shuffle_partitions
    report.seconds = round(time.time() - started, 3)
    manifest = {
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "kind": "tokens",
        "tokenizer": {"sha256": tokenizer["sha256"], "vocab_size": tokenizer["vocab_size"],
                      "special_ids": tokenizer["special_ids"], "path": tokenizer_dir},
        "seq_len": cfg.seq_len,
        "token_dtype": str(dtype),
        "sequences": report.extra["sequences"],
        "tokens": report.extra["tokens"],
        "documents": report.output,
        "shards": [{"file": f"shards/{w['file']}", "rows": w["rows"], "tokens": per_file.get(w["file"], {}).get("stored", 0),
                    "bytes": w["bytes"], "sha256": w["sha256"]} for w in written],
        "source": {"path": source, "fingerprint": source_fingerprint(footers)},
        "config": to_dict(cfg),
        "input_validation": gate,
        "validation": None,
    }
    commit_stage(spark, staging, out, report, validate, {"manifest.json": json.dumps(manifest, indent=2) + "\n"})
    return report, json.loads(storage.read_text(storage.join(out, "manifest.json")))


def _flag_invalid(docs, source: str, cfg: TokenizeConfig):
    """The documents with `_reason` (missing id or text: quarantined) and `_empty` (removed) marked."""
    from pyspark.sql import functions as F

    if {"id", cfg.text_column} - set(docs.columns):
        raise ConfigError(f"{source} is not a documents dataset: it needs columns id and {cfg.text_column}")
    reason = (F.when(F.col("id").isNull(), "missing_id").when(F.col(cfg.text_column).isNull(), "missing_text"))
    return docs.withColumn("_reason", reason).withColumn("_empty", F.length(cfg.text_column) == 0)


def _packed_rows(spark, units: list, footers: list, cfg: TokenizeConfig, tokenizer: dict, tokenizer_dir: str, dtype):
    """Encoded, packed rows of seq_len + 1 tokens, globally shuffled by a seeded hash into the shards.
    One pass, nothing cached: the shard count comes from the input's text bytes (about 4 per token)."""
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema

    model_file = ship_file(spark, storage.join(tokenizer_dir, tokenizer["model"]))
    numpy_dtype = np.dtype(dtype.to_pandas_dtype())
    packed = map_units(spark, units, _encode_and_pack(cfg, model_file, tokenizer["special_ids"], numpy_dtype),
                       from_arrow_schema(PACKED))
    text_bytes = sum(_column_bytes(meta, cfg.text_column) for _, meta in footers)
    shards = max(1, -(-text_bytes // 4 * dtype.bit_width // 8 // cfg.shard_bytes))
    shuffle_key = F.xxhash64("pack_partition", "pack_index", F.lit(cfg.seed))
    return (packed.withColumn("_key", shuffle_key).repartition(shards, "_key")
            .sortWithinPartitions("_key", "pack_partition", "pack_index").drop("_key"))


def _token_lists(dtype, width: int):
    """Packed rows travel as raw bytes; the shard stores them as lists of `dtype` token ids."""
    numpy_dtype = np.dtype(dtype.to_pandas_dtype())

    def convert(table: pa.Table) -> pa.Table:
        ids = np.frombuffer(b"".join(table.column("tokens").to_pylist()), dtype=numpy_dtype.newbyteorder("<"))
        offsets = pa.array(np.arange(0, len(ids) + 1, width, dtype=np.int32))
        tokens = pa.ListArray.from_arrays(offsets, pa.array(ids.astype(numpy_dtype)))
        return table.set_column(table.schema.get_field_index("tokens"), "tokens", tokens)

    return convert


def _shard_totals(spark, staging: str) -> dict[str, dict]:
    """Per written shard file: rows, stored tokens, overlapping rows, documents, read back from the files."""
    from pyspark.sql import functions as F

    rows = (read_parquet(spark, storage.join(staging, "shards"), ["num_tokens", "pack_index", "documents"], "file")
            .groupBy("file").agg(
        F.count("*").alias("rows"), F.sum("num_tokens").alias("stored"),
        F.sum(F.when(F.col("pack_index") > 0, 1).otherwise(0)).alias("overlaps"),
        F.sum("documents").alias("documents")).collect())
    return {posixpath.basename(r["file"]): r.asDict() for r in rows}


def _report(flagged, per_file: dict[str, dict], cfg: TokenizeConfig, written: list, units: list) -> StageReport:
    """Every input document is tokenized, removed as empty, or quarantined."""
    totals = {k: sum(r[k] or 0 for r in per_file.values()) for k in ("rows", "stored", "overlaps", "documents")}
    counts = {(r["_reason"], r["_empty"]): r["count"] for r in flagged.groupBy("_reason", "_empty").count().collect()}
    quarantined: dict[str, int] = {}
    for (reason, _), n in counts.items():
        if reason is not None:
            quarantined[reason] = quarantined.get(reason, 0) + n
    return StageReport(
        stage="tokenize",
        input=sum(counts.values()),
        output=int(totals["documents"] or 0),
        removed={"empty": counts[(None, True)]} if counts.get((None, True)) else {},
        quarantined=dict(sorted(quarantined.items())),
        config=to_dict(cfg),
        extra={"sequences": totals["rows"], "tokens": int((totals["stored"] or 0) - (totals["overlaps"] or 0)),
               "shards": len(written), "streams": len(units)},
    )


def validation_frames(spark, root: str, manifest: dict) -> dict:
    """Every row in range and EOS-terminated, the totals of the manifest, and each shard as the manifest lists it."""
    import pandas as pd
    from pyspark.sql import functions as F

    eos = manifest["tokenizer"]["special_ids"]["eos"]
    shards = read_parquet(spark, storage.join(root, "shards"), file_column="_file")
    rows = shards.select(F.size("tokens").alias("row_length"), F.array_max("tokens").alias("max_token"), "num_tokens")
    labels = F.slice("tokens", 2, F.greatest(F.col("num_tokens") - 1, F.lit(1)))
    eos_labels = F.size(F.filter(labels, lambda t: t == eos))
    totals = shards.agg(F.sum(eos_labels).alias("eos_labels"), F.sum("documents").alias("documents_column"),
                        F.count("*").alias("sequences"))
    on_disk = {os.path.basename(r["_file"]): r for r in shards.groupBy("_file").agg(
        F.count("*").alias("rows"), F.sum("num_tokens").alias("tokens")).collect()}
    entries = manifest["shards"]
    uris = [member_uri(root, e["file"], storage.join(root, "manifest.json")) for e in entries]

    def file_hashes(units: Iterator[tuple[int, str]]) -> Iterator[pa.RecordBatch]:
        for _, uri in units:
            yield pa.RecordBatch.from_pydict({"uri": [uri], "sha256": [storage.file_sha256(uri) if storage.exists(uri) else ""]})

    hashes = map_units(spark, uris, file_hashes, "uri string, sha256 string").collect()
    sha = {os.path.basename(row["uri"]): row["sha256"] for row in hashes}
    table = []
    for entry in entries:
        name = os.path.basename(entry["file"])
        seen = on_disk.get(name)
        size = storage.size(storage.join(root, entry["file"])) if sha[name] else -1
        table.append((entry["file"], bool(sha[name]), bool(seen) and seen["rows"] == entry["rows"],
                      bool(seen) and seen["tokens"] == entry.get("tokens", seen["tokens"]),
                      size == entry["bytes"], sha[name] == entry["sha256"]))
    shard_frame = pd.DataFrame(table, columns=["file", "file_found", "rows_match", "tokens_match", "bytes_match",
                                               "sha256_match"])
    return {
        "token_rows": (rows, suites.token_rows_suite(manifest["seq_len"], manifest["tokenizer"]["vocab_size"])),
        "token_totals": (totals, suites.token_totals_suite(manifest["documents"], manifest["sequences"])),
        "token_shards": (shard_frame, suites.token_shards_suite()),
    }


def _describe(report, cfg: TokenizeConfig, args) -> str:
    extra = report.extra
    return (f"tokenize: {report.input} documents in, {report.output} tokenized into {extra['sequences']} sequences "
            f"of {cfg.seq_len + 1} ({extra['tokens']} tokens, {extra['shards']} shards) -> {args.out}")


register(Stage(
    name="tokenize",
    summary="encode, pack and shard documents into token shards with a manifest (Spark)",
    description="Encode documents, pack rows of seq_len + 1 tokens, write shards and manifest.json.",
    config=TokenizeConfig,
    run=lambda spark, args, cfg: run_tokenize(spark, args.input, args.tokenizer, args.out, cfg,
                                              validate=not args.no_validate, allow_unvalidated=args.allow_unvalidated)[0],
    describe=_describe,
    inputs=("input", "a documents dataset (or a curate/dedup output directory)"),
    out_help="output directory (shards/, manifest.json, report.json)",
    writes="tokens",
    validates=("tokens",),
    frames=validation_frames,
    options=(TOKENIZER_OPTION,
             Option("--seq-len", "seq_len")),
    module=__name__,
    step=40,
))
