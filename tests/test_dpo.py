"""DPO: the write-up's loss in float64, learning a planted preference on clover-tiny, reference reuse."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from schemas.chat import PAIRS
from tests.token_shards import write_token_shards
from training.trainer.dpo import DPOConfig, build_batch, dpo_loss, run_dpo
from training.trainer.pretrain import TrainConfig, train


def test_loss_is_the_writeups_formula_in_float64():
    rng = np.random.default_rng(0)
    pc, pr, rc, rr = (rng.normal(-50, 10, 64) for _ in range(4))
    beta = 0.1
    expected = np.mean(np.log1p(np.exp(-(beta * (pc - rc) - beta * (pr - rr)))))  # -log(sigmoid(x)) = log(1 + e^-x)
    losses, chosen, rejected = dpo_loss(*(torch.tensor(x, dtype=torch.float64) for x in (pc, pr, rc, rr)), beta=beta)
    assert losses.mean().item() == pytest.approx(expected, rel=1e-12)
    assert np.allclose(chosen.numpy(), beta * (pc - rc)) and np.allclose(rejected.numpy(), beta * (pr - rr))


def test_batch_scores_response_tokens_only():
    batch = build_batch([{"pair_id": "a", "prompt_ids": [1, 5, 9, 7, 6], "chosen_ids": [20, 21, 7], "rejected_ids": [30, 7]}])
    assert batch.tokens.tolist() == [[1, 5, 9, 7, 6, 20, 21, 7], [1, 5, 9, 7, 6, 30, 7, 0]]
    labels = batch.tokens[:, 1:]
    assert labels[0][batch.response_mask[0]].tolist() == [20, 21, 7]
    assert labels[1][batch.response_mask[1]].tolist() == [30, 7]


def write_pairs(root: Path, count: int = 64, seed: int = 0) -> Path:
    """Pairs whose chosen response counts up from the prompt's last token (learnable); rejected is random."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(count):
        prompt = [1, 5, *rng.integers(12, 400, 6).tolist(), 7, 6]
        start = int(rng.integers(12, 380))
        chosen = [*range(start, start + 8), 7]
        rejected = [*rng.integers(12, 400, 8).tolist(), 7]
        rows.append({"pair_id": f"p{i:03d}", "prompt": f"p{i}", "chosen": f"c{i}", "rejected": f"r{i}", "source": "test",
                     "meta": None, "prompt_ids": prompt, "chosen_ids": chosen, "rejected_ids": rejected,
                     "prompt_truncated": False, "responses_truncated": False})
    (root / "pairs").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=PAIRS.arrow()), root / "pairs" / "part-00000.parquet", row_group_size=16)
    report = {"stage": "prep-pairs", "input": count, "output": count, "removed": {}, "quarantined": {},
              "tokenizer": {"sha256": "tok-a", "vocab_size": 500}, "validation": {"success": True, "failed": []}}
    (root / "report.json").write_text(json.dumps(report))
    return root


def dpo_config(steps: int) -> DPOConfig:
    cfg = DPOConfig(micro_batch=4, grad_accum=2, max_steps=steps, tensorboard=False)
    cfg.schedule.warmup_steps, cfg.schedule.max_lr, cfg.schedule.min_lr, cfg.schedule.total_steps = 2, 3e-3, 3e-3, steps
    cfg.checkpoint.every = 1000
    return cfg


def test_dpo_learns_a_planted_preference_and_reuses_reference_logps(tmp_path, capsys):
    data = str(write_token_shards(tmp_path / "tok"))
    pre = TrainConfig(model="clover-tiny", micro_batch=2, grad_accum=1, max_steps=2, tensorboard=False)
    train(pre, data, str(tmp_path / "pre"))
    pairs = write_pairs(tmp_path / "pairs")
    run_dpo(dpo_config(40), str(pairs), str(tmp_path / "pre"), str(tmp_path / "dpo"))
    assert "computing reference log-probs (none stored yet)" in capsys.readouterr().err
    metrics = [json.loads(line) for line in (tmp_path / "dpo" / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 40 and all("reward_accuracy" in m and "reward_margin" in m for m in metrics)
    assert np.mean([m["reward_accuracy"] for m in metrics[-5:]]) > 0.9
    assert np.mean([m["reward_margin"] for m in metrics[-5:]]) > np.mean([m["reward_margin"] for m in metrics[:5]]) + 0.1
    assert abs(metrics[0]["reward_margin"]) < 1e-3  # step 1: the policy is the reference
    reference = pq.read_table(pairs / "reference_logps.parquet")
    assert reference.num_rows == 64 and reference.schema.metadata[b"tokenizer_sha256"] == b"tok-a"

    run_dpo(dpo_config(2), str(pairs), str(tmp_path / "pre"), str(tmp_path / "dpo2"))
    assert "reusing reference log-probs" in capsys.readouterr().err
    report = json.loads((pairs / "report.json").read_text())
    report["tokenizer"]["sha256"] = "tok-b"
    (pairs / "report.json").write_text(json.dumps(report))
    run_dpo(dpo_config(2), str(pairs), str(tmp_path / "pre"), str(tmp_path / "dpo3"))
    assert "computing reference log-probs (the tokenizer changed)" in capsys.readouterr().err
