"""Dataset column definitions. Spark schemas are derived lazily so that the trainer never imports pyspark."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pyarrow as pa


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    nullable: bool = True
    doc: str = ""


@dataclass(frozen=True)
class DatasetSchema:
    kind: str
    columns: tuple[Column, ...]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def arrow(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, c.type, nullable=c.nullable) for c in self.columns])

    def spark(self):  # -> pyspark.sql.types.StructType, imported lazily
        from pyspark.sql.pandas.types import from_arrow_schema

        return from_arrow_schema(self.arrow())

    def extend(self, kind: str, extra: Iterable[Column]) -> DatasetSchema:
        return DatasetSchema(kind, self.columns + tuple(extra))


DOCUMENT_COLUMNS = DatasetSchema(
    "documents",
    (
        Column("id", pa.string(), nullable=False, doc="unique document id"),
        Column("text", pa.string(), nullable=False, doc="normalized text"),
        Column("source", pa.string(), doc="where the document came from (input field or file name)"),
        Column("url", pa.string(), doc="original URL, when known"),
        Column("meta", pa.string(), doc="other input fields, as a JSON object"),
    ),
)

QUARANTINE = DatasetSchema(
    "quarantine",
    (
        Column("input_file", pa.string(), nullable=False, doc="file the record was read from"),
        Column("line", pa.int64(), nullable=False, doc="1-based line (JSONL), row (Parquet) or 1 (.txt)"),
        Column("raw", pa.string(), doc="the raw value, truncated"),
        Column("reason", pa.string(), nullable=False, doc="why the record is malformed"),
        Column("id", pa.string(), doc="the record's id, when it had one"),
    ),
)


DUPLICATES = DatasetSchema(
    "duplicates",
    (
        Column("id", pa.string(), nullable=False, doc="the removed document"),
        Column("cluster_id", pa.string(), nullable=False, doc="smallest id of its near-duplicate cluster, or its exact group's survivor"),
        Column("kept_id", pa.string(), nullable=False, doc="the kept document that replaced it"),
        Column("kind", pa.string(), nullable=False, doc="exact or near"),
    ),
)

# `clover dedup --write-index INDEX` writes INDEX/signatures (these columns, one row per kept document) and
# INDEX/index.json (the MinHash parameters); `--against INDEX` reads them back.
DEDUP_INDEX = DatasetSchema(
    "dedup_index",
    (
        Column("id", pa.string(), doc="the document"),
        Column("exact_hash", pa.string(), doc="hash of its normalized text (dedup.exact_hash)"),
        Column("bands", pa.list_(pa.int64()), doc="its MinHash-LSH band digests"),
        Column("shingles", pa.list_(pa.int32()), doc="its shingles' hashes, for the exact Jaccard check"),
    ),
)
INDEX_COLUMNS = tuple(DEDUP_INDEX.names)

# dedup's per-document features on Spark (mapInArrow): the index columns, the score that picks a cluster's
# representative, and priority (1 for documents of an --against index: they win every cluster they are in).
FEATURES = DEDUP_INDEX.extend("dedup_features", (
    Column("score", pa.float64(), doc="the representative is the highest score, then the smallest id"),
    Column("priority", pa.int32(), doc="1 for an --against index's documents, else 0"),
)).arrow()



def documents_schema(score_columns: Iterable[str] = (), label_columns: Iterable[str] = ()) -> DatasetSchema:
    """Documents with float64 score columns and string label columns (for example fastText labels)."""
    extra = [Column(name, pa.float64(), doc="quality score") for name in score_columns]
    extra += [Column(name, pa.string(), doc="classifier label") for name in label_columns]
    return DOCUMENT_COLUMNS.extend("documents", extra)


def rejected_schema(documents: DatasetSchema) -> DatasetSchema:
    return documents.extend("rejected", [Column("reason", pa.string(), nullable=False, doc="first failing rule")])
