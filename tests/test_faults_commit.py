"""The commit protocol under faults: a driver killed mid-stage, two writers of one output, a full disk.

Old output or none is visible, never a mix; a re-run gives the uninterrupted bytes; one writer wins.
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dataprep.curate import CurateConfig, run_curate
from schemas import storage
from schemas.sample import write_sample

REPO = Path(__file__).resolve().parents[1]


def _bytes(root: Path) -> dict[str, bytes]:
    """A stage output's data files (Parquet parts, a tokenizer model), which a re-run must reproduce byte for byte."""
    return {str(p.relative_to(root)): p.read_bytes() for pattern in ("*.parquet", "*.model")
            for p in sorted(root.rglob(pattern))}


def _clover(*args: str, **popen) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "jobs.cli", *args, "--master", "local[1]"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, **popen)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    write_sample(str(root / "old"), 60, seed=1)
    write_sample(str(root / "new"), 120, seed=2)
    return root


@storage.writes_output("out")
def _hold(out: str, seconds: float) -> None:
    time.sleep(seconds)


def test_a_live_lock_refuses_a_second_writer_and_a_dead_ones_is_broken(tmp_path):
    out = str(tmp_path / "out")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        Path(f"{out}.lock").write_text(f'{{"host": "{socket.gethostname()}", "pid": {sleeper.pid}, "since": {time.time()}}}')
        with pytest.raises(storage.OutputLocked, match=f"pid {sleeper.pid}"):
            _hold(out, 0)
        with pytest.raises(storage.OutputLocked, match=f"pid {sleeper.pid}"):
            storage.check_unlocked(out)  # what a command asks before it starts Spark
    finally:
        sleeper.kill()
        sleeper.wait()
    storage.check_unlocked(out)  # a dead owner's lock holds nothing back
    _hold(out, 0)  # the owner is gone: its lock is stale, broken, and released after the run
    assert not Path(f"{out}.lock").exists()


def test_driver_killed_mid_stage_leaves_old_output_and_rerun_matches(spark, corpus, tmp_path):
    out = tmp_path / "curated"
    run_curate(spark, [str(corpus / "new")], str(tmp_path / "reference"), CurateConfig())
    run_curate(spark, [str(corpus / "old")], str(out), CurateConfig())
    old = _bytes(out)
    child = _clover("curate", str(corpus / "new"), "--out", str(out))
    deadline = time.time() + 120
    while not list(tmp_path.glob("curated.tmp-*/documents")) and time.time() < deadline:
        time.sleep(0.2)  # killed once the stage has begun writing its staging directory
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    assert _bytes(out) == old and (out / "report.json").exists()  # the old output, whole
    assert storage.leftovers(str(out))  # the killed attempt's staging is there ...
    run_curate(spark, [str(corpus / "new")], str(out), CurateConfig())
    assert not storage.leftovers(str(out))  # ... and the re-run removed it
    assert _bytes(out) == _bytes(tmp_path / "reference")


def test_two_concurrent_writers_one_wins_the_other_says_why(spark, corpus, tmp_path):
    out = str(tmp_path / "curated")
    first = _clover("curate", str(corpus / "new"), "--out", out)
    while not Path(f"{out}.lock").exists() and first.poll() is None:
        time.sleep(0.1)
    second = _clover("curate", str(corpus / "new"), "--out", out)  # refuses before its Spark starts
    _, err = second.communicate(timeout=300)
    assert second.returncode == 2 and "is being written by pid" in err, err[-2000:]
    assert first.wait(timeout=300) == 0
    run_curate(spark, [str(corpus / "new")], str(tmp_path / "reference"), CurateConfig())
    assert _bytes(Path(out)) == _bytes(tmp_path / "reference")


def test_disk_full_fails_clearly_commits_nothing_and_a_later_run_succeeds(spark, corpus, tmp_path):
    out = tmp_path / "curated"

    def limit_file_size() -> None:  # every file the child (and its JVM) writes stops at 64 KB
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, 64 << 10))

    child = _clover("curate", str(corpus / "new"), "--out", str(out), "--partitions", "1", preexec_fn=limit_file_size)
    _, err = child.communicate(timeout=300)
    assert child.returncode != 0
    assert "File too large" in err or "EFBIG" in err or "No space" in err, err[-2000:]
    assert not out.exists()  # nothing committed
    run_curate(spark, [str(corpus / "new")], str(out), CurateConfig())
    assert (out / "report.json").exists() and not storage.leftovers(str(out))
