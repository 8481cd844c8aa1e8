"""Synthetic token shards, written without Spark in the schema `clover tokenize` writes.

For the trainer's tests, benchmarks and `benchmarks/gpu_check.py` on a bare GPU machine (no pyspark,
no Great Expectations). The manifest says `"synthetic": true`, and its validation record comes from
the token-row checks below, run on the rows written; the trainer reads that record through the same
gate as any dataset, and the batch gate still judges every micro-batch.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from schemas.tokens import MANIFEST_SCHEMA_VERSION, token_shard_schema


def token_row_checks(tokens: np.ndarray, num_tokens: np.ndarray, seq_len: int, vocab: int) -> list[dict]:
    """The token-rows suite's rules (quality/expectations.py) on in-memory rows: one result per rule."""
    rules = {
        "row_length": tokens.shape[1] == seq_len + 1,
        "max_token": bool((tokens < vocab).all() and (tokens >= 0).all()),
        "num_tokens": bool(((num_tokens >= 1) & (num_tokens <= seq_len + 1)).all()),
    }
    return [{"suite": "token_rows", "expectation": "synthetic_check", "column": column, "success": ok}
            for column, ok in rules.items()]


def write_token_shards(root: Path, rows: int = 96, seq_len: int = 64, vocab: int = 500, shards: int = 2,
                       row_group_rows: int = 16, repetitive_rows: tuple[int, ...] = (), seed: int = 0,
                       validated: bool = True, padded_rows: tuple[int, ...] = (), doc_length: int = 0) -> Path:
    """Random-token rows with a learnable bigram drift, some made of one short loop (`repetitive_rows`).

    `doc_length` > 0 records a document start every doc_length positions (for document masking);
    `validated=False` leaves the manifest without a validation record.
    """
    rng = np.random.default_rng(seed)
    tokens = rng.integers(4, vocab, (rows, seq_len + 1))
    tokens[:, 1::2] = (tokens[:, 0::2][:, : tokens[:, 1::2].shape[1]] + 1) % vocab  # every other token predictable
    for row in repetitive_rows:
        tokens[row] = np.resize(rng.integers(4, vocab, 16), seq_len + 1)
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
        data = (root / name).read_bytes()
        entries.append({"file": name, "rows": len(part), "tokens": int(num_tokens[part].sum()),
                        "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    checks = token_row_checks(tokens, num_tokens, seq_len, vocab)
    validation = {"kind": "tokens", "success": all(c["success"] for c in checks), "synthetic": True,
                  "expectations": len(checks), "failed": [c for c in checks if not c["success"]],
                  "validated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    manifest = {"schema_version": MANIFEST_SCHEMA_VERSION, "kind": "tokens", "synthetic": True, "seq_len": seq_len,
                "token_dtype": "uint16", "tokenizer": {"vocab_size": vocab}, "sequences": rows,
                "documents": rows, "shards": entries, "validation": validation if validated else None}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root
