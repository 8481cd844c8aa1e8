"""DPO on the pretraining engine: the write-up's sigmoid loss, reference log-probs computed once and stored.

The reference model is the starting checkpoint. Before the first step its log-probs of every pair's
chosen and rejected response are computed in one streaming pass (no gradients, sharded over the
ranks) and written to a Parquet sidecar keyed by pair_id, with the checkpoint's and the tokenizer's
sha256 in the file's metadata. A later run with the same checkpoint and tokenizer reuses it; a
mismatch recomputes it and says why. No reference model is held while training. The sidecar covers every
pair of the training data, held out or not; `eval.data` gets its own, EVAL_DATA/reference_logps.parquet, by
the same rule.

Held-out pairs. Without `eval.data`, a pair is held out when its sha256(pair_id), read as a 256-bit big-endian
number and scaled to [0, 1) (divided by 2**256), is below `eval.holdout_fraction`: a property of the pair alone,
the same on every run, rank and world size. The training order covers only the other pairs, so a held-out pair
is never in a training micro-batch. RUN/config.json records the rule under `eval`: the data, the fraction, the
held-out count and `held_out_sha256`, the sha256 of the sorted held-out pair_ids joined by newlines. With
`eval.data` (another validated prep-pairs output, same tokenizer) nothing is held out of the training pairs.

Every `eval.every` steps and at the end, the first `eval.pairs` held-out pairs in file order (or of `eval.data`),
cut into the run's micro-batches, are scored in lockstep (training/trainer/evaluate.py:lockstep_sums): rank r
scores micro-batches r, r+W, ... and the sums are added in micro-batch order. Logged: `eval_loss` (mean DPO
loss), `eval_reward_accuracy` (share of pairs whose chosen reward beats the rejected one), `eval_reward_margin`
(mean chosen - rejected reward) and `eval_pairs`. The numbers are a function of the weights alone: any world
size, and a resumed run, reports what an uninterrupted one does.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice

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
from training.trainer.evaluate import lockstep_sums
from training.trainer.model import ModelConfig, Transformer
from training.trainer.optim import ScheduleConfig
from training.trainer.parallelize import Distributed, to_device


@dataclass
class PairsDataConfig:
    seed: int = field(default=0, metadata={"help": "seed of the (seed, epoch) pair order"})
    allow_unvalidated: bool = field(default=False, metadata={"help": "accept pairs whose validation failed or is missing"})


@dataclass
class DPOEvalConfig:
    every: int = field(default=250, metadata={"help": "steps between held-out evaluations (one more at the end); 0: none"})
    pairs: int = field(default=256, metadata={"help": "held-out pairs per evaluation, the same ones on any world size"})
    data: str = field(default="", metadata={
        "help": "pairs to evaluate on (a validated `clover prep-pairs` output with the training pairs' tokenizer); "
                "empty: hold out a share of the training pairs"})
    holdout_fraction: float = field(default=0.05, metadata={
        "help": "share of the training pairs held out when eval.data is empty: those whose sha256(pair_id), scaled "
                "to [0, 1), is below it"})


@dataclass
class DPOConfig(EngineConfig):
    beta: float = field(default=0.1, metadata={"help": "DPO beta"})
    reference: str = field(default='', metadata={"help": "reference log-probs sidecar (default PAIRS/reference_logps.parquet)"})
    data: PairsDataConfig = field(default_factory=PairsDataConfig)
    eval: DPOEvalConfig = field(default_factory=DPOEvalConfig)
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


def score(model: Transformer, batch: PairBatch, reference: dict[str, tuple[float, float]], device: torch.device,
          beta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per pair: the DPO loss, the chosen and rejected rewards; and the policy's log-probs (chosen, then rejected)."""
    logps = sequence_logps(model, batch, device)
    half = len(batch.pair_ids)
    ref = torch.tensor([reference[p] for p in batch.pair_ids], dtype=logps.dtype, device=logps.device)
    losses, chosen, rejected = dpo_loss(logps[:half], logps[half:], ref[:, 0], ref[:, 1], beta)
    return losses, chosen, rejected, logps


def is_held_out(pair_id: str, fraction: float) -> bool:
    """sha256(pair_id) as a big-endian number, scaled to [0, 1), below `fraction` (compared exactly)."""
    return int.from_bytes(hashlib.sha256(pair_id.encode()).digest(), "big") < fraction * 2**256


def ids_sha256(pair_ids: list[str]) -> str:
    """sha256 of the sorted pair_ids joined by newlines: what RUN/config.json records of a held-out set."""
    return hashlib.sha256("\n".join(sorted(pair_ids)).encode()).hexdigest()


class PairsData:
    """A validated prep-pairs output: its report and row groups; rows read one row group at a time."""

    def __init__(self, pairs: str, cfg: PairsDataConfig):
        self.validation = require_validated(pairs, cfg.allow_unvalidated, kind="pairs")
        self.root = pairs.rstrip("/")
        self.report = json.loads(storage.read_text(storage.join(self.root, "report.json")))
        self.row_groups = parquet_row_groups(
            [f.uri for f in storage.expand(storage.join(self.root, "pairs"), (".parquet",))])
        self.pairs = sum(rows for *_, rows in self.row_groups)
        self._cache: dict[int, list[dict]] = {}

    def _read(self, group: int, columns: list[str]) -> pa.Table:
        uri, index, _ = self.row_groups[group]
        fs, path = storage.resolve(uri)
        with fs.open_input_file(path) as handle:
            return pq.ParquetFile(handle).read_row_group(index, columns=columns)

    def rows(self, group: int) -> list[dict]:
        if group not in self._cache:
            if len(self._cache) >= 4:
                self._cache.pop(next(iter(self._cache)))
            self._cache[group] = self._read(group, ["pair_id", "prompt_ids", "chosen_ids", "rejected_ids"]).to_pylist()
        return self._cache[group]

    def pair_ids(self, group: int) -> list[str]:
        """One row group's pair_ids (only that column is read)."""
        return self._read(group, ["pair_id"]).column("pair_id").to_pylist()

    def held_out(self, fraction: float) -> list[str]:
        """The pair_ids held out of training at `fraction` (is_held_out), sorted."""
        if fraction <= 0:
            return []
        return sorted(p for group in range(len(self.row_groups)) for p in self.pair_ids(group)
                      if is_held_out(p, fraction))

    def in_file_order(self) -> Iterator[dict]:
        """Every pair once, in file order."""
        for group in range(len(self.row_groups)):
            yield from self.rows(group)


class PairStream:
    """The training pairs of a validated prep-pairs output (all but `exclude`), in a (seed, epoch) order: row
    groups permuted, then the rows of each."""

    def __init__(self, pairs: str | PairsData, micro_batch: int, cfg: PairsDataConfig,
                 exclude: frozenset[str] = frozenset()):
        self.data = pairs if isinstance(pairs, PairsData) else PairsData(pairs, cfg)
        self.validation, self.root, self.report = self.data.validation, self.data.root, self.data.report
        self.row_groups = self.data.row_groups
        # the rows of each row group that are trained on (all of them when nothing is excluded)
        self.kept = [np.arange(rows) if not exclude else
                     np.array([i for i, p in enumerate(self.data.pair_ids(g)) if p not in exclude], dtype=np.int64)
                     for g, (*_, rows) in enumerate(self.row_groups)]
        self.pairs = sum(len(rows) for rows in self.kept)
        if self.pairs < micro_batch:
            held = f" ({self.data.pairs - self.pairs} more held out for evaluation)" if self.pairs < self.data.pairs else ""
            raise ValueError(f"{self.root}: {self.pairs} training pairs{held}, "
                             f"fewer than one micro-batch of {micro_batch}")
        self.micro, self.seed = micro_batch, cfg.seed
        self.per_epoch = self.pairs // micro_batch
        self._order: tuple[int, np.ndarray, np.ndarray] | None = None

    def in_file_order(self) -> Iterator[dict]:
        """Every pair of the data once, held out or not, in file order: the reference pass."""
        return self.data.in_file_order()

    def micro_batch(self, index: int) -> list[dict]:
        epoch, position = divmod(index, self.per_epoch)
        if self._order is None or self._order[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch])
            groups = rng.permutation(len(self.row_groups))
            group_of = np.concatenate([np.full(len(self.kept[g]), g) for g in groups])
            row_of = np.concatenate([self.kept[g][rng.permutation(len(self.kept[g]))] for g in groups])
            self._order = (epoch, group_of, row_of)
        _, group_of, row_of = self._order
        span = slice(position * self.micro, (position + 1) * self.micro)
        return [self.data.rows(int(g))[int(r)] for g, r in zip(group_of[span], row_of[span])]


class HeldOutPairs:
    """A fixed list of pairs never trained on, scored in lockstep on every rank (module docstring)."""

    def __init__(self, pairs: list[dict], reference: dict[str, tuple[float, float]], micro_batch: int,
                 dist_info: Distributed):
        self.batches = [build_batch(pairs[i:i + micro_batch]) for i in range(0, len(pairs), micro_batch)]
        self.reference, self.dist = reference, dist_info

    def evaluate(self, model: Transformer, beta: float) -> dict[str, float]:
        """{eval_loss, eval_reward_accuracy, eval_reward_margin, eval_pairs}."""
        def sums(index: int) -> list[float]:
            batch = self.batches[index]
            losses, chosen, rejected, _ = score(model, batch, self.reference, self.dist.device, beta)
            totals = torch.stack([losses.double().sum(), (chosen > rejected).double().sum(),
                                  (chosen - rejected).double().sum()]).tolist()
            return [*totals, float(len(batch.pair_ids))]

        loss, correct, margin, pairs = lockstep_sums(len(self.batches), self.dist, sums)
        return {"eval_loss": loss / pairs, "eval_reward_accuracy": correct / pairs,
                "eval_reward_margin": margin / pairs, "eval_pairs": int(pairs)}


class DPO:
    def __init__(self, cfg: DPOConfig, pairs: str | PairsData, init: str, dist_info: Distributed,
                 held_out: frozenset[str] = frozenset()):
        self.cfg, self.dist = cfg, dist_info
        self.stream = PairStream(pairs, cfg.micro_batch, cfg.data, exclude=held_out)
        self.held_out_ids, self.held_out_sha256 = held_out, ids_sha256(list(held_out))
        self.init = init
        self.reference_path = cfg.reference or storage.join(self.stream.root, "reference_logps.parquet")
        self.tokenizer_sha = self.stream.report.get("tokenizer", {}).get("sha256", "")
        self.eval_data: PairsData | None = None
        if cfg.eval.data and cfg.eval.every > 0:
            self.eval_data = PairsData(cfg.eval.data, cfg.data)
            theirs = self.eval_data.report.get("tokenizer", {}).get("sha256", "")
            if theirs != self.tokenizer_sha:
                raise ValueError(f"eval data {cfg.eval.data}: tokenizer {theirs}; the training pairs have "
                                 f"{self.tokenizer_sha}: prepare it with the training pairs' tokenizer")
        self.reference: dict[str, tuple[float, float]] = {}
        self.held_out: HeldOutPairs | None = None
        self.cursor = 0
        self.seq_len = 0

    def start(self, state: dict | None, model: Transformer) -> None:
        # a checkpoint from before held-out pairs trained on all of them: resumable with eval.holdout_fraction=0
        if state is not None and state.get("held_out_sha256", ids_sha256([])) != self.held_out_sha256:
            raise ValueError("the held-out pairs changed since the checkpoint (eval.data, eval.holdout_fraction or "
                             "the pairs); resume needs the same split (eval.holdout_fraction=0 for a run started "
                             "before pairs were held out)")
        checkpoint_hash = checkpoint.checkpoint_sha256(self.init) if self.dist.is_main else ""
        checkpoint_hash = _broadcast(checkpoint_hash)
        wanted = {"checkpoint_sha256": checkpoint_hash, "tokenizer_sha256": self.tokenizer_sha}
        self.reference = self._reference(self.stream.data, self.reference_path, wanted, state, model)
        self.held_out = self._held_out(wanted, state, model)
        self.cursor = state["cursor"] if state else 0

    def _reference(self, data: PairsData, uri: str, wanted: dict, state: dict | None,
                   model: Transformer) -> dict[str, tuple[float, float]]:
        """The reference log-probs of every pair of `data`: reused from `uri`, or computed there (fresh runs only:
        a resumed model is no longer the reference)."""
        found = _read_reference_metadata(uri)
        if found == wanted:
            _log(self.dist, f"reusing reference log-probs {uri}")
        elif state is not None:
            raise ValueError(f"{uri} does not match the run being resumed ({found} vs {wanted})")
        else:
            why = ("none stored yet" if found is None else
                   "the starting checkpoint changed" if found.get("checkpoint_sha256") != wanted["checkpoint_sha256"] else
                   "the tokenizer changed")
            _log(self.dist, f"computing reference log-probs ({why}) -> {uri}")
            self._compute_reference(model, data, uri, wanted)
        fs, path = storage.resolve(uri)
        table = pq.read_table(path, filesystem=fs)
        return dict(zip(table.column("pair_id").to_pylist(),
                        zip(table.column("ref_chosen_logp").to_pylist(), table.column("ref_rejected_logp").to_pylist())))

    def _held_out(self, wanted: dict, state: dict | None, model: Transformer) -> HeldOutPairs | None:
        """The evaluation set: the first eval.pairs pairs of eval.data, else of the held-out pairs; or none."""
        every, count = self.cfg.eval.every, self.cfg.eval.pairs
        if every <= 0 or count <= 0:
            return None
        if self.eval_data is not None:
            pairs = list(islice(self.eval_data.in_file_order(), count))
            reference = self._reference(self.eval_data, storage.join(self.eval_data.root, "reference_logps.parquet"),
                                        wanted, state, model)
        else:
            held = self.held_out_ids
            pairs = list(islice((p for p in self.stream.in_file_order() if p["pair_id"] in held), count))
            reference = self.reference
        if not pairs:
            _log(self.dist, f"no held-out pairs (eval.holdout_fraction {self.cfg.eval.holdout_fraction}): no evaluation")
            return None
        return HeldOutPairs(pairs, reference, self.cfg.micro_batch, self.dist)

    def evaluate(self, model: Transformer, step: int, final: bool) -> dict[str, float]:
        """Held-out DPO numbers every eval.every steps and at the end; {} otherwise (or without held-out pairs)."""
        if self.held_out is None or not (final or step % self.cfg.eval.every == 0):
            return {}
        return self.held_out.evaluate(model, self.cfg.beta)

    @torch.no_grad()
    def _compute_reference(self, model: Transformer, data: PairsData, uri: str, metadata: dict) -> None:
        pairs = list(data.in_file_order())
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
            fs, path = storage.resolve(uri)
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
        losses, chosen, rejected, logps = score(model, batch, self.reference, self.dist.device, self.cfg.beta)
        half = len(batch.pair_ids)
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
                "reference": self.reference_path, "held_out_sha256": self.held_out_sha256}


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

    data = PairsData(pairs, cfg.data)
    held_out = [] if cfg.eval.data else data.held_out(cfg.eval.holdout_fraction)

    def make(dist_info: Distributed, model_cfg: ModelConfig) -> DPO:
        return DPO(cfg, data, init, dist_info, frozenset(held_out))

    evaluation = {"data": cfg.eval.data or pairs, "holdout_fraction": None if cfg.eval.data else cfg.eval.holdout_fraction,
                  "held_out_pairs": len(held_out), "held_out_sha256": ids_sha256(held_out)}
    describe = {"kind": "dpo", "pairs": pairs, "init": init, "init_run": init_run, "eval": evaluation}
    return run(cfg, out, make, init_from=init, describe=describe, progress=progress)
