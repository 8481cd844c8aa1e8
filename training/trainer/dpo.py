"""DPO on the pretraining engine: the write-up's sigmoid loss, reference log-probs computed once and stored.

The reference model is the starting checkpoint. Before the first step its log-probs of every pair's
chosen and rejected response are computed in one streaming pass (no gradients, sharded over the
ranks) and written to a Parquet sidecar keyed by pair_id, with the checkpoint's and the tokenizer's
sha256 in the file's metadata. A later run with the same checkpoint and tokenizer reuses it; a
mismatch recomputes it and says why. No reference model is held while training.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.distributed as dist
import torch.nn.functional as F

from quality.gate import require_validated
from schemas import storage
from schemas.chat import REFERENCE_SCHEMA
from training.trainer import checkpoint
from training.trainer.data import parquet_row_groups
from training.trainer.engine import EngineConfig, RunResult, run
from training.trainer.model import ModelConfig, Transformer
from training.trainer.optim import ScheduleConfig
from training.trainer.parallelize import Distributed, to_device


@dataclass
class PairsDataConfig:
    seed: int = field(default=0, metadata={"help": "seed of the (seed, epoch) pair order"})
    allow_unvalidated: bool = field(default=False, metadata={"help": "accept pairs whose validation failed or is missing"})


@dataclass
class DPOConfig(EngineConfig):
    beta: float = field(default=0.1, metadata={"help": "DPO beta"})
    reference: str = field(default='', metadata={"help": "reference log-probs sidecar (default PAIRS/reference_logps.parquet)"})
    data: PairsDataConfig = field(default_factory=PairsDataConfig)
    max_steps: int = field(default=2500, metadata={"help": "optimizer steps"})
    schedule: ScheduleConfig = field(default_factory=lambda: ScheduleConfig(
        warmup_steps=150, max_lr=5e-7, min_lr=5e-8, total_steps=2500))


def dpo_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
             ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor, beta: float = 0.1
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The write-up's loss per pair (its mean is the write-up's dpo_loss), and the two rewards."""
    chosen_rewards = beta * (policy_chosen_logps - ref_chosen_logps)
    rejected_rewards = beta * (policy_rejected_logps - ref_rejected_logps)
    return -F.logsigmoid(chosen_rewards - rejected_rewards), chosen_rewards, rejected_rewards


@dataclass(frozen=True)
class PairBatch:
    pair_ids: list[str]
    tokens: np.ndarray        # (2 * pairs, length): chosen sequences, then rejected, right-padded with 0
    response_mask: np.ndarray  # (2 * pairs, length - 1): labels that are response tokens


def build_batch(pairs: list[dict]) -> PairBatch:
    """prompt + chosen and prompt + rejected, padded to the longest; only response tokens are scored."""
    sequences = [p["prompt_ids"] + p["chosen_ids"] for p in pairs] + [p["prompt_ids"] + p["rejected_ids"] for p in pairs]
    prompts = [len(p["prompt_ids"]) for p in pairs] * 2
    length = max(len(s) for s in sequences)
    tokens = np.zeros((len(sequences), length), dtype=np.int64)
    mask = np.zeros((len(sequences), length - 1), dtype=bool)
    for i, (sequence, prompt) in enumerate(zip(sequences, prompts)):
        tokens[i, : len(sequence)] = sequence
        mask[i, prompt - 1 : len(sequence) - 1] = True  # label j is token j + 1
    return PairBatch([p["pair_id"] for p in pairs], tokens, mask)


def sequence_logps(model: Transformer, batch: PairBatch, device: torch.device) -> torch.Tensor:
    """Summed log-probability of each sequence's response tokens (chunked: no full-vocabulary logits)."""
    tokens = to_device(batch.tokens, device)
    logprobs = model(tokens[:, :-1], tokens[:, 1:])
    return (logprobs * to_device(batch.response_mask, device)).sum(-1)


class PairStream:
    """Pairs of a validated prep-pairs output, one row group at a time, in a (seed, epoch) order."""

    def __init__(self, pairs: str, micro_batch: int, cfg: PairsDataConfig):
        self.validation = require_validated(pairs, cfg.allow_unvalidated, kind="pairs")
        self.root = pairs.rstrip("/")
        self.report = json.loads(storage.read_text(storage.join(self.root, "report.json")))
        self.row_groups = parquet_row_groups(
            [f.uri for f in storage.expand(storage.join(self.root, "pairs"), (".parquet",))])
        self.pairs = sum(rows for *_, rows in self.row_groups)
        if self.pairs < micro_batch:
            raise ValueError(f"{pairs}: {self.pairs} pairs, fewer than one micro-batch of {micro_batch}")
        self.micro, self.seed = micro_batch, cfg.seed
        self.per_epoch = self.pairs // micro_batch
        self._order: tuple[int, np.ndarray, np.ndarray] | None = None
        self._cache: dict[int, list[dict]] = {}

    def _rows(self, group: int) -> list[dict]:
        if group not in self._cache:
            if len(self._cache) >= 4:
                self._cache.pop(next(iter(self._cache)))
            uri, index, _ = self.row_groups[group]
            fs, path = storage.resolve(uri)
            with fs.open_input_file(path) as handle:
                table = pq.ParquetFile(handle).read_row_group(
                    index, columns=["pair_id", "prompt_ids", "chosen_ids", "rejected_ids"])
            self._cache[group] = table.to_pylist()
        return self._cache[group]

    def in_file_order(self):
        """Every pair once, in file order: the reference pass."""
        for group in range(len(self.row_groups)):
            yield from self._rows(group)

    def micro_batch(self, index: int) -> list[dict]:
        epoch, position = divmod(index, self.per_epoch)
        if self._order is None or self._order[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch])
            groups = rng.permutation(len(self.row_groups))
            group_of = np.concatenate([np.full(self.row_groups[g][2], g) for g in groups])
            row_of = np.concatenate([rng.permutation(self.row_groups[g][2]) for g in groups])
            self._order = (epoch, group_of, row_of)
        _, group_of, row_of = self._order
        span = slice(position * self.micro, (position + 1) * self.micro)
        return [self._rows(int(g))[int(r)] for g, r in zip(group_of[span], row_of[span])]


class DPO:
    def __init__(self, cfg: DPOConfig, pairs: str, init: str, dist_info: Distributed):
        self.cfg, self.dist = cfg, dist_info
        self.stream = PairStream(pairs, cfg.micro_batch, cfg.data)
        self.init = init
        self.reference_path = cfg.reference or storage.join(pairs.rstrip("/"), "reference_logps.parquet")
        self.tokenizer_sha = self.stream.report.get("tokenizer", {}).get("sha256", "")
        self.reference: dict[str, tuple[float, float]] = {}
        self.cursor = 0
        self.seq_len = 0

    def start(self, state: dict | None, model: Transformer) -> None:
        checkpoint_hash = checkpoint.checkpoint_sha256(self.init) if self.dist.is_main else ""
        checkpoint_hash = _broadcast(checkpoint_hash)
        wanted = {"checkpoint_sha256": checkpoint_hash, "tokenizer_sha256": self.tokenizer_sha}
        found = _read_reference_metadata(self.reference_path)
        if found == wanted:
            _log(self.dist, f"reusing reference log-probs {self.reference_path}")
        elif state is not None:
            raise ValueError(f"{self.reference_path} does not match the run being resumed ({found} vs {wanted})")
        else:
            why = ("none stored yet" if found is None else
                   "the starting checkpoint changed" if found.get("checkpoint_sha256") != checkpoint_hash else
                   "the tokenizer changed")
            _log(self.dist, f"computing reference log-probs ({why}) -> {self.reference_path}")
            self._compute_reference(model, wanted)
        fs, path = storage.resolve(self.reference_path)
        table = pq.read_table(path, filesystem=fs)
        self.reference = dict(zip(table.column("pair_id").to_pylist(),
                                  zip(table.column("ref_chosen_logp").to_pylist(), table.column("ref_rejected_logp").to_pylist())))
        self.cursor = state["cursor"] if state else 0

    @torch.no_grad()
    def _compute_reference(self, model: Transformer, metadata: dict) -> None:
        pairs = list(self.stream.in_file_order())
        batches = [pairs[i:i + self.cfg.micro_batch] for i in range(0, len(pairs), self.cfg.micro_batch)]
        rounds = -(-len(batches) // self.dist.world)
        rows: list[tuple[str, float, float]] = []
        for k in range(rounds):  # every rank runs `rounds` forwards; one past the end repeats the last batch
            index = k * self.dist.world + self.dist.rank
            batch = build_batch(batches[min(index, len(batches) - 1)])
            logps = sequence_logps(model, batch, self.dist.device).double().cpu().numpy()
            if index < len(batches):
                half = len(batch.pair_ids)
                rows += zip(batch.pair_ids, logps[:half].tolist(), logps[half:].tolist())
        gathered = [None] * self.dist.world
        dist.all_gather_object(gathered, rows)
        if self.dist.is_main:
            merged = sorted(row for part in gathered for row in part)
            table = pa.Table.from_arrays([pa.array(c) for c in zip(*merged)], schema=REFERENCE_SCHEMA.arrow())
            table = table.replace_schema_metadata({k.encode(): v.encode() for k, v in metadata.items()})
            fs, path = storage.resolve(self.reference_path)
            pq.write_table(table, path, filesystem=fs)
        dist.barrier()

    def next_batch(self) -> tuple[PairBatch, dict[str, float]]:
        index, self.cursor = self.cursor + self.dist.rank, self.cursor + self.dist.world
        batch = build_batch(self.stream.micro_batch(index))
        self.seq_len = batch.tokens.shape[1] - 1
        return batch, {}

    def weight(self, batch: PairBatch) -> float:
        return float(len(batch.pair_ids))

    def tokens(self, batch: PairBatch) -> int:
        return int(batch.tokens.size)

    def loss(self, model: Transformer, batch: PairBatch) -> tuple[torch.Tensor, dict[str, float]]:
        logps = sequence_logps(model, batch, self.dist.device)
        half = len(batch.pair_ids)
        reference = torch.tensor([self.reference[p] for p in batch.pair_ids], dtype=logps.dtype, device=logps.device)
        losses, chosen, rejected = dpo_loss(logps[:half], logps[half:], reference[:, 0], reference[:, 1], self.cfg.beta)
        stats = torch.stack([(chosen > rejected).float().sum(), chosen.sum(), rejected.sum(), logps[:half].sum(),
                             logps[half:].sum()]).tolist()
        keys = ("reward_correct", "chosen_reward", "rejected_reward", "chosen_logp", "rejected_logp")
        return losses.sum(), dict(zip(keys, stats))

    def step_metrics(self, info: dict[str, float], sums: dict[str, float], weight: float) -> dict:
        mean = {k: v / max(weight, 1.0) for k, v in sums.items()}
        return {"reward_accuracy": mean["reward_correct"], "chosen_reward": mean["chosen_reward"],
                "rejected_reward": mean["rejected_reward"], "reward_margin": mean["chosen_reward"] - mean["rejected_reward"],
                "chosen_logp": mean["chosen_logp"], "rejected_logp": mean["rejected_logp"], "pairs": int(weight),
                "epoch": self.cursor // self.stream.per_epoch}

    def state(self) -> dict:
        return {"cursor": self.cursor, "seed": self.cfg.data.seed, "micro_batch": self.cfg.micro_batch,
                "reference": self.reference_path}


def _read_reference_metadata(uri: str) -> dict | None:
    if not storage.exists(uri):
        return None
    fs, path = storage.resolve(uri)
    with fs.open_input_file(path) as handle:
        metadata = pq.ParquetFile(handle).schema_arrow.metadata or {}
    return {k.decode(): v.decode() for k, v in metadata.items() if k in (b"checkpoint_sha256", b"tokenizer_sha256")}


def _broadcast(value: str) -> str:
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def _log(dist_info: Distributed, message: str) -> None:
    if dist_info.is_main:
        print(message, file=sys.stderr, flush=True)


def run_dpo(cfg: DPOConfig, pairs: str, init_run: str, out: str, progress=None) -> RunResult:
    """DPO from the newest checkpoint of `init_run` on a prep-pairs output, writing the run to `out`."""
    init = checkpoint.newest(init_run)
    previous = json.loads(storage.read_text(storage.join(init_run, "config.json")))
    cfg.model, cfg.model_overrides = previous["model"], previous["engine"]["model_overrides"]

    def make(dist_info: Distributed, model_cfg: ModelConfig) -> DPO:
        return DPO(cfg, pairs, init, dist_info)

    describe = {"kind": "dpo", "pairs": pairs, "init": init, "init_run": init_run}
    return run(cfg, out, make, init_from=init, describe=describe, progress=progress)
