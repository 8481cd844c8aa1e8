"""Per-step metrics: RUN/metrics.jsonl (one object per optimizer step) and TensorBoard, from rank 0."""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

import torch

from training.model import ModelConfig
from training.plan import flops_per_token, peak_flops


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


class MetricsWriter:
    """Appends to metrics.jsonl; on resume, drops lines past the checkpoint so the file reads as one run."""

    def __init__(self, run: Path, resumed_step: int, enabled: bool, tensorboard: bool):
        self.enabled = enabled
        self.path = run / "metrics.jsonl"
        self.board = None
        if not enabled:
            return
        if self.path.exists():
            kept = [line for line in self.path.read_text().splitlines()
                    if line.strip() and json.loads(line)["step"] <= resumed_step]
            self.path.write_text("".join(line + "\n" for line in kept))
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                print("tensorboard is not installed: metrics go to metrics.jsonl only", file=sys.stderr)
            else:
                self.board = SummaryWriter(str(run / "tensorboard"), purge_step=resumed_step + 1)

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")
        if self.board is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "step" and value is not None:
                    self.board.add_scalar(f"train/{key}", value, record["step"])

    def close(self) -> None:
        if self.board is not None:
            self.board.close()
