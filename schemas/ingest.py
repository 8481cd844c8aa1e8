"""Executor-side readers: every input record becomes one row of RAW, good or malformed, never lost.

A read unit is a whole JSONL or .txt file, or one row group of a Parquet file. Malformed records keep
their file, line or row number, a truncated raw value and the reason, and flow on to quarantine.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import io
import json
import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq
from zstandard import ZstdError as _ZSTD_ERROR

from schemas.storage import resolve

_LONE_SURROGATE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")  # any surrogate escape; pairs are fine
JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
COMPRESSED_SUFFIXES = (".gz", ".zst")
PARQUET_SUFFIXES = (".parquet",)
TEXT_SUFFIXES = (".txt",)
SUPPORTED_SUFFIXES = (
    *(s + c for s in JSONL_SUFFIXES for c in ("", *COMPRESSED_SUFFIXES)),
    *PARQUET_SUFFIXES,
    *TEXT_SUFFIXES,
)

RAW = pa.schema(
    [
        ("id", pa.string()),
        ("text", pa.string()),
        ("source", pa.string()),
        ("url", pa.string()),
        ("meta", pa.string()),
        ("input_file", pa.string()),
        ("line", pa.int64()),
        ("raw", pa.string()),
        ("error", pa.string()),
    ]
)


@dataclass
class IngestConfig:
    text_field: str = field(default="text", metadata={"help": "field holding the document text"})
    id_field: str = field(default="id", metadata={"help": "field holding a unique id; derived when absent"})
    url_field: str = field(default="url", metadata={"help": "field holding the URL, if any"})
    source_field: str = field(default="source", metadata={"help": "field naming the source; else the file name"})
    max_record_bytes: int = field(default=4 << 20, metadata={"help": "records larger than this are quarantined"})
    raw_preview_chars: int = field(default=1000, metadata={"help": "how much of a malformed record quarantine keeps"})
    batch_rows: int = field(default=4096, metadata={"help": "rows per Arrow batch handed to Spark"})


def input_format(uri: str) -> str:
    name = uri.lower()
    for suffix in COMPRESSED_SUFFIXES:
        name = name.removesuffix(suffix)
    if name.endswith(JSONL_SUFFIXES):
        return "jsonl"
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(TEXT_SUFFIXES):
        return "txt"
    raise ValueError(f"unsupported input format: {uri} (supported: {', '.join(SUPPORTED_SUFFIXES)})")


def derived_id(input_file: str, line: int, text: str) -> str:
    """Stable id from location and content, for inputs without one."""
    digest = hashlib.sha256(f"{input_file}\x00{line}\x00{text}".encode()).hexdigest()
    return digest[:32]


class _Rows:
    """Accumulates RAW rows and cuts Arrow batches."""

    def __init__(self, cfg: IngestConfig, input_file: str, unwrap_meta: bool = True) -> None:
        self.cfg = cfg
        self.unwrap_meta = unwrap_meta
        self.input_file = input_file
        self.default_source = posixpath.basename(input_file)
        self.columns: dict[str, list] = {name: [] for name in RAW.names}

    def __len__(self) -> int:
        return len(self.columns["line"])

    def _append(self, **values) -> None:
        for name, column in self.columns.items():
            column.append(values.get(name))

    def bad(self, line: int, raw: object, reason: str, record_id: str | None = None) -> None:
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8", errors="backslashreplace")
        preview = raw if isinstance(raw, str) else json.dumps(raw, default=str, ensure_ascii=False)
        self._append(id=record_id, input_file=self.input_file, line=line,
                     raw=preview[: self.cfg.raw_preview_chars], error=reason)

    def record(self, line: int, record: dict, raw: object) -> None:
        """Validate one decoded record (a mapping of fields) and keep it or mark it malformed."""
        cfg = self.cfg
        text = record.get(cfg.text_field)
        record_id = record.get(cfg.id_field)
        if isinstance(record_id, (int, float)) and not isinstance(record_id, bool):
            record_id = str(record_id)
        if record_id is not None and not isinstance(record_id, str):
            return self.bad(line, raw, "bad_id")
        if text is None:
            return self.bad(line, raw, "missing_text", record_id)
        if not isinstance(text, str):
            return self.bad(line, raw, "non_string_text", record_id)
        if "\x00" in text:
            return self.bad(line, raw, "nul_bytes", record_id)
        if len(text) > cfg.max_record_bytes or len(text.encode("utf-8")) > cfg.max_record_bytes:
            return self.bad(line, text, "oversized", record_id)
        url = record.get(cfg.url_field)
        source = record.get(cfg.source_field)
        taken = {cfg.text_field, cfg.id_field, cfg.url_field, cfg.source_field}
        extras = {k: v for k, v in record.items() if k not in taken and v is not None}
        if not self.unwrap_meta:  # every extra field, a lone meta too, as one JSON object: unambiguous
            meta = json.dumps(extras, sort_keys=True, ensure_ascii=False, default=str) if extras else None
        elif set(extras) == {"meta"} and isinstance(extras["meta"], str):
            meta = extras["meta"]
        elif set(extras) == {"meta"} and isinstance(extras["meta"], dict):
            meta = json.dumps(extras["meta"], sort_keys=True, ensure_ascii=False, default=str)
        else:
            meta = json.dumps(extras, sort_keys=True, ensure_ascii=False, default=str) if extras else None
        self._append(
            id=record_id or derived_id(self.input_file, line, text),
            text=text,
            source=source if isinstance(source, str) else self.default_source,
            url=url if isinstance(url, str) else None,
            meta=meta,
            input_file=self.input_file,
            line=line,
        )

    def flush(self) -> Iterator[pa.RecordBatch]:
        if len(self):
            yield pa.RecordBatch.from_pydict(self.columns, schema=RAW)
            self.columns = {name: [] for name in RAW.names}

    def flush_if_full(self) -> Iterator[pa.RecordBatch]:
        if len(self) >= self.cfg.batch_rows:
            yield from self.flush()


# Bytes per read from storage: on an object store each read of an unbuffered stream is one GET, and
# 8 KiB GETs turned a 76 MiB JSONL read on S3 from under a second into minutes.
READ_BUFFER_BYTES = 8 << 20


def _open_jsonl(uri: str):
    fs, path = resolve(uri)
    stream = fs.open_input_stream(path, compression=None, buffer_size=READ_BUFFER_BYTES)
    if uri.endswith(".gz"):
        return io.BufferedReader(gzip.GzipFile(fileobj=stream))
    if uri.endswith(".zst"):
        return io.BufferedReader(_ZstdReader(stream))
    return io.BufferedReader(stream)


class _ZstdReader(io.RawIOBase):
    """Multi-frame zstd decoding that raises EOFError when the input ends inside a frame.

    zstandard's own stream reader ends a truncated stream quietly, which would lose records silently.
    """

    def __init__(self, stream, chunk: int = 1 << 20) -> None:
        import zstandard

        self._new = zstandard.ZstdDecompressor().decompressobj
        self._stream, self._chunk = stream, chunk
        self._decoder, self._pending, self._in_frame = self._new(), b"", False
        self._error: Exception | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._pending:
            if self._error is not None:  # raised only once the records before the damage were read
                raise self._error
            data = self._stream.read(self._chunk)
            if not data:
                if self._in_frame:
                    raise EOFError("zstd stream ended inside a frame")
                return 0
            while data:
                self._in_frame = True
                try:
                    self._pending += self._decoder.decompress(data)
                except _ZSTD_ERROR as err:  # e.g. garbage appended after the last frame
                    self._error, data = err, b""
                    break
                data = b""
                if self._decoder.eof:
                    data, self._in_frame = self._decoder.unused_data, False
                    self._decoder = self._new()
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


def _read_jsonl(uri: str, cfg: IngestConfig, unwrap_meta: bool = True) -> Iterator[pa.RecordBatch]:
    rows = _Rows(cfg, uri, unwrap_meta)
    line_no = 0
    reader = _open_jsonl(uri)
    try:
        while True:
            try:
                # Read at most the cap plus one byte: a huge line cannot exhaust memory.
                raw = reader.readline(cfg.max_record_bytes + 1)
            except (EOFError, OSError, ValueError, _ZSTD_ERROR) as err:  # a torn or corrupt compressed stream
                rows.bad(line_no + 1, f"{type(err).__name__}: {err}", "truncated_file")
                break
            if not raw:
                break
            line_no += 1
            if len(raw) > cfg.max_record_bytes and not raw.endswith(b"\n"):
                preview = raw[: cfg.raw_preview_chars]
                while raw and not raw.endswith(b"\n"):  # skip the rest of the oversized line
                    raw = reader.readline(1 << 20)
                rows.bad(line_no, preview, "oversized")
            else:  # a CR-only file arrives as one line of CR-ended records
                parts = _lines_of(raw, line_no)
                for offset, part in enumerate(parts):
                    _parse_json_line(rows, line_no + offset, part)
                line_no += max(len(parts) - 1, 0)
            yield from rows.flush_if_full()
    finally:
        reader.close()
    yield from rows.flush()


def _lines_of(raw: bytes, line_no: int) -> list[bytes]:
    """The records of one `\\n`-ended line: itself, or its CR-separated parts (old Mac line endings).

    A raw CR cannot occur inside a JSON string (it must be escaped), so splitting on it never cuts a
    record; CRLF endings are left to json.loads, which skips the trailing CR as whitespace. The first
    line of a file loses a UTF-8 byte order mark.
    """
    if line_no == 1 and raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8):]
    body = raw.rstrip(b"\r\n")
    return [p for p in body.split(b"\r") if p.strip()] if b"\r" in body else ([raw] if raw.strip() else [])


def _parse_json_line(rows: _Rows, line_no: int, raw: bytes) -> None:
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        return rows.bad(line_no, raw, "invalid_utf8")
    try:
        record = json.loads(decoded)
    except json.JSONDecodeError:
        return rows.bad(line_no, decoded, "bad_json")
    except RecursionError:  # nesting deeper than Python's recursion limit
        return rows.bad(line_no, decoded, "nested_too_deep")
    if not isinstance(record, dict):
        return rows.bad(line_no, decoded, "bad_json")
    if _LONE_SURROGATE.search(decoded) and _has_lone_surrogate(record):
        return rows.bad(line_no, decoded, "invalid_surrogate")
    rows.record(line_no, record, decoded)


def _has_lone_surrogate(record: dict) -> bool:
    """Whether a \\uD800-\\uDFFF escape decoded to a lone surrogate, which UTF-8 (and Arrow) cannot hold."""
    try:
        json.dumps(record, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _read_parquet(uri: str, row_group: int, cfg: IngestConfig, unwrap_meta: bool = True) -> Iterator[pa.RecordBatch]:
    rows = _Rows(cfg, uri, unwrap_meta)
    fs, path = resolve(uri)
    try:
        with fs.open_input_file(path) as handle:
            parquet = pq.ParquetFile(handle, page_checksum_verification=True)  # pages written with a CRC
            first_row = sum(parquet.metadata.row_group(i).num_rows for i in range(row_group))
            table = parquet.read_row_group(row_group)
    except (OSError, pa.ArrowException) as err:
        rows.bad(0, f"{type(err).__name__}: {err}", "unreadable_file")
        yield from rows.flush()
        return
    for offset, record in enumerate(table.to_pylist()):
        rows.record(first_row + offset + 1, record, record)
        yield from rows.flush_if_full()
    yield from rows.flush()


def _read_txt(uri: str, cfg: IngestConfig) -> Iterator[pa.RecordBatch]:
    rows = _Rows(cfg, uri)
    fs, path = resolve(uri)
    with fs.open_input_stream(path) as handle:
        data = handle.read(cfg.max_record_bytes + 1)
    if len(data) > cfg.max_record_bytes:
        rows.bad(1, data[: cfg.raw_preview_chars], "oversized")
    else:
        try:
            rows.record(1, {cfg.text_field: data.decode("utf-8")}, data)
        except UnicodeDecodeError:
            rows.bad(1, data, "invalid_utf8")
    yield from rows.flush()


def parquet_units(uri: str) -> list[int]:
    """Row-group indices of a Parquet file ([0] when it cannot be read: the reader then reports it)."""
    fs, path = resolve(uri)
    try:
        with fs.open_input_file(path) as handle:
            return list(range(max(pq.ParquetFile(handle).metadata.num_row_groups, 1)))
    except (OSError, pa.ArrowException):
        return [0]


def read_unit(uri: str, row_group: int, cfg: IngestConfig, unwrap_meta: bool = True) -> Iterator[pa.RecordBatch]:
    """All records of one read unit as RAW batches.

    `meta` holds the record's fields beyond the configured ones as a JSON object; with `unwrap_meta`, a
    lone `meta` field is passed as it is (a string) or as its own JSON (an object). A caller that takes
    fields out of the extras (prep-pairs: chosen, rejected) passes unwrap_meta=False, so that a lone
    `meta: {"chosen": ...}` cannot be mistaken for the record's own fields."""
    fmt = input_format(uri)
    if fmt == "jsonl":
        return _read_jsonl(uri, cfg, unwrap_meta)
    if fmt == "parquet":
        return _read_parquet(uri, row_group, cfg, unwrap_meta)
    return _read_txt(uri, cfg)


def read_units(cfg: IngestConfig, unwrap_meta: bool = True):
    """A `dataprep.spark.map_units` reader: (index, (uri, row_group)) read units in, RAW batches out
    (`unwrap_meta`: see read_unit)."""

    def read(units: Iterator[tuple[int, tuple[str, int]]]) -> Iterator[pa.RecordBatch]:
        for _, (uri, row_group) in units:
            yield from read_unit(uri, row_group, cfg, unwrap_meta)

    return read
