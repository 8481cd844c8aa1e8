"""Per-step metrics: RUN/metrics.jsonl (one object per optimizer step) and TensorBoard, from rank 0."""

from __future__ import annotations

import json
import resource
import sys
import time
from collections.abc import Callable

import torch

from schemas import storage
from training.trainer.model import ModelConfig
from training.trainer.plan import flops_per_token, peak_flops


def mfu(cfg: ModelConfig, seq_len: int, tokens_per_s_per_gpu: float, device: torch.device) -> float | None:
    """Model FLOPs utilization: (6N + 12·L·H·d·S) × tokens/s per GPU over the GPU's bf16 peak; None on CPU."""
    if device.type != "cuda":
        return None
    peak = peak_flops(torch.cuda.get_device_name(device))
    return flops_per_token(cfg, seq_len) * tokens_per_s_per_gpu / peak if peak else None


def peak_memory_gib(device: torch.device) -> float:
    """CUDA: peak allocated by torch. CPU: peak resident set of the process."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1024**3
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 1024**3


class JsonLines:
    """A JSON-lines log in a run directory on any filesystem.

    Locally each record is appended (a crash loses at most a torn last line). Object stores cannot
    append: records are kept in memory and the object is rewritten whole on flush(), and by append()
    when `rewrite_every_s` has passed since the last rewrite.
    """

    def __init__(self, uri: str, rewrite_every_s: float = 0.0):
        self.uri, self.rewrite_every_s = uri, rewrite_every_s
        self.local = storage.is_local(uri)
        self.lines: list[str] = []
        self.rewritten_at = time.monotonic()

    def keep(self, wanted: Callable[[dict], bool]) -> None:
        """Drop the lines (and a torn last line) that `wanted` refuses, e.g. those past a resumed checkpoint."""
        if not storage.exists(self.uri):
            return
        lines = storage.read_text(self.uri).splitlines(keepends=True)
        self.lines = [line for line in lines if line.endswith("\n") and line.strip() and wanted(json.loads(line))]
        if self.lines != lines:
            storage.write_text(self.uri, "".join(self.lines))

    def append(self, record: dict) -> None:
        line = json.dumps(record, sort_keys=True) + "\n"
        if self.local:
            with open(self.uri, "a") as handle:
                handle.write(line)
            return
        self.lines.append(line)
        if time.monotonic() - self.rewritten_at >= self.rewrite_every_s:
            self.flush()

    def flush(self) -> None:
        if not self.local:
            storage.write_text(self.uri, "".join(self.lines))
            self.rewritten_at = time.monotonic()


class MetricsWriter:
    """Writes metrics.jsonl; on resume, drops lines past the checkpoint so the file reads as one run."""

    def __init__(self, run: str, resumed_step: int, enabled: bool, tensorboard: bool):
        self.enabled = enabled
        self.log = JsonLines(storage.join(run, "metrics.jsonl"), rewrite_every_s=30.0)
        self.board = None
        if not enabled:
            return
        self.log.keep(lambda record: record["step"] <= resumed_step)
        if tensorboard and not storage.is_local(run):
            print("TensorBoard events need a local run directory: metrics go to metrics.jsonl only", file=sys.stderr)
        elif tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                print("tensorboard is not installed: metrics go to metrics.jsonl only", file=sys.stderr)
            else:
                self.board = SummaryWriter(storage.join(run, "tensorboard"), purge_step=resumed_step + 1)

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        self.log.append(record)
        if self.board is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "step" and value is not None:
                    self.board.add_scalar(f"train/{key}", value, record["step"])

    def flush(self) -> None:
        """Make every line so far durable (object stores): called with each checkpoint."""
        if self.enabled:
            self.log.flush()

    def close(self) -> None:
        self.flush()
        if self.board is not None:
            self.board.close()
