"""SparkSession creation and deterministic dataset writes shared by every Spark stage."""

from __future__ import annotations

from dataclasses import dataclass, field

from dataprep import storage


@dataclass
class SparkConfig:
    master: str = field(default="", metadata={"help": "Spark master; empty keeps spark-submit's, else local[*]"})
    driver_memory: str = field(default="4g", metadata={"help": "driver memory when Clover starts Spark itself"})
    partitions: int = field(default=0, metadata={"help": "output partitions; 0 derives them from the input size"})
    bytes_per_partition: int = field(default=128 << 20, metadata={"help": "input bytes per partition when partitions is 0"})
    conf: dict[str, str] = field(default_factory=dict, metadata={"help": "extra Spark settings"})


def spark_session(cfg: SparkConfig, app_name: str):
    """The active session (under spark-submit) or a new one; local[*] unless a master is given."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    builder = SparkSession.builder.appName(app_name)
    if cfg.master:
        builder = builder.master(cfg.master)
    settings = {
        "spark.driver.memory": cfg.driver_memory,
        # Small local runs drown in 200 shuffle tasks; clusters should set their own value.
        **({"spark.sql.shuffle.partitions": "8"} if cfg.master.startswith("local") or not cfg.master else {}),
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.ui.showConsoleProgress": "false",
        **cfg.conf,
    }
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def partitions_for(cfg: SparkConfig, input_bytes: int) -> int:
    """A partition count that depends on the input only, so output does not vary with the cluster."""
    if cfg.partitions > 0:
        return cfg.partitions
    return max(1, -(-input_bytes // cfg.bytes_per_partition))


def write_parquet(df, uri: str, compression: str = "zstd") -> list[str]:
    """Write a DataFrame as Parquet with stable file names; returns the file names.

    Row order and file contents are fixed by the caller's partitioning and sort, so a re-run over the
    same input and config writes byte-identical files.
    """
    df.write.mode("overwrite").option("compression", compression).parquet(uri)
    return storage.normalize_part_files(uri)
