"""Pretraining objective: next-token loss over gated micro-batches streamed from token shards."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from schemas import storage
from training.trainer.data import DataConfig, MicroBatch, TokenStream
from training.trainer.engine import EngineConfig, RunResult, run
from training.trainer.evaluate import EvalConfig, HeldOut, held_out_shards
from training.trainer.gate import GateConfig, GatedStream, Rejection
from training.trainer.metrics import JsonLines
from training.trainer.model import ModelConfig, Transformer
from training.trainer.parallelize import Distributed, all_gather_floats, to_device


@dataclass
class TrainConfig(EngineConfig):
    data: DataConfig = field(default_factory=DataConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    document_masking: bool = field(default=False, metadata={
        "help": "attend only within each packed document (shards' doc_starts); SDPA path, not flash-attn"})
    eval: EvalConfig = field(default_factory=EvalConfig)


class Pretraining:
    def __init__(self, cfg: TrainConfig, data: str, dist_info: Distributed, model_cfg: ModelConfig, run_dir: str,
                 held_out: list[str]):
        self.cfg, self.dist, self.run_dir = cfg, dist_info, run_dir
        self.stream = TokenStream(data, cfg.micro_batch, cfg.data, doc_starts=cfg.document_masking,
                                  exclude=frozenset(held_out))
        self.seq_len = self.stream.seq_len
        vocab = int(self.stream.manifest["tokenizer"]["vocab_size"])
        if vocab > model_cfg.vocab_size:
            raise ValueError(f"the tokenizer has {vocab} ids, more than {cfg.model}'s vocab_size "
                             f"{model_cfg.vocab_size}; set model_overrides.vocab_size")
        if self.seq_len > model_cfg.max_seq_len:
            raise ValueError(f"the shards hold {self.seq_len}-token sequences, longer than {cfg.model}'s "
                             f"max_seq_len {model_cfg.max_seq_len}; set model_overrides.max_seq_len")
        self.held_out = self._held_out(data, held_out)
        self.gated: GatedStream | None = None
        self.rejections_total = 0

    def start(self, state: dict | None, model: Transformer) -> None:
        cursor = 0
        if state is not None:
            if state["manifest_sha256"] != self.stream.manifest_sha256:
                raise ValueError("the token shards' manifest changed since the checkpoint; resume needs the same data")
            if state["micro_batch"] != self.cfg.micro_batch or state["seed"] != self.cfg.data.seed:
                raise ValueError(f"resume needs the same micro-batch size and data seed as the checkpoint "
                                 f"(micro_batch {state['micro_batch']}, seed {state['seed']}); "
                                 "change grad_accum to keep the global batch on another world size")
            cursor, self.rejections_total = state["cursor"], state["gate_rejections_total"]
        # On resume, lines logged after the checkpoint's cursor are dropped: those micro-batches are gated again.
        self.rejections = JsonLines(storage.join(self.run_dir, "gate_rejections.jsonl"))
        if self.dist.is_main:
            self.rejections.keep(lambda line: line["micro_batch"] < cursor)
        on_reject = self._log_rejection if self.dist.is_main else None
        gather = lambda values: all_gather_floats(values, self.dist.device)  # noqa: E731
        self.gated = GatedStream(self.stream, self.cfg.gate, self.dist.rank, self.dist.world, gather, cursor,
                                 on_reject)

    def _held_out(self, data: str, held_out: list[str]) -> HeldOut | None:
        """The evaluation set: eval.data, else the held-out shards of `data`, else none."""
        if not (self.cfg.eval.data or held_out) or self.cfg.eval.every <= 0:
            return None
        stream = TokenStream(self.cfg.eval.data or data, self.cfg.micro_batch, self.cfg.data,
                             doc_starts=self.cfg.document_masking, only=None if self.cfg.eval.data else frozenset(held_out))
        ours, theirs = self.stream.manifest["tokenizer"], stream.manifest["tokenizer"]
        if theirs.get("sha256") != ours.get("sha256") or stream.seq_len != self.seq_len:
            raise ValueError(f"eval data {self.cfg.eval.data}: tokenizer {theirs.get('sha256')}, seq_len "
                             f"{stream.seq_len}; the training shards have {ours.get('sha256')}, {self.seq_len}: "
                             "tokenize it with the training data's tokenizer and seq_len")
        return HeldOut(stream, self.cfg.eval.sequences, self.dist)

    def evaluate(self, model: Transformer, step: int, final: bool) -> dict[str, float]:
        """Held-out loss every eval.every steps and at the end; {} otherwise (or without held-out data)."""
        if self.held_out is None or not (final or step % self.cfg.eval.every == 0):
            return {}
        return self.held_out.evaluate(model, self.loss, self.weight)

    def next_batch(self) -> tuple[MicroBatch, dict[str, float]]:
        gate_seconds = self.gated.gate_seconds
        batch, rejections = self.gated.next()
        self.rejections_total += len(rejections)
        return batch, {"gate_rejections": len(rejections), "gate_seconds": self.gated.gate_seconds - gate_seconds}

    def weight(self, batch: MicroBatch) -> float:
        return float(np.clip(batch.num_tokens - 1, 0, None).sum())

    def tokens(self, batch: MicroBatch) -> int:
        return int(batch.tokens.shape[0] * (batch.tokens.shape[1] - 1))

    def loss(self, model: Transformer, batch: MicroBatch) -> tuple[torch.Tensor, dict[str, float]]:
        tokens = to_device(batch.tokens, self.dist.device)
        doc_ids = to_device(batch.doc_ids[:, :-1], self.dist.device) if self.cfg.document_masking else None
        logprobs = model(tokens[:, :-1], tokens[:, 1:], doc_ids)
        positions = torch.arange(logprobs.shape[1], device=self.dist.device)
        mask = positions[None, :] + 1 < to_device(batch.num_tokens, self.dist.device)[:, None]
        return -(logprobs * mask).sum(), {}

    def step_metrics(self, info: dict[str, float], sums: dict[str, float], weight: float) -> dict:
        return {"gate_rejections": int(info["gate_rejections"]), "gate_rejections_total": self.rejections_total,
                "gate_rejection_rate": self.gated.rejection_rate,
                "gate_seconds": info["gate_seconds"], "epoch": self.gated.cursor // self.stream.per_epoch}

    def state(self) -> dict:
        return {"seed": self.cfg.data.seed, "micro_batch": self.cfg.micro_batch, "cursor": self.gated.cursor,
                "gate_rejections_total": self.rejections_total, "manifest_sha256": self.stream.manifest_sha256}

    def close(self) -> None:
        self.stream.close()
        if self.held_out is not None:
            self.held_out.close()

    def _log_rejection(self, r: Rejection) -> None:
        """One line per rejected micro-batch, written when its verdict is known (rejections are rare)."""
        self.rejections.append({"micro_batch": r.index, "epoch": r.epoch, "fraction": r.fraction,
                                "shards": list(r.shards)})


def train(cfg: TrainConfig, data: str, out: str, progress=None) -> RunResult:
    """Pretrain cfg.model on the token shards at `data`, writing the run to `out` (resumes if present)."""
    run_dir = out.rstrip("/")
    held_out = [] if cfg.eval.data else held_out_shards(data, cfg.eval.holdout_fraction)

    def make(dist_info: Distributed, model_cfg: ModelConfig) -> Pretraining:
        return Pretraining(cfg, data, dist_info, model_cfg, run_dir, held_out)

    evaluation = {"data": cfg.eval.data or data, "held_out_shards": held_out}
    return run(cfg, out, make, describe={"kind": "pretrain", "data": data, "eval": evaluation}, progress=progress)
