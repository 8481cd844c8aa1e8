import os
import socket
import subprocess
import sys
import time
import uuid

import pytest

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, what: str, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f} s")


# S3 in the tests is a moto server on 127.0.0.1, never AWS. The variables are set before any Spark
# starts, so that its Python workers inherit them; the secret is recognizable, for the leak checks.
if not os.environ.get("AWS_SECRET_ACCESS_KEY", "").startswith("clover-test-secret-"):
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN"):
        os.environ.pop(name, None)
    os.environ.update(AWS_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}", AWS_ACCESS_KEY_ID="clover-test-key",
                      AWS_SECRET_ACCESS_KEY=f"clover-test-secret-{uuid.uuid4().hex}", AWS_REGION="us-east-1",
                      AWS_EC2_METADATA_DISABLED="true")
S3_PORT = int(os.environ["AWS_ENDPOINT_URL"].rsplit(":", 1)[1])


@pytest.fixture(scope="session")
def spark():
    """One local SparkSession for the whole suite: starting Spark is the slowest thing a test can do."""
    from dataprep.spark import SparkConfig, spark_session

    session = spark_session(
        SparkConfig(master="local[2]", driver_memory="2g", conf={
            "spark.sql.shuffle.partitions": "4",
            "spark.default.parallelism": "2",
            "spark.ui.enabled": "false",
        }),
        "clover-tests",
    )
    yield session
    session.stop()


@pytest.fixture(scope="session")
def s3_server():
    """A moto S3 server on 127.0.0.1 (the dev extra's moto[server]); stopped by its pid."""
    binary = os.path.join(os.path.dirname(sys.executable), "moto_server")
    command = [binary if os.path.exists(binary) else "moto_server", "-H", "127.0.0.1", "-p", str(S3_PORT)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(S3_PORT, server, "moto_server")
        yield os.environ["AWS_ENDPOINT_URL"]
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture
def s3_bucket(s3_server):
    """A fresh, empty bucket: s3://NAME."""
    import boto3

    name = f"clover-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=name)
    return f"s3://{name}"
