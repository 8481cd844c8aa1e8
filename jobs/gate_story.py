"""The demo's gate story (docs/training.md, "The gate in the demo"): the write-up's loss-spike lesson, replayed.

Curation removes the sample's spam, so the demo's own pretraining never meets the batch gate. This step
mixes a small share of pathological rows (looping token sequences, written by training/trainer/synthetic.py)
into a copy of the demo's curated token shards. They bypass curation on purpose: the mixed dataset's manifest
says so and carries no validation record, and both arms train on it with `data.allow_unvalidated`, which each
run's config.json records. Two arms of clover-tiny start from the same checkpoint of the demo's pretrain run
and take the same number of steps: gate off with clip 1.0, gate on with clip 0.5 (the write-up's fix).
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from jobs.progress import step_bar

ARMS = {"ungated": {"gate": False, "clip": 1.0}, "gated": {"gate": True, "clip": 0.5}}
WHY = ("deliberately uncurated: looping token sequences mixed in by `clover demo` to show the batch gate at work; "
       "they bypass curate, dedup and validation on purpose (docs/training.md, 'The gate in the demo')")


@dataclass
class GateStoryConfig:
    skip: bool = field(default=False, metadata={"help": "skip the gate story (two short runs on pathological data)"})
    steps: int = field(default=150, metadata={"help": "steps of each arm of the gate story"})
    looping_share: float = field(default=0.08, metadata={
        "help": "share of the gate story's rows that are looping token sequences"})


def run_gate_story(root: Path, cfg: GateStoryConfig, train_cfg, pretrain_run: Path, tokens: Path) -> None:
    """Write the mixed dataset under root/data (from the curated shards at `tokens`), then both arms (root/ungated, root/gated) from the newest
    checkpoint of `pretrain_run`; `train_cfg` is the demo pretrain's TrainConfig (model, batch, rate)."""
    from training.trainer.checkpoint import complete_checkpoints

    start_step, start = complete_checkpoints(pretrain_run / "checkpoints")[0]
    data = write_mixed(root / "data", tokens, cfg.looping_share)
    print(f"  gate-story: {WHY}; both arms start from {start}", file=sys.stderr, flush=True)
    for name, arm in ARMS.items():
        _arm(root / name, data, train_cfg, cfg.steps, arm, start, start_step, name)


def write_mixed(out: Path, tokens: Path, share: float, seed: int = 0) -> Path:
    """A copy of the curated token shards plus looping rows (`share` of all rows), with one manifest."""
    from training.trainer.synthetic import write_token_shards

    clean = json.loads((tokens / "manifest.json").read_text())
    rows = sum(shard["rows"] for shard in clean["shards"])
    looping = max(round(share * rows / (1 - share)), 1)
    shutil.rmtree(out, ignore_errors=True)
    row_group_rows = clean.get("config", {}).get("row_group_rows", 32)
    synthetic = json.loads((write_token_shards(
        out, rows=looping, seq_len=clean["seq_len"], vocab=int(clean["tokenizer"]["vocab_size"]), shards=1,
        row_group_rows=row_group_rows, repetitive_rows=tuple(range(looping)), seed=seed, validated=False,
    ) / "manifest.json").read_text())
    shards = []
    for entry in synthetic["shards"]:
        renamed = entry["file"].replace("shards/part-", "shards/looping-")
        (out / entry["file"]).rename(out / renamed)
        shards.append({**entry, "file": renamed})
    for entry in clean["shards"]:
        renamed = entry["file"].replace("shards/", "shards/curated-")
        shutil.copyfile(tokens / entry["file"], out / renamed)
        shards.append({**entry, "file": renamed})
    manifest = {key: clean[key] for key in ("schema_version", "kind", "tokenizer", "seq_len", "token_dtype")}
    manifest.update(sequences=rows + looping, documents=clean["documents"] + looping, shards=shards,
                    tokens=sum(s["tokens"] for s in shards), validation=None,
                    uncurated={"looping_rows": looping, "curated_rows": rows, "share": looping / (rows + looping),
                               "loop_tokens": 16, "curated_source": str(tokens), "why": WHY})
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return out


def _arm(out: Path, data: Path, base, steps: int, arm: dict, start: str, start_step: int, name: str) -> None:
    """One arm: the demo pretrain's model and rate, `steps` steps from `start`, gate and clip as the arm says."""
    import copy

    from training.trainer.engine import run
    from training.trainer.pretrain import Pretraining

    cfg = copy.deepcopy(base)
    cfg.max_steps, cfg.tensorboard = steps, False
    cfg.gate.enabled, cfg.optimizer.grad_clip = arm["gate"], arm["clip"]
    cfg.data.allow_unvalidated = True  # the looping rows bypass validation on purpose (recorded in config.json)
    lr = base.schedule.max_lr
    cfg.schedule.warmup_steps, cfg.schedule.max_lr, cfg.schedule.min_lr = max(steps // 10, 1), lr, lr
    cfg.schedule.total_steps = steps
    cfg.checkpoint.every = steps

    def make(dist_info, model_cfg):  # no held-out shards: the arms are compared on the same training stream
        return Pretraining(cfg, str(data), dist_info, model_cfg, str(out), held_out=[])

    describe = {"kind": "pretrain", "data": str(data), "init_from": start, "init_step": start_step,
                "gate_story": {"arm": name, **arm, "uncurated": WHY}}
    run(cfg, str(out), make, init_from=start, describe=describe, progress=step_bar(f"gate-story {name}", steps))
