"""Paths on any filesystem pyarrow reaches (local, s3, gcs, hdfs), listing, and atomic commits."""

from __future__ import annotations

import fnmatch
import hashlib
import posixpath
import uuid
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.fs as pafs

_SCHEME_ALIASES = {"s3a": "s3", "s3n": "s3", "gcs": "gs"}
_GLOB_CHARS = set("*?[")


def resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path) for a local path or URI. Hadoop's s3a:// names the same objects as s3://.

    Schemes pyarrow does not know natively (az://, abfs://, memory://, ...) go through fsspec when
    it and the scheme's implementation are installed.
    """
    if "://" not in uri:
        return pafs.LocalFileSystem(), posixpath.abspath(uri)
    scheme, rest = uri.split("://", 1)
    scheme = _SCHEME_ALIASES.get(scheme, scheme)
    try:
        return pafs.FileSystem.from_uri(f"{scheme}://{rest}")
    except pa.ArrowInvalid:
        try:
            import fsspec
        except ImportError:
            raise ValueError(f"{uri}: pyarrow does not know {scheme}:// and fsspec is not installed") from None
        return pafs.PyFileSystem(pafs.FSSpecHandler(fsspec.filesystem(scheme))), rest


def join(base: str, *parts: str) -> str:
    return posixpath.join(base.rstrip("/"), *parts)


@dataclass(frozen=True)
class InputFile:
    uri: str
    size: int


def _with_scheme(original: str, path: str) -> str:
    return f"{original.split('://', 1)[0]}://{path}" if "://" in original else path


def expand(pattern: str, suffixes: tuple[str, ...]) -> list[InputFile]:
    """Files named by a path, a directory (searched recursively) or a glob, sorted by path.

    Only names ending in one of `suffixes` are taken from directories and globs; a file named
    directly is always taken, so that an unsupported format is reported rather than ignored.
    """
    fs, path = resolve(pattern)
    parts = path.split("/")
    wildcard = next((i for i, p in enumerate(parts) if _GLOB_CHARS & set(p)), None)
    if wildcard is None:
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.File:
            return [InputFile(_with_scheme(pattern, path), info.size)]
        if info.type == pafs.FileType.NotFound:
            raise FileNotFoundError(f"input not found: {pattern}")
        base, matcher = path, None
    else:
        base, matcher = "/".join(parts[:wildcard]) or "/", path
    selector = pafs.FileSelector(base, recursive=True)
    found = [
        InputFile(_with_scheme(pattern, info.path), info.size)
        for info in fs.get_file_info(selector)
        if info.type == pafs.FileType.File
        and not posixpath.basename(info.path).startswith((".", "_"))
        and info.path.endswith(suffixes)
        and (matcher is None or fnmatch.fnmatchcase(info.path, matcher))
    ]
    if not found:
        raise FileNotFoundError(f"no input files ({', '.join(suffixes)}) match {pattern}")
    return sorted(found, key=lambda f: f.uri)


def read_text(uri: str) -> str:
    fs, path = resolve(uri)
    with fs.open_input_stream(path) as handle:
        return handle.read().decode("utf-8")


def write_text(uri: str, text: str) -> None:
    """Write a small file so that readers see the old or the new content, never a part."""
    fs, path = resolve(uri)
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    with fs.open_output_stream(tmp) as handle:
        handle.write(text.encode("utf-8"))
    fs.move(tmp, path)


def exists(uri: str) -> bool:
    fs, path = resolve(uri)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def documents_path(uri: str) -> str:
    """A stage output directory holds its kept documents under documents/; any other path is the dataset."""
    nested = join(uri, "documents")
    return nested if exists(nested) else uri


def size(uri: str) -> int:
    fs, path = resolve(uri)
    return fs.get_file_info(path).size


def file_sha256(uri: str) -> str:
    """sha256 of a file's bytes, streamed in 4 MB chunks (shards are large)."""
    fs, path = resolve(uri)
    digest = hashlib.sha256()
    with fs.open_input_stream(path) as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def parquet_metadata(uri: str):
    """A Parquet file's footer: schema, row groups and their sizes, read without the data."""
    import pyarrow.parquet as pq

    fs, path = resolve(uri)
    with fs.open_input_file(path) as handle:
        return pq.ParquetFile(handle).metadata


def staging_dir(final_uri: str) -> str:
    """A sibling of the final directory where a stage writes before it commits."""
    return f"{final_uri.rstrip('/')}.tmp-{uuid.uuid4().hex[:12]}"


def commit_dir(staging_uri: str, final_uri: str) -> None:
    """Replace `final_uri` with the staged directory by renames; the old output is removed after.

    On a local or HDFS filesystem each rename is atomic. Object stores have no atomic rename, so
    readers there rely on the stage's report.json or manifest.json, which is always written last.
    """
    fs, staging = resolve(staging_uri)
    _, final = resolve(final_uri)
    old = None
    if fs.get_file_info(final).type != pafs.FileType.NotFound:
        old = f"{final}.old-{uuid.uuid4().hex[:12]}"
        fs.move(final, old)
    fs.create_dir(posixpath.dirname(final), recursive=True)
    fs.move(staging, final)
    if old:
        fs.delete_dir(old)


def remove_dir(uri: str) -> None:
    fs, path = resolve(uri)
    if fs.get_file_info(path).type != pafs.FileType.NotFound:
        fs.delete_dir(path)
