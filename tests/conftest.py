import os
import sys

import pytest

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)


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
