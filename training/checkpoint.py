"""Checkpoints with torch.distributed.checkpoint: written to a temporary name, marked complete, renamed.

RUN/checkpoints/step-00001000/ holds the DCP shards of the model and optimizer (resharded on load,
so a run may resume on another world size), `trainer.json` (step, loader state, counters) and one
`rng-rankNNNNN.pt` per rank. `COMPLETE` is written last and lists every file with its size; a
directory without it, or whose files do not match it, is skipped with a warning on resume.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_model_state_dict,
    set_state_dict,
)

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


def complete_checkpoints(root: Path) -> list[tuple[int, Path]]:
    """(step, path) of every checkpoint whose COMPLETE marker matches its files, newest first."""
    found = []
    for path in sorted(root.glob(f"{PREFIX}*")) if root.is_dir() else []:
        problem = _check(path)
        if problem:
            warnings.warn(f"skipping checkpoint {path}: {problem}", stacklevel=2)
            continue
        found.append((int(path.name[len(PREFIX):]), path))
    return sorted(found, reverse=True)


def newest(run: str, step: int | None = None) -> Path:
    """A run's newest complete checkpoint, or the one of `step`."""
    found = dict(complete_checkpoints(Path(run) / "checkpoints"))
    if not found:
        raise FileNotFoundError(f"{run}: no complete checkpoint in {run}/checkpoints")
    if step is not None and step not in found:
        raise FileNotFoundError(f"{run}: no complete checkpoint of step {step} (have {sorted(found)})")
    return found[max(found) if step is None else step]


def files_sha256(files: list[Path]) -> str:
    """sha256 over files' names and bytes, read in chunks (checkpoints and exports are large)."""
    digest = hashlib.sha256()
    for item in files:
        digest.update(item.name.encode() + b"\0")
        with item.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 22), b""):
                digest.update(chunk)
    return digest.hexdigest()


def checkpoint_sha256(path: Path) -> str:
    """files_sha256 of a checkpoint directory, computed once and cached in it as SHA256."""
    cached = path / "SHA256"
    if not cached.exists():
        cached.write_text(files_sha256(sorted(p for p in path.iterdir() if p.name != "SHA256")) + "\n")
    return cached.read_text().strip()


def _check(path: Path) -> str | None:
    marker = path / MARKER
    if not marker.exists():
        return "incomplete (no COMPLETE marker)"
    try:
        files = json.loads(marker.read_text())["files"]
    except (ValueError, KeyError) as err:
        return f"unreadable COMPLETE marker ({err})"
    for name, size in files.items():
        actual = (path / name).stat().st_size if (path / name).exists() else None
        if actual != size:
            return f"{name} is {'missing' if actual is None else f'{actual} bytes, expected {size}'}"
    return None


def save(root: Path, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer, trainer_state: dict,
         cfg: CheckpointConfig, rank: int) -> Path:
    """Write step's checkpoint (collective: every rank calls it), then apply the retention policy."""
    final = root / checkpoint_name(step)
    staging = root / f".tmp-{checkpoint_name(step)}"
    if rank == 0:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    dist.barrier()
    model_state, optim_state = get_state_dict(model, optimizer)
    dcp.save({"model": model_state, "optimizer": optim_state}, checkpoint_id=str(staging))
    torch.save(_rng_state(), staging / f"rng-rank{rank:05d}.pt")
    dist.barrier()
    if rank == 0:
        (staging / "trainer.json").write_text(json.dumps(trainer_state, indent=1, sort_keys=True))
        files = {p.name: p.stat().st_size for p in sorted(staging.iterdir())}
        (staging / MARKER).write_text(json.dumps({"step": step, "files": files}, indent=1))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(staging, final)
        steps = [s for s, _ in complete_checkpoints(root)]
        for old in steps_to_delete(steps, cfg.keep_last, cfg.keep_every):
            shutil.rmtree(root / checkpoint_name(old), ignore_errors=True)
    dist.barrier()
    return final


def load(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, rank: int) -> dict:
    """Restore model, optimizer and this rank's random state; return trainer.json's contents."""
    if optimizer is None:
        state = {"model": get_model_state_dict(model)}
        dcp.load(state, checkpoint_id=str(path))
        set_model_state_dict(model, state["model"], options=StateDictOptions(strict=True))
    else:
        model_state, optim_state = get_state_dict(model, optimizer)
        state = {"model": model_state, "optimizer": optim_state}
        dcp.load(state, checkpoint_id=str(path))
        set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])
    rng = path / f"rng-rank{rank:05d}.pt"
    if rng.exists():  # absent when the world size grew: the new ranks keep their seeded state
        _set_rng_state(torch.load(rng, weights_only=True))  # tensors only: never unpickle code
    return json.loads((path / "trainer.json").read_text())


def _rng_state() -> dict:
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def load_model_only(path: Path, model: torch.nn.Module) -> None:
    """The model weights of a checkpoint into a plain (unsharded) model, without a process group."""
    state = {"model": model.state_dict()}
    dcp.load(state, checkpoint_id=str(path))
    model.load_state_dict(state["model"])
