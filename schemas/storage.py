"""Paths on any filesystem pyarrow reaches (local, s3, gcs, hdfs), listing, commits and writer locks.

The commit protocol (docs/storage.md): a stage writes under a unique staging prefix, its record file
(report.json, manifest.json, tokenizer.json, index.json) is the commit point, and a directory without
one is not a dataset. One writer per output, held by a lock file naming its host and pid.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import hashlib
import inspect
import json
import os
import posixpath
import socket
import sys
import time
import uuid
from collections.abc import Callable
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
    if "@" in rest.split("/", 1)[0]:
        raise ValueError(f"{scheme}://...@...: credentials in a URI would reach reports and logs; "
                         "use the provider's environment variables or profile instead")
    if scheme == "s3" and "?" not in rest:
        return _s3(), rest
    try:
        return pafs.FileSystem.from_uri(f"{scheme}://{rest}")
    except pa.ArrowInvalid:
        try:
            import fsspec
        except ImportError:
            raise ValueError(f"{uri}: pyarrow does not know {scheme}:// and fsspec is not installed") from None
        return pafs.PyFileSystem(pafs.FSSpecHandler(fsspec.filesystem(scheme))), rest


def _s3() -> pafs.S3FileSystem:
    """S3 (or an S3-compatible server) configured by the standard AWS variables.

    Credentials come from pyarrow's AWS chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN,
    AWS_PROFILE, instance roles), never from Clover's config. AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL
    names a non-AWS endpoint. Delayed open writes a small object with one PutObject instead of a
    three-request multipart upload.
    """
    options: dict = {"allow_delayed_open": True}
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if endpoint:
        options["endpoint_override"] = endpoint
    if region:
        options["region"] = region
    return pafs.S3FileSystem(**options)


def is_local(uri: str) -> bool:
    """A local path: files can be appended to and directories renamed atomically (object stores cannot)."""
    return "://" not in uri


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


def total_bytes(uris: str | list[str]) -> int | None:
    """Bytes of every file that paths, directories or globs name; None if one cannot be listed."""
    try:
        return sum(f.size for uri in ([uris] if isinstance(uris, str) else uris) for f in expand(uri, ("",)))
    except (OSError, ValueError):
        return None


def parquet_bytes(uri: str) -> int:
    """Bytes of the Parquet files a dataset path names: what a stage sizes its partitions by."""
    return sum(f.size for f in expand(uri, (".parquet",)))


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
    """A stage output directory holds its kept documents under documents/; any other path is the dataset.

    A stage output without its commit file is a crashed or running write, and is refused.
    """
    nested = join(uri, "documents")
    if not exists(nested):
        return uri
    if not committed(uri):
        raise FileNotFoundError(f"{uri} has no report.json: a run writing it was interrupted or is still "
                                "committing; re-run the stage that writes it")
    return nested


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
    """A sibling of the final directory, unique to this attempt, where a stage writes before it commits."""
    return f"{final_uri.rstrip('/')}{_STAGING}{uuid.uuid4().hex[:12]}"


_STAGING, _OLD = ".tmp-", ".old-"
# The record that describes a dataset; written last, it is the commit point on every filesystem.
COMMIT_FILES = ("manifest.json", "report.json", "tokenizer.json", "index.json")


def commit_dir(staging_uri: str, final_uri: str) -> None:
    """Replace `final_uri` with the staged directory; readers see the old dataset or the new, never a mix.

    Local and HDFS: two renames (final -> .old-*, staging -> final), each atomic. Object stores have
    no rename: the old commit file goes first (the old dataset is absent from then on), then the old
    objects, then the staged data files are copied in, and the commit file last.
    """
    fs, staging = resolve(staging_uri)
    _, final = resolve(final_uri)
    if not isinstance(fs, (pafs.LocalFileSystem, pafs.HadoopFileSystem)):
        _commit_by_copy(fs, staging, final)
        return
    old = None
    if fs.get_file_info(final).type != pafs.FileType.NotFound:
        old = f"{final}{_OLD}{uuid.uuid4().hex[:12]}"
        fs.move(final, old)
    fs.create_dir(posixpath.dirname(final), recursive=True)
    fs.move(staging, final)
    if old:
        fs.delete_dir(old)


def _commit_by_copy(fs: pafs.FileSystem, staging: str, final: str) -> None:
    for name in COMMIT_FILES:
        if fs.get_file_info(f"{final}/{name}").type == pafs.FileType.File:
            fs.delete_file(f"{final}/{name}")
    if fs.get_file_info(final).type != pafs.FileType.NotFound:
        fs.delete_dir(final)
    files = [i.path for i in fs.get_file_info(pafs.FileSelector(staging, recursive=True)) if i.type == pafs.FileType.File]
    commits = [f for f in files if posixpath.relpath(f, staging) in COMMIT_FILES]
    for path in [f for f in files if f not in commits] + commits:
        fs.copy_file(path, f"{final}/{posixpath.relpath(path, staging)}")
    fs.delete_dir(staging)


def committed(uri: str) -> bool:
    """Whether a directory holds a commit file, i.e. is a whole dataset (and not a crashed write)."""
    return any(exists(join(uri, name)) for name in COMMIT_FILES)


def leftovers(final_uri: str) -> list[str]:
    """Staging and replaced directories that an interrupted run of `final_uri` left behind."""
    fs, final = resolve(final_uri)
    parent, base = posixpath.split(final.rstrip("/"))
    try:
        found = fs.get_file_info(pafs.FileSelector(parent or "/", allow_not_found=True))
    except OSError:  # an object-store parent that is a bucket root without listing rights
        return []
    names = (f"{base}{_STAGING}", f"{base}{_OLD}")
    return sorted(_with_scheme(final_uri, i.path) for i in found
                  if i.type == pafs.FileType.Directory and posixpath.basename(i.path).startswith(names))


class OutputLocked(RuntimeError):
    """Another live run is writing the same output."""


STALE_AFTER_S = 24 * 3600


def writes_output(argument: str, stale_after_s: float = STALE_AFTER_S) -> Callable:
    """Decorate a stage whose parameter `argument` names its output: one writer at a time.

    The lock is `OUT.lock` beside the output, holding the owner's host and pid. A lock whose owner
    is gone (same host, no such process) or older than `stale_after_s` is broken. Under the lock,
    staging left by an interrupted run is removed and reported on stderr.
    """

    def decorate(stage: Callable) -> Callable:
        signature = inspect.signature(stage)

        @functools.wraps(stage)
        def run(*args, **kwargs):
            out = signature.bind(*args, **kwargs).arguments[argument]
            with _Lock(f"{out.rstrip('/')}.lock", stale_after_s):
                for left in leftovers(out):
                    print(f"removing leftover staging of an interrupted run: {left}", file=sys.stderr)
                    remove_dir(left)
                return stage(*args, **kwargs)

        return run

    return decorate


def check_unlocked(out: str, stale_after_s: float = STALE_AFTER_S) -> None:
    """Raise OutputLocked now if a live run holds `out`'s lock: a command checks before it spends seconds
    starting Spark (the stage still takes the lock itself, so a writer that starts meanwhile is caught)."""
    _Lock(f"{out.rstrip('/')}.lock", stale_after_s).refuse_if_held()


class _Lock:
    def __init__(self, uri: str, stale_after_s: float) -> None:
        self.uri, self.stale_after_s = uri, stale_after_s
        self.owner = {"host": socket.gethostname(), "pid": os.getpid(), "token": uuid.uuid4().hex, "since": time.time()}

    def __enter__(self) -> _Lock:
        for _ in range(3):
            if self._create():
                return self
            self._break(self.refuse_if_held())
        raise OutputLocked(f"could not take {self.uri}: other writers keep taking it")

    def refuse_if_held(self) -> dict | None:
        """Raise OutputLocked if a live run holds the lock; else return its stale holder (None: no lock)."""
        holder = self._holder()
        if holder is not None and not self._stale(holder):
            since = time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(holder.get('since', 0)))
            raise OutputLocked(f"{self.uri.removesuffix('.lock')} is being written by pid {holder.get('pid')} on "
                               f"{holder.get('host')} since {since} UTC; wait for it, or remove {self.uri} if that "
                               "run is gone")
        return holder

    def __exit__(self, *exc) -> None:
        holder = self._holder()
        if holder is not None and holder.get("token") == self.owner["token"]:
            fs, path = resolve(self.uri)
            fs.delete_file(path)

    def _create(self) -> bool:
        """Create the lock if absent: O_EXCL locally; on an object store, write then read back."""
        data = json.dumps(self.owner).encode()
        fs, path = resolve(self.uri)
        if isinstance(fs, pafs.LocalFileSystem):
            os.makedirs(posixpath.dirname(path), exist_ok=True)
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            return True
        if fs.get_file_info(path).type != pafs.FileType.NotFound:
            return False
        with fs.open_output_stream(path) as handle:  # no conditional put through pyarrow: last writer wins,
            handle.write(data)
        time.sleep(0.5)  # so a racing writer's object is the one read back, and exactly one proceeds
        holder = self._holder()
        return holder is not None and holder.get("token") == self.owner["token"]

    def _holder(self) -> dict | None:
        try:
            return json.loads(read_text(self.uri))
        except (FileNotFoundError, ValueError):
            return None

    def _stale(self, holder: dict) -> bool:
        if time.time() - holder.get("since", 0) > self.stale_after_s:
            return True
        if holder.get("host") != socket.gethostname():
            return False
        try:
            os.kill(int(holder["pid"]), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, KeyError, ValueError):
            return False
        return False

    def _break(self, holder: dict | None) -> None:
        """Move a stale lock aside; if it changed hands meanwhile (a live owner's), put it back."""
        fs, path = resolve(self.uri)
        aside = f"{path}.broken-{uuid.uuid4().hex[:8]}"
        try:
            fs.move(path, aside)
        except (FileNotFoundError, OSError):
            return
        with fs.open_input_stream(aside) as handle:
            moved = json.loads(handle.read() or b"{}")
        if holder is not None and moved.get("token") != holder.get("token") and isinstance(fs, pafs.LocalFileSystem):
            with contextlib.suppress(FileExistsError):
                os.link(aside, path)  # atomic: fails if a third writer holds the lock by now
        fs.delete_file(aside)


def copy_dir(source_uri: str, target_uri: str) -> None:
    """Copy a directory tree between any two filesystems pyarrow reaches."""
    source_fs, source = resolve(source_uri)
    target_fs, target = resolve(target_uri)
    pafs.copy_files(source, target, source_filesystem=source_fs, destination_filesystem=target_fs)


def remove_dir(uri: str) -> None:
    fs, path = resolve(uri)
    if fs.get_file_info(path).type != pafs.FileType.NotFound:
        fs.delete_dir(path)
