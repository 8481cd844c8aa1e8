"""`clover plan`: parameters, FLOPs per token and per-GPU memory of a preset, without allocating it."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from jobs.common import exit_on_config_error
from jobs.flags import Command, Option
from training.trainer.model import PRESETS
from training.trainer.plan import format_plan


@dataclass
class PlanConfig:
    """The training setup `clover plan` estimates."""

    model: str = field(default="clover-12b", metadata={"help": "model preset (training/trainer/model.py)"})
    gpus: int = field(default=8, metadata={"help": "GPUs the model is fully sharded over"})
    micro_batch: int = field(default=2, metadata={"help": "sequences per GPU per forward pass"})
    seq_len: int = field(default=8192, metadata={"help": "tokens per sequence"})
    dtype: str = field(default="bf16", metadata={"help": "compute dtype: bf16 or fp32"})
    activation_checkpointing: bool = field(default=True, metadata={"help": "recompute blocks in backward"})


COMMAND = Command(
    description="Print a preset's parameter count, FLOPs per token (6N + 12·L·H·d·S) and a per-GPU memory estimate "
                "under FSDP full sharding (see docs/training.md).",
    config=PlanConfig,
    options=(
        Option("--model", "model", kwargs={"required": True, "choices": sorted(PRESETS)}),
        Option("--gpus", "gpus"),
        Option("--micro-batch", "micro_batch"),
        Option("--seq-len", "seq_len"),
        Option("--dtype", "dtype", kwargs={"choices": ("bf16", "fp32")}),
        Option("--no-activation-checkpointing", "activation_checkpointing", "estimate without activation "
               "checkpointing", kwargs={"action": "store_false"}),
    ),
)


@exit_on_config_error
def main(argv: list[str] | None = None, prog: str = "clover plan") -> int:
    _, cfg = COMMAND.parse(argv, prog)
    print(format_plan(cfg.model, PRESETS[cfg.model], cfg.gpus, cfg.micro_batch, cfg.seq_len, cfg.dtype,
                      cfg.activation_checkpointing))
    return 0


if __name__ == "__main__":
    sys.exit(main())
