"""Small token-shard datasets for the trainer tests, written in the schema `clover tokenize` writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from schemas.tokens import token_shard_schema


def write_token_shards(root: Path, rows: int = 96, seq_len: int = 64, vocab: int = 500, shards: int = 2,
                       row_group_rows: int = 16, repetitive_rows: tuple[int, ...] = (), seed: int = 0,
                       validated: bool = True, padded_rows: tuple[int, ...] = (), doc_length: int = 0) -> Path:
    """Random-token rows (a learnable bigram drift), some made of one short loop (`repetitive_rows`).

    `doc_length` > 0 records a document start every doc_length positions (for document masking).

    The manifest carries a passed validation record unless `validated` is False, as `clover validate`
    leaves it; the trainer reads only that record.
    """
    rng = np.random.default_rng(seed)
    tokens = rng.integers(4, vocab, (rows, seq_len + 1))
    tokens[:, 1::2] = (tokens[:, 0::2][:, : tokens[:, 1::2].shape[1]] + 1) % vocab  # every other token predictable
    for row in repetitive_rows:
        loop = rng.integers(4, vocab, 16)
        tokens[row] = np.resize(loop, seq_len + 1)
    num_tokens = np.full(rows, seq_len + 1)
    for row in padded_rows:
        num_tokens[row] = seq_len // 2
        tokens[row, seq_len // 2:] = 0
    schema = token_shard_schema(vocab).arrow()
    (root / "shards").mkdir(parents=True, exist_ok=True)
    entries = []
    for shard, part in enumerate(np.array_split(np.arange(rows), shards)):
        table = pa.table({
            "tokens": pa.array([t.astype(np.uint16) for t in tokens[part]], type=pa.list_(pa.uint16())),
            "num_tokens": pa.array(num_tokens[part], pa.int32()),
            "doc_starts": pa.array([list(range(0, seq_len + 1, doc_length or seq_len + 1))] * len(part),
                                   pa.list_(pa.int32())),
            "pack_partition": pa.array([0] * len(part), pa.int32()),
            "pack_index": pa.array(part, pa.int64()),
            "documents": pa.array([1] * len(part), pa.int32()),
        }, schema=schema)
        name = f"shards/part-{shard:05d}.parquet"
        pq.write_table(table, root / name, row_group_size=row_group_rows)
        entries.append({"file": name, "rows": len(part), "tokens": int(len(part) * seq_len)})
    manifest = {"schema_version": 1, "kind": "tokens", "seq_len": seq_len, "token_dtype": "uint16",
                "tokenizer": {"vocab_size": vocab}, "sequences": rows, "shards": entries,
                "validation": {"success": True, "failed": []} if validated else None}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def docstring_tokenizer(spark, root: Path, vocab_size: int = 700, docs: int = 150) -> Path:
    """A small SentencePiece tokenizer trained (by the real stage) on Python docstrings, in root/tokenizer."""
    from dataprep.sample import stdlib_docstrings
    from dataprep.tokenizer import TokenizerConfig, train_tokenizer

    texts = stdlib_docstrings()[:docs]
    pq.write_table(pa.table({"id": [f"d{i}" for i in range(len(texts))], "text": texts}), root / "docs.parquet")
    train_tokenizer(spark, str(root / "docs.parquet"), str(root / "tokenizer"),
                    TokenizerConfig(vocab_size=vocab_size, sample_docs=docs))
    return root / "tokenizer"
