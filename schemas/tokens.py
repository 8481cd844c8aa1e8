"""Token shards and their manifest: what `clover tokenize` writes and the trainer streams."""

from __future__ import annotations

import pyarrow as pa

from schemas.datasets import Column, DatasetSchema

MANIFEST_SCHEMA_VERSION = 1


def token_dtype(vocab_size: int) -> pa.DataType:
    """uint16 while every id fits, else uint32."""
    return pa.uint16() if vocab_size <= 1 << 16 else pa.uint32()


def token_shard_schema(vocab_size: int) -> DatasetSchema:
    return DatasetSchema(
        "tokens",
        (
            Column("tokens", pa.list_(token_dtype(vocab_size)), nullable=False,
                   doc="seq_len + 1 token ids: inputs are [:-1], labels [1:]"),
            Column("num_tokens", pa.int32(), nullable=False,
                   doc="real tokens in the row; the rest is <pad> (only a partition's last row)"),
            Column("doc_starts", pa.list_(pa.int32()), nullable=False,
                   doc="positions in the row where a document begins (after a </s>)"),
            Column("pack_partition", pa.int32(), nullable=False, doc="packing stream the row came from"),
            Column("pack_index", pa.int64(), nullable=False, doc="position of the row in its packing stream"),
            Column("documents", pa.int32(), nullable=False, doc="documents whose </s> is a label in this row"),
        ),
    )


# A packed row inside Spark (the tokenize stage's mapInArrow), before it is written as token_shard_schema.
PACKED = DatasetSchema(
    "packed",
    (
        Column("tokens", pa.binary(), doc="little-endian ids of the shard's dtype while in Spark; typed lists once written"),
        Column("num_tokens", pa.int32(), doc="real tokens in the row; the rest is <pad>"),
        Column("doc_starts", pa.list_(pa.int32()), doc="positions in the row where a document begins"),
        Column("pack_partition", pa.int32(), doc="packing stream the row came from"),
        Column("pack_index", pa.int64(), doc="position of the row in its packing stream"),
        Column("documents", pa.int32(), doc="documents whose </s> is a label in this row"),
    ),
).arrow()
