"""Launchers for the outside services the tests and benchmarks/cluster.py need: a Spark standalone cluster
(master and worker, separate processes on 127.0.0.1) and a moto S3 server. Plain functions and context
managers, no pytest, so that a benchmark starts the same cluster a test does."""

from __future__ import annotations

import os
import site
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def spark_bin() -> Path:
    """pyspark's bin/ folder (spark-class, spark-submit), found late: conftest imports this module in every run."""
    import pyspark

    return Path(pyspark.__file__).parent / "bin"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, what: str, timeout: float = 60) -> None:
    """Return once 127.0.0.1:port accepts connections; fail early if the process that should listen exits."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f} s")


def executor_python(folder: Path) -> Path:
    """This interpreter without site processing: the dependencies import, Clover (an editable .pth) does not.

    Executors must get Clover from --py-files alone, as on a real cluster where it is not installed.
    """
    wrapper = folder / "python-without-clover"
    paths = ":".join(site.getsitepackages())
    wrapper.write_text(f'#!/bin/sh\nexport PYTHONPATH="${{PYTHONPATH:+$PYTHONPATH:}}{paths}"\n'
                       f'exec {sys.executable} -S "$@"\n')
    wrapper.chmod(0o755)
    probe = subprocess.run([str(wrapper), "-c", "import pyarrow, sentencepiece, numpy, datasketch\nimport dataprep"],
                           cwd=folder, capture_output=True, text=True)
    if "No module named 'dataprep'" not in probe.stderr:
        raise RuntimeError(f"the executor Python should lack only Clover:\n{probe.stderr}")
    return wrapper


def _stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        process.terminate()
        process.wait(timeout=60)


@contextmanager
def standalone_cluster(root: Path, cores: int = 2, memory: str = "2g") -> Iterator[dict]:
    """spark://127.0.0.1:PORT with one worker of `cores` cores whose executors run a Python without Clover.

    Yields {"master": URL, "python": executor Python, "root": root}; master and worker are stopped by their pids.
    """
    root.mkdir(parents=True, exist_ok=True)
    python = executor_python(root)
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": str(python), "SPARK_LOG_DIR": str(root)}
    spark_class = str(spark_bin() / "spark-class")
    port, worker_port = free_port(), free_port()
    started = [subprocess.Popen([spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                                 "--port", str(port), "--webui-port", str(free_port())],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        wait_for_port(port, started[0], "Spark master")
        started.insert(0, subprocess.Popen(
            [spark_class, "org.apache.spark.deploy.worker.Worker", f"spark://127.0.0.1:{port}", "--host", "127.0.0.1",
             "--port", str(worker_port), "--cores", str(cores), "--memory", memory, "--webui-port", str(free_port()),
             "--work-dir", str(root / "work")],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_for_port(worker_port, started[0], "Spark worker")
        yield {"master": f"spark://127.0.0.1:{port}", "python": str(python), "root": root}
    finally:
        _stop(started)  # the worker first, then the master


def spark_submit(cluster: dict, py_files: str, script: str, *args: str, timeout: float = 600,
                 conf: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The README's command: spark-submit --master URL --py-files clover.zip jobs/STAGE.py ARGS.

    Raises RuntimeError with the end of stderr when the job fails; `conf` adds or overrides --conf settings.
    """
    env = {**os.environ, "PYSPARK_PYTHON": cluster["python"], "PYSPARK_DRIVER_PYTHON": sys.executable,
           "SPARK_LOCAL_IP": "127.0.0.1"}
    settings = {"spark.executor.memory": "1g", "spark.ui.enabled": "false", **(conf or {})}
    command = [str(spark_bin() / "spark-submit"), "--master", cluster["master"], "--py-files", py_files,
               *(item for key, value in settings.items() for item in ("--conf", f"{key}={value}")),
               f"jobs/{script}", *args]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:  # the driver's Python traceback, not the JVM's shutdown log after it
        lines = [line for line in done.stderr.splitlines() if " INFO " not in line]
        raise RuntimeError(f"spark-submit jobs/{script} exited with {done.returncode}:\n" + "\n".join(lines)[-4000:])
    return done


@contextmanager
def moto_server(port: int) -> Iterator[str]:
    """A moto S3 server on 127.0.0.1:port (the dev extra's moto[server]); yields its URL, stopped by its pid."""
    binary = os.path.join(os.path.dirname(sys.executable), "moto_server")
    command = [binary if os.path.exists(binary) else "moto_server", "-H", "127.0.0.1", "-p", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, server, "moto_server")
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop([server])
