"""A real Spark standalone cluster (a master and a worker, separate processes on 127.0.0.1) whose executors
run a Python without Clover: jobs go in the README's way (`clover package`, `spark-submit --py-files`) and
write the bytes local[2] writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dataprep.curate import CurateConfig, run_curate
from dataprep.tokenize_stage import TokenizeConfig, run_tokenize
from dataprep.train_tokenizer import TokenizerConfig, train_tokenizer
from jobs.package import build_zip
from schemas.sample import write_sample
from tests.infra import free_port, spark_submit, standalone_cluster

pytestmark = pytest.mark.cluster
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def spark_cluster(tmp_path_factory):
    """spark://127.0.0.1:PORT with one 2-core worker; both stopped by their pids."""
    with standalone_cluster(tmp_path_factory.mktemp("cluster")) as cluster:
        yield cluster


def _bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.parquet"))}


def test_curate_and_tokenize_on_the_cluster_write_the_bytes_of_local(spark, spark_cluster, tmp_path):
    write_sample(str(tmp_path / "raw"), 200)
    py_files = build_zip(str(tmp_path / "package"))
    spark_submit(spark_cluster, py_files, "curate.py", str(tmp_path / "raw"), "--out", str(tmp_path / "cluster-curated"))
    report = run_curate(spark, [str(tmp_path / "raw")], str(tmp_path / "curated"), CurateConfig())
    assert _bytes(tmp_path / "cluster-curated") == _bytes(tmp_path / "curated") != {}
    # shuffles fit the input on a cluster (not Spark's 200); a number the user set stands (conftest's 4)
    cluster_report = json.loads((tmp_path / "cluster-curated" / "report.json").read_text())
    assert cluster_report["shuffle_partitions"] == 8 and report.extra["shuffle_partitions"] == 4
    # SentencePiece reaches the executors through SparkFiles: the tokenizer exists only on this machine's disk
    train_tokenizer(spark, str(tmp_path / "curated" / "documents"), str(tmp_path / "tokenizer"),
                    TokenizerConfig(vocab_size=400, sample_docs=200))
    flags = ["--tokenizer", str(tmp_path / "tokenizer"), "--seq-len", "64", "--allow-unvalidated"]
    spark_submit(spark_cluster, py_files, "tokenize_stage.py", str(tmp_path / "curated"), "--out", str(tmp_path / "cluster-tokens"),
                 *flags)
    run_tokenize(spark, str(tmp_path / "curated"), str(tmp_path / "tokenizer"), str(tmp_path / "tokens"),
                 TokenizeConfig(seq_len=64), allow_unvalidated=True)
    assert _bytes(tmp_path / "cluster-tokens") == _bytes(tmp_path / "tokens") != {}


def test_two_node_torchrun_matches_the_single_node_two_process_run(tmp_path):
    """torchrun --nnodes 2 --nproc-per-node 1 with c10d rendezvous on 127.0.0.1: the losses of --standalone x2."""
    from tests.test_training import losses, run_torchrun, write_token_shards

    data = str(write_token_shards(tmp_path / "tok", rows=128))
    run_torchrun(2, data, tmp_path / "single-node", steps=20, accum=1)
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
               "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "clover-test",
               str(REPO / "jobs" / "train.py"), "--data", data, "--model", "clover-tiny", "--out", str(tmp_path / "two-nodes"),
               "--max-steps", "20", "--checkpoint-every", "2", "--micro-batch", "2", "--grad-accum", "1",
               "--set", "tensorboard=false", "--set", "schedule.warmup_steps=2", "--set", "schedule.max_lr=0.003"]
    nodes = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    for node in nodes:
        _, err = node.communicate(timeout=600)
        assert node.returncode == 0, err[-3000:]
    assert losses(tmp_path / "two-nodes") == losses(tmp_path / "single-node")
