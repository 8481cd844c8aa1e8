"""DPO held-out evaluation (issue #19): the pair_id hash split, eval metrics every eval.every steps and at the end,
the same numbers on 2 ranks as on 1 and after a resume, and a separate --eval-data pairs dataset."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.test_dpo import dpo_config, write_pairs
from tests.token_shards import write_token_shards
from training.trainer.dpo import (
    DPOConfig,
    PairsData,
    PairsDataConfig,
    PairStream,
    ids_sha256,
    is_held_out,
    run_dpo,
)
from training.trainer.pretrain import TrainConfig, train

REPO = Path(__file__).resolve().parents[1]
EVAL_KEYS = ("eval_loss", "eval_reward_accuracy", "eval_reward_margin", "eval_pairs")


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> str:
    """A 2-step clover-tiny pretraining run to start DPO from (read only by the tests)."""
    root = tmp_path_factory.mktemp("pre")
    data = str(write_token_shards(root / "tok"))
    train(TrainConfig(model="clover-tiny", micro_batch=2, grad_accum=1, max_steps=2, tensorboard=False), data,
          str(root / "run"))
    return str(root / "run")


def eval_config(steps: int, every: int = 3, pairs: int = 10, fraction: float = 0.25) -> DPOConfig:
    cfg = dpo_config(steps)
    cfg.eval.every, cfg.eval.pairs, cfg.eval.holdout_fraction = every, pairs, fraction
    return cfg


def read_metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def evals(run: Path) -> list[tuple]:
    return [(m["step"], *(m[k] for k in EVAL_KEYS)) for m in read_metrics(run) if "eval_loss" in m]


def test_split_is_by_pair_id_hash_and_held_out_pairs_are_never_trained_on(tmp_path):
    pairs = str(write_pairs(tmp_path / "pairs"))
    data = PairsData(pairs, PairsDataConfig())
    ids = [p["pair_id"] for p in data.in_file_order()]
    held = data.held_out(0.25)
    by_hash = sorted(p for p in ids if int(hashlib.sha256(p.encode()).hexdigest(), 16) / 2**256 < 0.25)
    assert held == by_hash == PairsData(pairs, PairsDataConfig()).held_out(0.25) and 8 <= len(held) <= 24
    assert all(is_held_out(p, 0.25) == (p in held) for p in ids) and data.held_out(0.0) == []

    stream = PairStream(data, 4, PairsDataConfig(seed=3), exclude=frozenset(held))
    assert stream.pairs == 64 - len(held) and stream.per_epoch == (64 - len(held)) // 4
    epochs = [[p["pair_id"] for i in range(e * stream.per_epoch, (e + 1) * stream.per_epoch)
               for p in stream.micro_batch(i)] for e in range(3)]
    for trained in epochs:  # each epoch: distinct training pairs only, all but the remainder of a micro-batch
        assert not set(trained) & set(held) and len(set(trained)) == len(trained) == stream.per_epoch * 4
    assert epochs[0] != epochs[1]  # a new order each epoch, over the same split
    # the reference pass still covers every pair, held out or not
    assert [p["pair_id"] for p in stream.in_file_order()] == ids
    # without exclusions the order is the one DPO always had: row groups, then rows, permuted by (seed, epoch)
    plain = PairStream(pairs, 4, PairsDataConfig(seed=3))
    rng = np.random.default_rng([3, 0])
    order = [(g, r) for g in rng.permutation(4) for r in rng.permutation(16)]
    assert [p["pair_id"] for p in plain.micro_batch(0) + plain.micro_batch(1)] == [f"p{16 * g + r:03d}" for g, r in order[:8]]

    with pytest.raises(ValueError, match=r"3 training pairs \(61 more held out for evaluation\), fewer than one micro-batch of 4"):
        PairStream(data, 4, PairsDataConfig(), exclude=frozenset(ids[3:]))


def test_eval_metrics_every_steps_and_at_the_end_and_alike_after_a_resume(tmp_path, pretrained, capsys):
    """Held-out pairs are scored at steps 3, 6 and the end (7); the split is recorded in RUN/config.json; a run
    stopped at step 3 and resumed reports the eval numbers of an uninterrupted one, bit for bit."""
    pairs = write_pairs(tmp_path / "pairs")
    run_dpo(eval_config(7), str(pairs), pretrained, str(tmp_path / "whole"))
    run_dpo(eval_config(3), str(pairs), pretrained, str(tmp_path / "cut"))
    run_dpo(eval_config(7), str(pairs), pretrained, str(tmp_path / "cut"))
    assert "resumed from" in capsys.readouterr().err
    whole = evals(tmp_path / "whole")
    assert [e[0] for e in whole] == [3, 6, 7] and whole == evals(tmp_path / "cut")
    metrics, cut = read_metrics(tmp_path / "whole"), read_metrics(tmp_path / "cut")
    # the run that computed the reference sidecar trains as the one that reused it (its pass leaves FSDP resharded)
    assert [(m["loss"], m["grad_norm"]) for m in metrics] == [(m["loss"], m["grad_norm"]) for m in cut]
    assert len(metrics) == 7 and [m["step"] for m in metrics if "eval_pairs" in m] == [3, 6, 7]
    for _, loss, accuracy, margin, count in whole:
        assert count == 10 and 0.0 <= accuracy <= 1.0 and np.isfinite(loss) and np.isfinite(margin)
    held = PairsData(str(pairs), PairsDataConfig()).held_out(0.25)
    recorded = json.loads((tmp_path / "whole" / "config.json").read_text())["eval"]
    assert recorded == {"data": str(pairs), "holdout_fraction": 0.25, "held_out_pairs": len(held),
                        "held_out_sha256": hashlib.sha256("\n".join(held).encode()).hexdigest()}
    assert recorded["held_out_sha256"] == ids_sha256(list(reversed(held)))
    assert pq.read_table(pairs / "reference_logps.parquet").num_rows == 64  # the sidecar covers the held-out pairs

    changed = eval_config(8, fraction=0.5)  # another split cannot continue this run's order
    with pytest.raises(ValueError, match="held-out pairs changed since the checkpoint"):
        run_dpo(changed, str(pairs), pretrained, str(tmp_path / "whole"))
    # a checkpoint from before held-out pairs (no held_out_sha256) trained on every pair: it resumes without a split
    newest = tmp_path / "whole" / "checkpoints" / "step-00000007"
    state, marker = json.loads((newest / "trainer.json").read_text()), json.loads((newest / "COMPLETE").read_text())
    del state["objective"]["held_out_sha256"]
    marker["files"]["trainer.json"] = (newest / "trainer.json").write_text(json.dumps(state))
    (newest / "COMPLETE").write_text(json.dumps(marker))
    with pytest.raises(ValueError, match="held-out pairs changed"):
        run_dpo(eval_config(8), str(pairs), pretrained, str(tmp_path / "whole"))
    assert run_dpo(eval_config(8, fraction=0.0), str(pairs), pretrained, str(tmp_path / "whole")).steps == 8


def run_torchrun_dpo(pairs: Path, init: str, out: Path, steps: int) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               str(REPO / "jobs" / "dpo.py"), "--pairs", str(pairs), "--init", init, "--out", str(out),
               "--max-steps", str(steps), "--micro-batch", "4", "--grad-accum", "1", "--checkpoint-every", "1000",
               "--set", "tensorboard=false", "--set", "schedule.warmup_steps=2", "--set", "schedule.max_lr=0.003",
               "--set", "schedule.min_lr=0.003", "--set", f"schedule.total_steps={steps}", "--set", "eval.every=2",
               "--set", "eval.pairs=10", "--set", "eval.holdout_fraction=0.25"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def test_two_ranks_evaluate_the_same_pairs_as_one(tmp_path, pretrained):
    """10 held-out pairs in micro-batches of 4, 4, 2: rank 1 scores one and repeats one; the sums match 1 rank."""
    pairs = write_pairs(tmp_path / "pairs")
    run_torchrun_dpo(pairs, pretrained, tmp_path / "two", steps=3)
    run_dpo(eval_config(3, every=2), str(pairs), pretrained, str(tmp_path / "one"))  # micro 4 x accum 2: same batch
    two, one = evals(tmp_path / "two"), evals(tmp_path / "one")
    assert [e[0] for e in two] == [e[0] for e in one] == [2, 3] and [e[4] for e in two] == [10, 10]
    assert np.allclose([e[1:4] for e in two], [e[1:4] for e in one], rtol=1e-5, atol=1e-6)
    assert (json.loads((tmp_path / "two" / "config.json").read_text())["eval"]
            == json.loads((tmp_path / "one" / "config.json").read_text())["eval"])


def test_eval_data_is_a_separate_pairs_dataset_with_its_own_reference(tmp_path, pretrained, capsys):
    from jobs.cli import main

    pairs, held = write_pairs(tmp_path / "pairs"), write_pairs(tmp_path / "held", count=24, seed=1)  # ids p000..: shared
    args = ["dpo", "--pairs", str(pairs), "--init", pretrained, "--out", str(tmp_path / "run"), "--max-steps", "30",
            "--micro-batch", "4", "--grad-accum", "2", "--eval-data", str(held), "--set", "tensorboard=false",
            "--set", "eval.every=10", "--set", "eval.pairs=20", "--set", "schedule.warmup_steps=2",
            "--set", "schedule.max_lr=0.003", "--set", "schedule.min_lr=0.003", "--set", "schedule.total_steps=30"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert f"computing reference log-probs (none stored yet) -> {held}/reference_logps.parquet" in err
    assert "eval loss" in err and "(20 pairs)" in err
    reference = pq.read_table(held / "reference_logps.parquet")
    assert reference.num_rows == 24 and reference.schema.metadata[b"tokenizer_sha256"] == b"tok-a"
    assert pq.read_table(pairs / "reference_logps.parquet").num_rows == 64
    found = evals(tmp_path / "run")
    assert [e[0] for e in found] == [10, 20, 30] and all(e[4] == 20 for e in found)
    # the planted preference carries over to unseen pairs: below log 2 (the step-0 loss), growing margins
    assert found[-1][1] < 0.5 < np.log(2) and found[0][3] < found[1][3] < found[2][3] and found[-1][2] > 0.7
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())["eval"]
    assert recorded == {"data": str(held), "holdout_fraction": None, "held_out_pairs": 0,
                        "held_out_sha256": hashlib.sha256(b"").hexdigest()}
    assert json.loads((tmp_path / "run" / "config.json").read_text())["engine"]["eval"]["data"] == str(held)

    report = json.loads((held / "report.json").read_text())
    report["tokenizer"]["sha256"] = "tok-b"
    (held / "report.json").write_text(json.dumps(report))
    with pytest.raises(ValueError, match="tokenizer tok-b; the training pairs have tok-a"):
        main([*args[:6], str(tmp_path / "other"), *args[7:]])
