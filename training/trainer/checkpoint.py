"""Checkpoints with torch.distributed.checkpoint on any filesystem pyarrow reaches (local, s3://, ...).

RUN/checkpoints/step-00001000/ holds the DCP shards of the model and optimizer (resharded on load,
so a run may resume on another world size), `trainer.json` (step, loader state, counters) and one
`rng-rankNNNNN.pt` per rank. `COMPLETE` is written last and lists every file with its size; a
directory without it, or whose files do not match it, is skipped with a warning on resume.

Local disk and HDFS: the checkpoint is written under `.tmp-step-...` and renamed. Object stores have
no rename: the directory is written in place, and `COMPLETE`, written last, is the commit point
(docs/storage.md). DCP reaches object stores through fsspec's wrapper of the pyarrow filesystem
(`schemas.storage.resolve`), so no s3fs is needed and the endpoint comes from the same configuration.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import posixpath
import warnings
from dataclasses import dataclass, field

import pyarrow.fs as pafs
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from fsspec.implementations.arrow import ArrowFSWrapper
from torch.distributed.checkpoint._fsspec_filesystem import FileSystem as FsspecFileSystem
from torch.distributed.checkpoint.filesystem import FileSystemReader, FileSystemWriter
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_model_state_dict,
    set_state_dict,
)

from schemas import storage

MARKER = "COMPLETE"
PREFIX = "step-"


@dataclass
class CheckpointConfig:
    every: int = field(default=1000, metadata={"help": "steps between checkpoints (and one at the last step; 0: none)"})
    keep_last: int = field(default=5, metadata={"help": "newest checkpoints kept"})
    keep_every: int = field(default=10000, metadata={"help": "multiples of this step are kept for good (0: none)"})


def checkpoint_name(step: int) -> str:
    return f"{PREFIX}{step:08d}"


def steps_to_delete(steps: list[int], keep_last: int, keep_every: int) -> list[int]:
    """Checkpoints that the retention policy lets go: all but the newest `keep_last` and multiples of `keep_every`."""
    newest = set(sorted(steps)[-keep_last:]) if keep_last > 0 else set()
    return sorted(s for s in steps if s not in newest and not (keep_every and s % keep_every == 0))


class _PyarrowFileSystem(FsspecFileSystem):
    """torch's fsspec filesystem for DCP, over the pyarrow filesystem that storage.resolve configures."""

    def init_path(self, path: str | os.PathLike, **kwargs) -> str:
        fs, resolved = storage.resolve(os.fspath(path))
        self.fs = ArrowFSWrapper(fs)
        return resolved


def _on_pyarrow(handler, uri: str):
    """A DCP FileSystemWriter/Reader pointed at an object store through the pyarrow filesystem."""
    handler.fs = _PyarrowFileSystem()
    handler.path = handler.fs.init_path(uri)
    return handler


def _writer(uri: str) -> FileSystemWriter:
    return FileSystemWriter(uri) if storage.is_local(uri) else _on_pyarrow(FileSystemWriter(".", sync_files=False), uri)


def _reader(uri: str) -> FileSystemReader:
    return FileSystemReader(uri) if storage.is_local(uri) else _on_pyarrow(FileSystemReader("."), uri)


def _write_bytes(uri: str, data: bytes) -> None:
    fs, path = storage.resolve(uri)
    with fs.open_output_stream(path) as handle:
        handle.write(data)


def _read_bytes(uri: str) -> bytes:
    fs, path = storage.resolve(uri)
    with fs.open_input_stream(path) as handle:
        return handle.read()


def _listing(uri: str) -> dict[str, pafs.FileInfo]:
    """Entries directly under a directory, by name (empty when it does not exist)."""
    fs, path = storage.resolve(uri)
    found = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    return {posixpath.basename(info.path): info for info in found}


def complete_checkpoints(root: str | os.PathLike) -> list[tuple[int, str]]:
    """(step, uri) of every checkpoint whose COMPLETE marker matches its files, newest first."""
    root = os.fspath(root)
    found = []
    for name in sorted(n for n in _listing(root) if n.startswith(PREFIX)):
        path = storage.join(root, name)
        problem = _check(path)
        if problem:
            warnings.warn(f"skipping checkpoint {path}: {problem}", stacklevel=2)
            continue
        found.append((int(name[len(PREFIX):]), path))
    return sorted(found, reverse=True)


def newest(run: str, step: int | None = None) -> str:
    """A run's newest complete checkpoint, or the one of `step`."""
    found = dict(complete_checkpoints(storage.join(run, "checkpoints")))
    if not found:
        raise FileNotFoundError(f"{run}: no complete checkpoint in {run}/checkpoints")
    if step is not None and step not in found:
        raise FileNotFoundError(f"{run}: no complete checkpoint of step {step} (have {sorted(found)})")
    return found[max(found) if step is None else step]


def files_sha256(files: list[str | os.PathLike]) -> str:
    """sha256 over files' names and bytes, read in chunks (checkpoints and exports are large)."""
    digest = hashlib.sha256()
    for item in files:
        fs, path = storage.resolve(os.fspath(item))
        digest.update(posixpath.basename(path).encode() + b"\0")
        with fs.open_input_stream(path) as handle:
            for chunk in iter(lambda: handle.read(1 << 22), b""):
                digest.update(chunk)
    return digest.hexdigest()


def checkpoint_sha256(path: str | os.PathLike) -> str:
    """files_sha256 of a checkpoint directory, computed once and cached in it as SHA256."""
    path = os.fspath(path)
    cached = storage.join(path, "SHA256")
    if not storage.exists(cached):
        files = [storage.join(path, n) for n, i in sorted(_listing(path).items())
                 if n != "SHA256" and i.type == pafs.FileType.File]
        storage.write_text(cached, files_sha256(files) + "\n")
    return storage.read_text(cached).strip()


def _check(path: str) -> str | None:
    listing = _listing(path)
    if MARKER not in listing:
        return "incomplete (no COMPLETE marker)"
    try:
        files = json.loads(storage.read_text(storage.join(path, MARKER)))["files"]
    except (ValueError, KeyError) as err:
        return f"unreadable COMPLETE marker ({err})"
    for name, size in files.items():
        actual = listing[name].size if name in listing else None
        if actual != size:
            return f"{name} is {'missing' if actual is None else f'{actual} bytes, expected {size}'}"
    return None


def save(root: str | os.PathLike, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
         trainer_state: dict, cfg: CheckpointConfig, rank: int) -> str:
    """Write step's checkpoint (collective: every rank calls it), then apply the retention policy."""
    root = os.fspath(root)
    final = storage.join(root, checkpoint_name(step))
    local = storage.is_local(root)
    target = storage.join(root, f".tmp-{checkpoint_name(step)}") if local else final
    if rank == 0:
        if not local:  # the old marker first: from then on the old checkpoint is absent
            _remove_file(storage.join(final, MARKER))
        storage.remove_dir(target)
        if local:
            os.makedirs(target)
    dist.barrier()
    model_state, optim_state = get_state_dict(model, optimizer)
    dcp.save({"model": model_state, "optimizer": optim_state}, storage_writer=_writer(target))
    buffer = io.BytesIO()
    torch.save(_rng_state(), buffer)
    _write_bytes(storage.join(target, f"rng-rank{rank:05d}.pt"), buffer.getvalue())
    dist.barrier()
    if rank == 0:
        _write_bytes(storage.join(target, "trainer.json"), json.dumps(trainer_state, indent=1, sort_keys=True).encode())
        files = {n: i.size for n, i in sorted(_listing(target).items()) if i.type == pafs.FileType.File}
        _write_bytes(storage.join(target, MARKER), json.dumps({"step": step, "files": files}, indent=1).encode())
        if local:
            storage.remove_dir(final)
            os.replace(target, final)
        steps = [s for s, _ in complete_checkpoints(root)]
        for old in steps_to_delete(steps, cfg.keep_last, cfg.keep_every):
            _remove_file(storage.join(root, checkpoint_name(old), MARKER))
            storage.remove_dir(storage.join(root, checkpoint_name(old)))
    dist.barrier()
    return final


def _remove_file(uri: str) -> None:
    fs, path = storage.resolve(uri)
    if fs.get_file_info(path).type == pafs.FileType.File:
        fs.delete_file(path)


def load(path: str | os.PathLike, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
         rank: int) -> dict:
    """Restore model, optimizer and this rank's random state; return trainer.json's contents."""
    path = os.fspath(path)
    if optimizer is None:
        state = {"model": get_model_state_dict(model)}
        dcp.load(state, storage_reader=_reader(path))
        set_model_state_dict(model, state["model"], options=StateDictOptions(strict=True))
    else:
        model_state, optim_state = get_state_dict(model, optimizer)
        state = {"model": model_state, "optimizer": optim_state}
        dcp.load(state, storage_reader=_reader(path))
        set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])
    rng = storage.join(path, f"rng-rank{rank:05d}.pt")
    if storage.exists(rng):  # absent when the world size grew: the new ranks keep their seeded state
        # tensors only: never unpickle code
        _set_rng_state(torch.load(io.BytesIO(_read_bytes(rng)), weights_only=True))
    return json.loads(storage.read_text(storage.join(path, "trainer.json")))


def _rng_state() -> dict:
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def load_model_only(path: str | os.PathLike, model: torch.nn.Module) -> None:
    """The model weights of a checkpoint into a plain (unsharded) model, without a process group."""
    state = {"model": model.state_dict()}
    dcp.load(state, storage_reader=_reader(os.fspath(path)))
    model.load_state_dict(state["model"])
