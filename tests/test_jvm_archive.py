"""The driver JVM's class archive: written once after a clean exit, reused, and never fatal."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from dataprep import jvm_archive
from dataprep.spark import SparkConfig, session_settings

ROOT = Path(__file__).resolve().parents[1]


def test_one_writer_at_a_time_and_a_dead_writer_leaves_nothing_behind(tmp_path):
    archive = str(tmp_path / "jvm" / "spark-driver-x.jsa")
    first = jvm_archive.java_options(archive)
    assert f"-XX:ArchiveClassesAtExit={archive}.{os.getpid()}.part" in first
    assert jvm_archive.java_options(archive) == ""  # this process holds the lock: nobody else writes
    Path(archive + ".lock").write_text("999999999")  # a writer that died (no such pid) ...
    Path(archive + ".999999999.part").write_bytes(b"half")  # ... in the middle of its dump
    assert "ArchiveClassesAtExit" in jvm_archive.java_options(archive)
    assert not Path(archive + ".999999999.part").exists()
    Path(archive).write_bytes(b"done")
    assert jvm_archive.java_options(archive) == f"-XX:SharedArchiveFile={archive} {jvm_archive.QUIET}"


def test_the_archive_name_follows_what_its_classes_depend_on(tmp_path, monkeypatch):
    monkeypatch.setenv("CLOVER_CACHE", str(tmp_path))
    base = session_settings(SparkConfig(), "local[2]")
    path = jvm_archive.archive_path(base)
    assert path.startswith(str(tmp_path / "jvm")) and path == jvm_archive.archive_path(dict(base))
    assert jvm_archive.archive_path(session_settings(SparkConfig(driver_memory="64g"), "local[2]")) != path
    assert jvm_archive.archive_path({**base, "spark.driver.extraClassPath": "/opt/x.jar"}) != path


def test_the_archive_is_written_after_a_clean_exit_and_a_broken_one_is_discarded(tmp_path):
    """Real JVMs: the first session leaves a complete archive; a truncated archive (which crashes the JVM)
    costs one retry without it, and is removed."""
    script = textwrap.dedent("""
        import sys
        from dataprep import jvm_archive
        from dataprep.spark import SparkConfig, session_settings, spark_session
        cfg = SparkConfig(master="local[1]", driver_memory="1g")
        spark = spark_session(cfg, "archive-test", input_bytes=0)
        assert spark.range(5).count() == 5
        print("ARCHIVE", jvm_archive.archive_path(session_settings(cfg, "local[1]")))
    """)
    env = {**os.environ, "CLOVER_CACHE": str(tmp_path), "PYTHONPATH": str(ROOT)}

    def session() -> tuple[subprocess.CompletedProcess, Path]:
        done = subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        return done, Path(done.stdout.split("ARCHIVE ", 1)[1].strip())

    done, archive = session()
    assert archive.exists() and archive.stat().st_size > 1 << 20, done.stderr[-2000:]
    assert sorted(p.name for p in archive.parent.iterdir()) == [archive.name]  # no lock, no .part left
    assert "saving the Spark driver's classes" in done.stderr
    with open(archive, "r+b") as handle:
        handle.truncate(4096)
    done, again = session()
    assert again == archive and not archive.exists()


def test_a_small_job_starts_its_jvm_with_c1_alone_and_the_archive(spark):
    from dataprep.spark import QUICK_JIT

    options = spark.sparkContext.getConf().get("spark.driver.extraJavaOptions")
    assert QUICK_JIT in options and "Archive" in options  # the suite's session says its input is small


def test_total_bytes_counts_every_file_a_path_names(tmp_path):
    from schemas import storage

    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.jsonl").write_bytes(b"x" * 10)
    (tmp_path / "d" / "b.parquet").write_bytes(b"x" * 5)
    assert storage.total_bytes(str(tmp_path / "d")) == 15
    assert storage.total_bytes([str(tmp_path / "d" / "a.jsonl"), str(tmp_path / "d" / "*.parquet")]) == 15
    assert storage.total_bytes(str(tmp_path / "missing")) is None
