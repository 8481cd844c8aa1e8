"""Reading stage outputs for `clover inspect`: lazy polars scans of Parquet parts, JSON and JSON-lines files,
on a local path or any URI `schemas.storage` resolves (s3://, gs://, ...). No Spark, no pandas."""

from __future__ import annotations

import json
import os
import posixpath
from pathlib import Path
from urllib.parse import quote, urlsplit

import polars as pl

from schemas import storage

Section = tuple[str, str, str]  # (html id, heading, body)


def parquet_files(path: str) -> list[str]:
    """The Parquet parts under a dataset directory (or one file), sorted; none when there are none."""
    try:
        return [f.uri for f in storage.expand(path, (".parquet",))]
    except FileNotFoundError:
        return []


def scan(path: str, columns: list[str] | None = None) -> pl.LazyFrame | None:
    """A lazy scan of a dataset directory's Parquet parts, or None when it has none.

    Local files are scanned by polars itself; a URI's files through the pyarrow filesystem of
    `schemas.storage` (the same credentials and endpoint as every other Clover read)."""
    files = parquet_files(path)
    if not files:
        return None
    if storage.is_local(path):
        frame = pl.scan_parquet(files)
    else:
        import pyarrow.dataset as ds

        fs, _ = storage.resolve(files[0])
        frame = pl.scan_pyarrow_dataset(ds.dataset([storage.resolve(f)[1] for f in files], filesystem=fs,
                                                   format="parquet"))
    return frame.select(columns) if columns else frame


def exists(path: str) -> bool:
    try:
        return storage.exists(path)
    except (OSError, ValueError):
        return False


def read_json(path: str) -> dict:
    return json.loads(storage.read_text(path))


def read_json_lines(path: str) -> list[dict]:
    """The records of a JSON-lines log; a torn last line (a crash while writing) is skipped."""
    if not exists(path):
        return []
    records = []
    for line in storage.read_text(path).splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def join(base: str, *parts: str) -> str:
    return storage.join(base, *parts)


def sentencepiece(tokenizer_dir: str | None):
    """The SentencePiece processor of a tokenizer directory, or None when it cannot be read."""
    if not tokenizer_dir:
        return None
    try:
        import sentencepiece as spm

        fs, path = storage.resolve(join(tokenizer_dir, "tokenizer.model"))
        with fs.open_input_stream(path) as handle:
            return spm.SentencePieceProcessor(model_proto=handle.read())
    except (OSError, ValueError, ImportError, RuntimeError):
        return None


def by_hash(frame: pl.LazyFrame, k: int, seed: int, key: str = "id") -> pl.LazyFrame:
    """The k rows with the smallest polars hash of (key, seed): a deterministic sample."""
    return frame.with_columns(_key=pl.col(key).hash(seed)).sort("_key").head(k).drop("_key")


def data_docs_index(path: str) -> tuple[str, dict] | None:
    """(URI of the Data Docs index, its validation record) of a stage output, or None when none was built:
    the record's `validation.data_docs` (relative to the output, or absolute), else PATH/data_docs/index.html."""
    validation: dict = {}
    for name in ("report.json", "manifest.json", "validation.json"):
        if exists(join(path, name)):
            validation = read_json(join(path, name)).get("validation") or {}
            if validation:
                break
    recorded = str(validation.get("data_docs") or "")
    candidates = [recorded if "://" in recorded or os.path.isabs(recorded) else join(path, recorded)] if recorded else []
    for index in [*candidates, join(path, "data_docs", "index.html")]:
        if exists(index):
            return index, validation
    return None


def href(target: str, report: str | None) -> str:
    """A link to `target` from the report written to `report`: relative when both lie on one filesystem (a local
    disk, or one bucket), so the pair can move together; else absolute (file:// for a local target)."""
    target_uri, report_uri = urlsplit(target), urlsplit(report or "")
    local = not target_uri.scheme or len(target_uri.scheme) == 1  # a Windows drive letter is no scheme
    if report and local and (not report_uri.scheme or len(report_uri.scheme) == 1):
        relative = os.path.relpath(os.path.abspath(target), os.path.dirname(os.path.abspath(report)))
        return quote(relative.replace(os.sep, "/"))
    if report and (target_uri.scheme, target_uri.netloc) == (report_uri.scheme, report_uri.netloc):
        return quote(posixpath.relpath(target_uri.path, posixpath.dirname(report_uri.path) or "/"))
    return Path(os.path.abspath(target)).as_uri() if local else target
