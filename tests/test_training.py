"""Trainer: schedule, retention, gate, loader order, FSDP on gloo (2 processes), exact resume."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from quality.gate import UnvalidatedDataset
from quality.repetition import repeated_ngram_fraction
from tests.token_shards import write_token_shards
from training.trainer.checkpoint import steps_to_delete
from training.trainer.data import DataConfig, MicroBatch, TokenStream
from training.trainer.engine import SpikeConfig, _skip_reason
from training.trainer.evaluate import EvalConfig, held_out_shards
from training.trainer.gate import GateConfig, GatedStream, GateStalled, batch_fraction
from training.trainer.optim import OptimizerConfig, ScheduleConfig, build_optimizer, lr_at
from training.trainer.pretrain import TrainConfig, train

REPO = Path(__file__).resolve().parents[1]


def writeup_get_lr(step, warmup=2000, max_lr=3e-4, min_lr=3e-5, total_steps=150000):
    """Verbatim from the Clover write-up (shared/000_9d2f16a240302f1a.txt)."""
    if step < warmup:
        return max_lr * step / warmup
    progress = (step - warmup) / (total_steps - warmup)
    return min_lr + 0.5 * (max_lr - min_lr) * (1 + math.cos(math.pi * progress))


def test_schedule_is_the_writeups_get_lr():
    cfg = ScheduleConfig()
    steps = [0, 1, 2, 999, 1999, 2000, 2001, 10000, 42000, 75999, 76000, 149999, 150000] + list(range(0, 150001, 997))
    for step in steps:
        assert lr_at(step, cfg) == pytest.approx(writeup_get_lr(step), rel=1e-12, abs=0)
    assert lr_at(2000, cfg) == 3e-4 and lr_at(150000, cfg) == pytest.approx(3e-5)
    assert lr_at(200000, cfg) == pytest.approx(3e-5)  # held at the floor, where get_lr would climb again


def test_retention_keeps_last_five_and_every_ten_thousandth():
    steps = list(range(1000, 33001, 1000))
    assert sorted(set(steps) - set(steps_to_delete(steps, 5, 10000))) == [10000, 20000, 29000, 30000, 31000, 32000, 33000]
    assert steps_to_delete([1000, 2000], 5, 10000) == []
    assert steps_to_delete([5000, 6000, 7000], 1, 0) == [5000, 6000]
    assert steps_to_delete([10000, 11000, 12000], 1, 10000) == [11000]


def test_weight_decay_groups():
    from training.trainer.model import Transformer, model_config

    model = Transformer(model_config("clover-tiny"))
    groups = build_optimizer(model, OptimizerConfig()).param_groups
    decayed = {id(p) for p in groups[0]["params"]}
    names = {name for name, p in model.named_parameters() if id(p) in decayed}
    assert "embed_tokens.weight" not in names and "norm.weight" not in names
    assert "lm_head.weight" in names and "layers.0.mlp.down_proj.weight" in names
    assert groups[0]["weight_decay"] == 0.1 and groups[1]["weight_decay"] == 0.0
    with_embeddings = build_optimizer(model, OptimizerConfig(decay_embeddings=True)).param_groups[0]["params"]
    assert any(p is model.embed_tokens.weight for p in with_embeddings)


def test_gate_fraction_definition():
    rng = np.random.default_rng(0)
    clean = rng.integers(4, 60000, (2, 512))
    assert batch_fraction(MicroBatch(0, clean, np.array([512, 512])), 13) == 0.0
    loop = np.resize(rng.integers(4, 60000, 20), 512)
    half = MicroBatch(0, np.stack([clean[0], loop]), np.array([512, 512]))
    # the loop row repeats after its first 20 + 13 - 1 positions: (511 - 20) / 1022 of the inputs
    assert batch_fraction(half, 13) == pytest.approx((511 - 20) / 1022)
    # padding (id 0 past num_tokens) neither repeats nor counts
    padded = clean.copy()
    padded[1, 100:] = 0
    assert batch_fraction(MicroBatch(0, padded, np.array([512, 100])), 13) == 0.0
    # the same function scores one document in curation
    assert repeated_ngram_fraction(loop[:-1], 13) == pytest.approx((511 - 20) / 511)


def test_loader_order_depends_on_seed_and_epoch_only(tmp_path):
    data = write_token_shards(tmp_path / "tok", rows=100, row_group_rows=16)
    stream = TokenStream(str(data), 2, DataConfig(seed=3, stripe_row_groups=4))
    again = TokenStream(str(data), 2, DataConfig(seed=3, stripe_row_groups=4))
    groups, rows = stream.epoch_order(0)
    assert len(groups) == 100 and len({(g, r) for g, r in zip(groups, rows)}) == 100  # each sequence once
    assert np.array_equal(groups, again.epoch_order(0)[0]) and np.array_equal(rows, again.epoch_order(0)[1])
    assert not np.array_equal(groups, stream.epoch_order(1)[0])
    assert stream.per_epoch == 50
    batch = stream.micro_batch(50)  # the first micro-batch of epoch 1
    assert batch.tokens.shape == (2, 65) and batch.tokens.dtype == np.int64
    stream.close()
    again.close()


def test_gated_stream_replaces_rejected_micro_batches(tmp_path):
    data = write_token_shards(tmp_path / "tok", rows=64, repetitive_rows=tuple(range(0, 64, 5)))
    stream = TokenStream(str(data), 2, DataConfig(seed=0))
    gated = GatedStream(stream, GateConfig(ngram=13, max_fraction=0.15), 0, 1, lambda values: [values])
    seen, rejected = [], []
    for _ in range(20):
        batch, rejections = gated.next()
        assert batch_fraction(batch, 13) <= 0.15
        seen.append(batch.index)
        rejected += [r.index for r in rejections]
    assert rejected and not set(seen) & set(rejected)
    assert sorted(seen + rejected) == list(range(gated.cursor))  # every micro-batch used or rejected, once
    stream.close()


def test_gate_stops_every_rank_at_the_consecutive_limit(tmp_path):
    """All data rejected: both ranks (threads with a real all-gather) raise at the same candidate."""
    import threading

    data = write_token_shards(tmp_path / "tok", rows=64, repetitive_rows=tuple(range(64)))
    cfg = GateConfig(max_consecutive_rejections=10)
    barrier, slots, errors, logged = threading.Barrier(2), [None, None], [None, None], []

    def rank(r: int) -> None:
        def gather(values):
            slots[r] = values
            barrier.wait()
            gathered = list(slots)
            barrier.wait()
            return gathered
        stream = TokenStream(str(data), 2, DataConfig())
        gated = GatedStream(stream, cfg, r, 2, gather, on_reject=logged.append if r == 0 else None)
        try:
            gated.next()
        except GateStalled as err:
            errors[r] = (str(err), gated.judged)
        stream.close()

    threads = [threading.Thread(target=rank, args=(r,)) for r in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors[0] is not None and errors[0] == errors[1]  # the same verdict, at the same candidate
    message, judged = errors[0]
    assert judged == 10 and [r.index for r in logged] == list(range(10))  # logged as they happened
    assert "10 micro-batches in a row were rejected" in message and "gate.max_fraction=0.15" in message
    assert "shards/part-00000.parquet" in message and "fractions seen 0.7" in message


def test_gate_stops_at_the_window_fraction(tmp_path):
    data = write_token_shards(tmp_path / "tok", rows=64, repetitive_rows=tuple(r for r in range(64) if r % 3))
    stream = TokenStream(str(data), 1, DataConfig())
    relaxed = GatedStream(stream, GateConfig(rejection_window=20, max_rejected_fraction=0.95), 0, 1, lambda v: [v])
    for _ in range(20):
        relaxed.next()
    assert 0.5 < relaxed.rejection_rate < 0.95  # two thirds of the rows loop
    strict = GatedStream(stream, GateConfig(rejection_window=20, max_rejected_fraction=0.5), 0, 1, lambda v: [v])
    with pytest.raises(GateStalled, match=r"of the last 20 micro-batches were rejected \(gate.max_rejected_fraction=0.5\)"):
        for _ in range(20):
            strict.next()
    assert strict.judged == 20
    stream.close()


def test_training_on_rejected_data_fails_fast_with_the_log_written(tmp_path):
    data = str(write_token_shards(tmp_path / "tok", rows=32, repetitive_rows=tuple(range(32))))
    cfg = tiny_config(2)
    cfg.gate.max_consecutive_rejections = 6
    with pytest.raises(GateStalled, match="6 micro-batches in a row"):
        train(cfg, data, str(tmp_path / "run"))
    lines = [json.loads(line) for line in (tmp_path / "run" / "gate_rejections.jsonl").read_text().splitlines()]
    assert [line["micro_batch"] for line in lines] == list(range(6)) and lines[0]["shards"]


def test_unvalidated_shards_are_refused(tmp_path):
    data = write_token_shards(tmp_path / "tok", validated=False)
    with pytest.raises(UnvalidatedDataset, match="never validated"):
        TokenStream(str(data), 2, DataConfig())
    TokenStream(str(data), 2, DataConfig(allow_unvalidated=True)).close()


def test_skip_rules():
    history = {"loss": [2.0, 2.1, 1.9, 2.0], "grad_norm": [0.3, 0.31, 0.29, 0.3]}
    assert _skip_reason(float("nan"), 0.3, history, SpikeConfig()) == "non_finite"
    assert _skip_reason(2.0, float("inf"), history, SpikeConfig()) == "non_finite"
    assert _skip_reason(9.0, 0.3, history, SpikeConfig()) is None
    assert _skip_reason(9.0, 0.3, history, SpikeConfig(sigma=6, window=4)) == "spikes_skipped"
    assert _skip_reason(2.05, 0.3, history, SpikeConfig(sigma=6, window=4)) is None


def tiny_config(steps: int, **extra) -> TrainConfig:
    cfg = TrainConfig(model="clover-tiny", micro_batch=2, grad_accum=2, max_steps=steps, tensorboard=False, **extra)
    cfg.checkpoint.every = 3
    cfg.schedule.warmup_steps, cfg.schedule.max_lr, cfg.schedule.total_steps = 2, 3e-3, 20
    return cfg


def losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_interrupted_run_resumes_bitwise(tmp_path):
    data = str(write_token_shards(tmp_path / "tok", repetitive_rows=(3, 40)))
    train(tiny_config(8), data, str(tmp_path / "whole"))
    train(tiny_config(6), data, str(tmp_path / "cut"))
    ckpts = tmp_path / "cut" / "checkpoints"
    (ckpts / "step-00000006" / "COMPLETE").unlink()  # as if killed while writing step 6
    shutil.copytree(ckpts / "step-00000003", ckpts / "step-00000005")
    (ckpts / "step-00000005" / "__0_0.distcp").write_bytes(b"torn")  # and a corrupt one
    with pytest.warns(UserWarning, match="skipping checkpoint"):
        train(tiny_config(8), data, str(tmp_path / "cut"))
    whole, cut = losses(tmp_path / "whole"), losses(tmp_path / "cut")
    assert len(whole) == 8 and whole == cut  # bitwise: the same floats
    assert whole[-1] < whole[0]
    metrics = [json.loads(line) for line in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    for key in ("step", "loss", "lr", "grad_norm", "tokens_per_s", "gate_rejections", "gate_rejection_rate",
                "peak_memory_gib", "mfu"):
        assert key in metrics[-1]
    assert sum(m["gate_rejections"] for m in metrics) == metrics[-1]["gate_rejections_total"] >= 1


def run_torchrun(nproc: int, data: str, out: Path, steps: int, accum: int, sets: tuple[str, ...] = ()) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
               str(REPO / "jobs" / "train.py"), "--data", data, "--model", "clover-tiny", "--out", str(out),
               "--max-steps", str(steps), "--checkpoint-every", "2", "--micro-batch", "2", "--grad-accum", str(accum),
               "--set", "tensorboard=false", "--set", "schedule.warmup_steps=2", "--set", "schedule.max_lr=0.003",
               *(f"--set={item}" for item in sets)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def test_fsdp_two_processes_match_one_and_resume_on_another_world_size(tmp_path):
    data = str(write_token_shards(tmp_path / "tok", rows=128, repetitive_rows=tuple(range(0, 128, 6))))
    run_torchrun(2, data, tmp_path / "two", steps=6, accum=1, sets=HELD_OUT_SETS)
    single = tmp_path / "one"
    train(_one_process_config(), data, str(single))
    two, one = losses(tmp_path / "two"), losses(single)
    assert np.allclose(two, one, rtol=1e-5, atol=1e-6)  # the same global batches, only the reduction order differs
    # held-out evaluation sees the same sequences on 2 ranks as on 1
    evals = [[(m["step"], m["eval_tokens"], m["eval_loss"]) for m in map(json.loads, (run / "metrics.jsonl").read_text()
              .splitlines()) if "eval_loss" in m] for run in (tmp_path / "two", single)]
    assert [e[:2] for e in evals[0]] == [e[:2] for e in evals[1]] == [(3, 8 * 64), (6, 8 * 64)]
    assert np.allclose([e[2] for e in evals[0]], [e[2] for e in evals[1]], rtol=1e-5)
    rejections = [json.loads(line)["gate_rejections_total"] for line in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert rejections[-1] >= 1
    # stop the 2-process run at step 4 and finish it on one process with the same global batch
    shutil.copytree(tmp_path / "two", tmp_path / "moved")
    shutil.rmtree(tmp_path / "moved" / "checkpoints" / "step-00000006")
    train(_one_process_config(), data, str(tmp_path / "moved"))
    assert np.allclose(losses(tmp_path / "moved"), one, rtol=1e-5, atol=1e-6)


HELD_OUT_SETS = ("eval.every=3", "eval.sequences=8", "eval.holdout_fraction=0.5")


def _one_process_config() -> TrainConfig:
    cfg = tiny_config(6, eval=EvalConfig(every=3, sequences=8, holdout_fraction=0.5))
    cfg.checkpoint.every = 2
    cfg.schedule.total_steps = 150000
    return cfg


def test_held_out_shards_are_never_trained_on_and_evaluated_alike_after_a_resume(tmp_path):
    """A quarter of four shards is held out by hash, recorded in the run, evaluated every 3 steps and at the end;
    a run stopped at step 3 and resumed reports the eval numbers of an uninterrupted one, bit for bit."""
    data = str(write_token_shards(tmp_path / "tok", rows=96, shards=4))
    config = lambda steps: tiny_config(steps, eval=EvalConfig(every=3, sequences=6, holdout_fraction=0.25))  # noqa: E731
    held = held_out_shards(data, 0.25)
    assert len(held) == 1 and held == held_out_shards(data, 0.25)
    stream = TokenStream(data, 2, DataConfig(), exclude=frozenset(held))
    assert all(held[0] not in stream.shards_of(i) for i in range(stream.per_epoch)) and stream.sequences == 72
    train(config(7), data, str(tmp_path / "whole"))
    train(config(3), data, str(tmp_path / "cut"))
    train(config(7), data, str(tmp_path / "cut"))
    runs = [[json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
            for run in ("whole", "cut")]
    evals = [[(m["step"], m["eval_loss"], m["eval_ppl"], m["eval_tokens"]) for m in run if "eval_loss" in m]
             for run in runs]
    assert evals[0] == evals[1] and [e[0] for e in evals[0]] == [3, 6, 7]
    assert all(math.isclose(ppl, math.exp(loss)) and tokens == 6 * 64 for _, loss, ppl, tokens in evals[0])
    recorded = json.loads((tmp_path / "whole" / "config.json").read_text())["eval"]
    assert recorded == {"data": data, "held_out_shards": held}


def test_clover_train_cli_resumes(tmp_path, capsys):
    from jobs.cli import main

    data = str(write_token_shards(tmp_path / "tok"))
    args = ["train", "--data", data, "--model", "clover-tiny", "--out", str(tmp_path / "run"), "--max-steps", "2",
            "--micro-batch", "2", "--grad-accum", "1", "--set", "tensorboard=false"]
    assert main(args) == 0
    assert main(args[:7] + ["--max-steps", "3"] + args[9:]) == 0
    assert "resumed from" in capsys.readouterr().err
    assert [json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    with_board = args[:7] + ["--max-steps", "3"] + args[9:-2]  # finished already: nothing to do, and says so
    assert main(with_board) == 0
    assert "train: 3 steps, final loss" in capsys.readouterr().err
    assert main(with_board[:6] + [str(tmp_path / "board")] + with_board[7:]) == 0
    assert list((tmp_path / "board" / "tensorboard").glob("events.out.tfevents.*"))
    with pytest.raises(SystemExit):
        main(["train", "--data", data, "--model", "clover-nope", "--out", str(tmp_path / "x")])


def test_document_masking_reads_doc_starts_and_trains(tmp_path):
    data = str(write_token_shards(tmp_path / "tok", rows=32, doc_length=20))
    stream = TokenStream(data, 2, DataConfig())
    batch = stream.micro_batch(0)
    assert batch.doc_ids[0].tolist() == [1] * 20 + [2] * 20 + [3] * 20 + [4] * 5
    stream.close()
    masked, plain = tiny_config(2), tiny_config(2)
    masked.document_masking = True
    train(masked, data, str(tmp_path / "masked"))
    train(plain, data, str(tmp_path / "plain"))
    assert losses(tmp_path / "masked")[0] != losses(tmp_path / "plain")[0]


def test_loader_streams_from_an_fsspec_url(tmp_path):
    """memory:// is not a pyarrow scheme: the loader reaches it through fsspec, like az:// or abfs://."""
    fsspec = pytest.importorskip("fsspec")
    data = write_token_shards(tmp_path / "tok")
    memory = fsspec.filesystem("memory")
    for path in data.rglob("*"):
        if path.is_file():
            memory.pipe(f"/clover-test/tok/{path.relative_to(data)}", path.read_bytes())
    remote = TokenStream("memory://clover-test/tok", 2, DataConfig())
    local = TokenStream(str(data), 2, DataConfig())
    assert remote.sequences == local.sequences == 96
    assert np.array_equal(remote.micro_batch(5).tokens, local.micro_batch(5).tokens)
    remote.close()
    local.close()
