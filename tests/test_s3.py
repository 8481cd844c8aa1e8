"""The data path and the trainer on an S3-compatible server (moto on 127.0.0.1): the same bytes as on local
disk, no secret in any output, and the commit protocol of object stores."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from dataprep.curate import CurateConfig, run_curate
from dataprep.dedup import DedupConfig, run_dedup
from dataprep.tokenize_stage import TokenizeConfig, run_tokenize
from dataprep.train_tokenizer import TokenizerConfig, train_tokenizer
from quality.gate import require_validated
from schemas import storage
from schemas.sample import write_sample

pytestmark = pytest.mark.s3
REPO = Path(__file__).resolve().parents[1]


def _files(uri: str) -> dict[str, bytes]:
    """Every file under uri, by relative path, with its bytes."""
    fs, root = storage.resolve(uri)
    out = {}
    for info in fs.get_file_info(pafs.FileSelector(root, recursive=True)):
        if info.type == pafs.FileType.File:
            with fs.open_input_stream(info.path) as handle:
                out[info.path[len(root):].lstrip("/")] = handle.read()
    return out


def _data_path(root: str, raw: str, spark) -> None:
    """curate -> dedup -> train-tokenizer -> tokenize under root, every stage validated."""
    run_curate(spark, [raw], storage.join(root, "curated"), CurateConfig())
    run_dedup(spark, storage.join(root, "curated"), storage.join(root, "deduped"), DedupConfig())
    gate = require_validated(storage.join(root, "deduped"))
    train_tokenizer(spark, storage.join(root, "deduped", "documents"), storage.join(root, "tokenizer"),
                    TokenizerConfig(vocab_size=400, sample_docs=300), input_validation=gate)
    run_tokenize(spark, storage.join(root, "deduped"), storage.join(root, "tokenizer"), storage.join(root, "tokens"),
                 TokenizeConfig(seq_len=64, shard_bytes=1 << 16, row_group_rows=16))


@pytest.fixture(scope="module")
def both_runs(spark, s3_server, tmp_path_factory):
    """The data path once on local disk and once with every input and output on s3://."""
    import boto3

    base = tmp_path_factory.mktemp("s3")
    write_sample(str(base / "raw"), 300)
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket="clover-data")
    storage.copy_dir(str(base / "raw"), "s3://clover-data/raw")
    _data_path(str(base / "local"), str(base / "raw"), spark)
    _data_path("s3://clover-data/run", "s3://clover-data/raw", spark)
    return str(base / "local"), "s3://clover-data/run"


def test_every_stage_writes_the_same_bytes_on_s3_as_on_local_disk(both_runs):
    local, remote = (_files(root) for root in both_runs)
    data = lambda files: {k: v for k, v in files.items() if k.endswith((".parquet", ".model"))}  # noqa: E731
    assert data(local) and data(local).keys() == data(remote).keys()
    differ = [k for k in data(local) if data(local)[k] != data(remote)[k]]
    # curate's quarantine names each bad record's input file (a local path in one run, s3:// in the
    # other), and records without an id are ordered by it: the same rows, up to that name
    assert differ == ["curated/quarantine/part-00000.parquet"]
    rows = [sorted((r["input_file"].rsplit("/", 1)[1], r["line"], r["raw"], r["reason"])
                   for r in pq.read_table(io.BytesIO(files[differ[0]])).to_pylist()) for files in (local, remote)]
    assert rows[0] == rows[1]
    for record in ("curated/report.json", "deduped/report.json", "tokens/manifest.json"):
        assert json.loads(remote[record])["validation"]["success"], record
    assert "tokens/data_docs/index.html" in remote  # Data Docs reach the object store too
    assert not [k for k in remote if ".tmp-" in k or ".old-" in k or k.endswith(".lock")]


def test_inspect_reads_a_directory_of_outputs_on_s3_like_local(both_runs, tmp_path):
    """`clover inspect s3://...` reads through schemas.storage: the same pages, counts and Data Docs links."""
    import re

    from jobs.inspection import build_report

    pages, funnels = {}, {}
    for name, root in zip(("local", "s3"), both_runs):
        html = build_report(root, out=str(tmp_path / f"{name}.html"))
        pages[name] = [p.split()[0] for p in re.findall(r'<article id="[^"]+" data-page="([^"]+)">', html)]
        funnels[name] = re.search(r'<section id="page-0-funnel".*?</section>', html, re.S).group(0)
    assert pages["s3"] == pages["local"] == ["curate", "dedup", "tokenize"]
    assert funnels["s3"] == funnels["local"] and "<td" in funnels["s3"]  # curate's funnel, counted on s3
    assert "s3://clover-data/run/curated/data_docs/index.html" in build_report(both_runs[1])


def test_no_secret_reaches_reports_manifests_or_data_docs(both_runs, capfd):
    secret = os.environ["AWS_SECRET_ACCESS_KEY"]
    remote = _files(both_runs[1])
    leaked = [k for k, v in remote.items() if secret.encode() in v]
    out, err = capfd.readouterr()
    assert leaked == [] and secret not in out + err


def _train_until_killed(data: str, run: str, log: Path) -> int:
    """`clover train` on s3 in a child process, killed with SIGKILL as soon as a checkpoint is complete
    (whatever it is writing then: the next checkpoint, metrics); returns the newest complete step. The child
    computes with this process's thread count, so that its steps round as the resumed steps here do."""
    import torch

    command = [sys.executable, "-m", "jobs.cli", "train", "--data", data, "--model", "clover-tiny", "--out", run,
               "--max-steps", "1000", "--checkpoint-every", "3", "--micro-batch", "2", "--grad-accum", "2",
               *(f"--set={item}" for item in ("tensorboard=false", "schedule.warmup_steps=2", "schedule.max_lr=0.003",
                                              "schedule.total_steps=20"))]
    with open(log, "w") as output:
        child = subprocess.Popen(command, cwd=REPO, stdout=output, stderr=subprocess.STDOUT,
                                 env={**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())})
    deadline = time.monotonic() + 300
    while not _complete_steps(run) and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL, log.read_text()[-3000:]  # killed mid-run, not finished or failed
    steps = _complete_steps(run)
    assert steps and max(steps) < 20, steps
    return max(steps)


def _complete_steps(run: str) -> list[int]:
    fs, root = storage.resolve(storage.join(run, "checkpoints"))
    found = fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    return [int(info.path.rsplit("/", 2)[1].split("-")[1]) for info in found if info.path.endswith("/COMPLETE")]


def test_a_run_directory_on_s3_resumes_like_local_and_feeds_dpo_and_export(both_runs, tmp_path):
    """Shards from s3, run directory (checkpoints through DCP, metrics, config) on s3: killed with SIGKILL
    mid-run and resumed, it trains the steps and weights of an uninterrupted local run; DPO and export read it."""
    from tests.test_dpo import dpo_config, write_pairs
    from tests.test_training import losses, tiny_config
    from training.inference.export import export
    from training.trainer.dpo import run_dpo
    from training.trainer.pretrain import train

    local, remote = both_runs
    run = "s3://clover-data/runs/pretrain"
    train(tiny_config(20), storage.join(local, "tokens"), str(tmp_path / "local"))
    _train_until_killed(storage.join(remote, "tokens"), run, tmp_path / "killed.log")
    train(tiny_config(20), storage.join(remote, "tokens"), run)  # resumed from the newest complete checkpoint
    storage.copy_dir(run, str(tmp_path / "copied"))
    assert losses(tmp_path / "copied") == losses(tmp_path / "local")
    assert not [k for k in _files(run) if ".tmp-" in k]
    for source, target in ((str(tmp_path / "local"), tmp_path / "hf-local"), (run, tmp_path / "hf-s3")):
        export(source, str(target), dtype="float32")
    assert (tmp_path / "hf-s3" / "model.safetensors").read_bytes() == (tmp_path / "hf-local" / "model.safetensors").read_bytes()
    pairs = write_pairs(tmp_path / "pairs")
    result = run_dpo(dpo_config(2), str(pairs), run, "s3://clover-data/runs/dpo")
    assert result.steps == 2 and storage.exists("s3://clover-data/runs/dpo/checkpoints/step-00000002/COMPLETE")


def test_a_dataset_without_its_commit_file_is_absent_on_s3(s3_bucket):
    out = f"{s3_bucket}/curated"
    staging = storage.staging_dir(out)
    storage.write_text(storage.join(staging, "documents", "part-00000.parquet"), "data")
    storage.write_text(storage.join(staging, "report.json"), "{}\n")
    storage.commit_dir(staging, out)
    assert storage.documents_path(out) == storage.join(out, "documents")
    assert not storage.exists(staging)
    fs, path = storage.resolve(storage.join(out, "report.json"))
    fs.delete_file(path)  # a commit that died after removing the old record, before writing the new
    with pytest.raises(FileNotFoundError, match="no report.json"):
        storage.documents_path(out)


def test_executors_are_told_where_the_object_store_is_but_not_the_credentials():
    from dataprep.spark import SparkConfig, session_settings

    settings = session_settings(SparkConfig(conf={"spark.executorEnv.AWS_REGION": "eu-west-1"}), "spark://head:7077")
    assert settings["spark.executorEnv.AWS_ENDPOINT_URL"] == os.environ["AWS_ENDPOINT_URL"]
    assert settings["spark.executorEnv.AWS_REGION"] == "eu-west-1"  # the config wins
    assert os.environ["AWS_SECRET_ACCESS_KEY"] not in repr(settings) and os.environ["AWS_ACCESS_KEY_ID"] not in repr(settings)
