"""One definition of every dataset's columns; Arrow and Spark schemas are derived from it."""

from schemas.datasets import (
    DOCUMENT_COLUMNS,
    QUARANTINE,
    Column,
    DatasetSchema,
    documents_schema,
    rejected_schema,
)
from schemas.report import ReportMismatch, StageReport

__all__ = [
    "DOCUMENT_COLUMNS",
    "QUARANTINE",
    "Column",
    "DatasetSchema",
    "ReportMismatch",
    "StageReport",
    "documents_schema",
    "rejected_schema",
]
