import os
import sys
import uuid

import pytest

from tests.infra import free_port, moto_server

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)


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
        input_bytes=0,  # the suite's data is small: C1 alone compiles fast enough
    )
    yield session
    session.stop()


@pytest.fixture(scope="session")
def s3_server():
    """A moto S3 server on 127.0.0.1 (the dev extra's moto[server]); stopped by its pid."""
    with moto_server(S3_PORT) as url:
        yield url


@pytest.fixture
def s3_bucket(s3_server):
    """A fresh, empty bucket: s3://NAME."""
    import boto3

    name = f"clover-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=name)
    return f"s3://{name}"
