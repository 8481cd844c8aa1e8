"""SparkSession creation and deterministic dataset writes shared by every Spark stage."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from dataprep import jvm_archive
from schemas import storage

if TYPE_CHECKING:
    from pyspark.sql.types import StructType


@dataclass
class SparkConfig:
    master: str = field(default="", metadata={"help": "Spark master; empty keeps spark-submit's, else local[*]"})
    driver_memory: str = field(default="4g", metadata={"help": "driver memory when Clover starts Spark itself"})
    partitions: int = field(default=0, metadata={"help": "output partitions; 0 derives them from the input size"})
    bytes_per_partition: int = field(default=128 << 20, metadata={"help": "input bytes per partition when partitions is 0"})
    min_partitions: int = field(default=16, metadata={
        "help": "when partitions is 0, an input of N MiB gets at least min(N, this) partitions, so a small "
                "input still spreads over a cluster's cores (one 128 MiB partition ran on one core)"})
    conf: dict[str, str] = field(default_factory=dict, metadata={"help": "extra Spark settings"})
    class_archive: bool = field(default=True, metadata={
        "help": "start a local driver JVM from a class-data archive in $CLOVER_CACHE (~/.cache/clover), "
                "written by the first session: about 2 s off every later start"})
    quick_jit_bytes: int = field(default=256 << 20, metadata={
        "help": "an input up to this size starts a local driver JVM with the C1 compiler alone (about 20% "
                "faster below it, measured to 200 MB); larger inputs keep C2; -1: never"})


# Clover's quiet log4j2 configuration: WARN, with the start-up warnings every local run prints silenced.
QUIET_LOG4J = os.path.join(os.path.dirname(os.path.abspath(__file__)), "log4j2.properties")


def verbose() -> bool:
    """True under `--verbose` or CLOVER_VERBOSE=1: Spark's and Great Expectations' own output, unfiltered."""
    return os.environ.get("CLOVER_VERBOSE", "") not in ("", "0")


def spark_session(cfg: SparkConfig, app_name: str, input_bytes: int | None = None):
    """The active session (under spark-submit) or a new one; local[*] unless a master is given.

    A session Clover starts logs through QUIET_LOG4J unless verbose() or the config names its own
    log4j2 file; the JVM starts in getOrCreate, so driver Java options set here still apply. A driver
    JVM Clover starts maps the class archive of `jvm_archive` (the first one writes it), and compiles
    with C1 alone when the job's input (`input_bytes`, if known) is at most `cfg.quick_jit_bytes`.
    """
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    under_spark_submit = "PYSPARK_GATEWAY_PORT" in os.environ  # the JVM started this Python
    master = cfg.master or ("" if under_spark_submit else "local[*]")
    settings = session_settings(cfg, master)
    java_options = settings.get("spark.driver.extraJavaOptions", "")
    if input_bytes is not None and input_bytes <= cfg.quick_jit_bytes and "TieredStopAtLevel" not in java_options:
        java_options = f"{java_options} {QUICK_JIT}"
    own = cfg.class_archive and not under_spark_submit and "Archive" not in java_options
    archive = jvm_archive.archive_path(settings) if own else None  # the JIT level does not change the archive
    archive_options = jvm_archive.java_options(archive) if archive else ""
    try:
        spark = _start(app_name, master, {**settings, "spark.driver.extraJavaOptions":
                                          f"{java_options} {archive_options}".strip()})
    except Exception:
        if "SharedArchiveFile" not in archive_options:
            raise
        jvm_archive.discard(archive)  # a JVM that cannot start from the archive starts without it
        spark = _start(app_name, master, {**settings, "spark.driver.extraJavaOptions": java_options.strip()})
    else:
        if "ArchiveClassesAtExit" in archive_options:
            jvm_archive.finish_when_done(spark, archive)
    spark.sparkContext.setLogLevel("WARN")
    return spark


# C1 compiles fast and C2 compiles well: a short job ends before C2's compilations pay off. Measured
# with `clover dedup` on local[2], 2 cores: 200 documents 21.7 s -> 16.9 s wall, 20k (7.5 MB) 28.3 -> 22.1 s,
# 100k (200 MB, benchmarks/dedup.py scale) 46 -> 42 s. Larger inputs keep the JVM's default tiers.
QUICK_JIT = "-XX:TieredStopAtLevel=1"


def _start(app_name: str, master: str, settings: dict[str, str]):
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name)
    if master:
        builder = builder.master(master)
    for key, value in settings.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


# Where the object store is, never who may read it: credentials stay with each machine's own AWS chain,
# since Spark shows its settings in the UI and the event log.
OBJECT_STORE_ENV = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION")


def session_settings(cfg: SparkConfig, master: str) -> dict[str, str]:
    """The settings of a session Clover starts; `cfg.conf` wins over every default here."""
    settings = {
        "spark.driver.memory": cfg.driver_memory,
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.ui.showConsoleProgress": "false",
        # Python workers talk to their executor over a Unix socket: over TCP loopback each Python task
        # waited ~40 ms on delayed acknowledgements (64 trivial mapInArrow tasks on local[2]: 2.9 s -> 1.6 s)
        **({"spark.python.unix.domain.socket.enabled": "true"} if os.name == "posix" else {}),
        # executors on other machines reach the object store the driver reaches
        **{f"spark.executorEnv.{name}": os.environ[name] for name in OBJECT_STORE_ENV if os.environ.get(name)},
        **cfg.conf,
    }
    java_options = settings.get("spark.driver.extraJavaOptions", "")
    if not verbose() and "log4j2.configurationFile" not in java_options:
        settings["spark.driver.extraJavaOptions"] = f'-Dlog4j2.configurationFile="{QUIET_LOG4J}" {java_options}'.strip()
    return settings


def ship_file(spark, uri: str) -> Callable[[], str]:
    """Send a file (a model) along with the job; the returned function gives its path on an executor.

    Spark keys shipped files by name and refuses a second, different file of the same name in one
    session (two tokenizer.model files, say), so the file travels under a name holding its hash.
    """
    import posixpath
    import tempfile

    fs, path = storage.resolve(uri)
    with fs.open_input_stream(path) as handle:
        data = handle.read()
    name = f"{hashlib.sha256(data).hexdigest()[:16]}-{posixpath.basename(path)}"
    local = os.path.join(tempfile.gettempdir(), "clover-shipped", name)
    if not os.path.exists(local):
        os.makedirs(os.path.dirname(local), exist_ok=True)
        with open(local + ".part", "wb") as handle:
            handle.write(data)
        os.replace(local + ".part", local)
    spark.sparkContext.addFile(local)

    def local_path() -> str:
        from pyspark import SparkFiles

        return SparkFiles.get(name)

    return local_path


def quarantine_rows(frame, source: str, reason_column: str = "_reason"):
    """Rows of a dataset-level stage for quarantine/: the row as JSON (truncated) and its reason."""
    from pyspark.sql import functions as F

    columns = [c for c in frame.columns if c != reason_column]
    return frame.where(F.col(reason_column).isNotNull()).select(
        F.lit(source).alias("input_file"), F.lit(0).cast("long").alias("line"),
        F.substring(F.to_json(F.struct(*columns)), 1, 1000).alias("raw"),
        F.col(reason_column).alias("reason"), F.col("id"))


def partitions_for(cfg: SparkConfig, input_bytes: int) -> int:
    """A partition count that depends on the input only, so output does not vary with the cluster: one per
    `bytes_per_partition`, and at least one per MiB up to `min_partitions`."""
    if cfg.partitions > 0:
        return cfg.partitions
    return max(1, -(-input_bytes // cfg.bytes_per_partition), min(cfg.min_partitions, input_bytes >> 20))


SHUFFLE_PARTITIONS = "spark.sql.shuffle.partitions"


def fit_shuffle_partitions(spark, cfg: SparkConfig, input_bytes: int) -> int:
    """Size the stage's shuffles to its input, unless the user chose a number (spark-submit --conf,
    spark-defaults.conf or `spark.conf`): max(8, 2 x the cores, one per `bytes_per_partition` of input).

    Spark's default of 200 costs each shuffle of a small input 200 tasks (dedup of 100k documents ran
    3.2x slower on a 2-core cluster than on local[2], and 1.4x with 8); a fixed small number starves a
    large input. Shuffle partitions change no output byte: every stage orders and partitions what it writes.
    """
    if SHUFFLE_PARTITIONS in cfg.conf:  # the stage's own setting, also on a session that already existed
        count = int(cfg.conf[SHUFFLE_PARTITIONS])
    elif spark.sparkContext.getConf().contains(SHUFFLE_PARTITIONS):
        return int(spark.conf.get(SHUFFLE_PARTITIONS))
    else:
        count = max(8, 2 * spark.sparkContext.defaultParallelism, -(-input_bytes // cfg.bytes_per_partition))
    spark.conf.set(SHUFFLE_PARTITIONS, str(count))
    return count


def map_units(spark, units: list, read: Callable[[Iterator[tuple[int, Any]]], Iterator[pa.RecordBatch]],
              schema: StructType | str, slices: int | None = None):
    """A DataFrame of what `read` makes of `units` (read units, or any small picklable values): each task
    hands `read` the (index, unit) pairs of its contiguous slice, in order; `slices` tasks, default one per
    unit. Built on spark.range, with the units in `read`'s closure: a DataFrame made from a Python RDD
    converts its rows in a second Python worker daemon, which cost the first job ~0.4 s of start-up."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        return read((i, units[i]) for batch in batches for i in batch.column("id").to_pylist())

    return spark.range(len(units), numPartitions=max(1, slices or len(units))).mapInArrow(run, schema)


def read_parquet(spark, uri: str, columns: list[str] | None = None, file_column: str | None = None):
    """A Parquet dataset (a file, a directory or a glob) as a DataFrame, read by pyarrow on the executors.

    Spark's own reader needs a Hadoop filesystem for the path's scheme (none knows `s3://` without
    hadoop-aws); this one reaches whatever `storage.resolve` reaches, with the same credentials as
    every other read. One row group is one read unit; `file_column` adds each row's file URI.
    """
    from pyspark.sql.pandas.types import from_arrow_schema

    files = [f.uri for f in storage.expand(uri, (".parquet",))]
    footers = [(f, storage.parquet_metadata(f)) for f in files]
    schema = pa.schema([pa.field(f.name, _spark_type(f.type)) for f in footers[0][1].schema.to_arrow_schema()])
    if columns is not None:
        missing = set(columns) - set(schema.names)
        if missing:
            raise ValueError(f"{uri} has no column {', '.join(sorted(missing))} (columns: {', '.join(schema.names)})")
        schema = pa.schema([schema.field(c) for c in columns])
    if file_column:
        schema = schema.append(pa.field(file_column, pa.string()))
    units = [(f, g) for f, meta in footers for g in range(meta.num_row_groups)]
    if not units:
        return spark.createDataFrame([], from_arrow_schema(schema))
    wanted = [n for n in schema.names if n != file_column]
    total = sum(meta.serialized_size + sum(meta.row_group(g).total_byte_size for g in range(meta.num_row_groups))
                for _, meta in footers)
    slices = min(len(units), max(spark.sparkContext.defaultParallelism, -(-total // (128 << 20))))

    def read(pairs: Iterator[tuple[int, tuple[str, int]]]) -> Iterator[pa.RecordBatch]:
        for _, (file, group) in pairs:
            fs, path = storage.resolve(file)
            with fs.open_input_file(path) as handle:
                table = pq.ParquetFile(handle).read_row_group(group, columns=wanted)
            if file_column:
                table = table.append_column(file_column, pa.array([file] * table.num_rows, pa.string()))
            yield from table.cast(schema).to_batches()

    return map_units(spark, units, read, from_arrow_schema(schema), slices)


_WIDER = {pa.uint8(): pa.int16(), pa.uint16(): pa.int32(), pa.uint32(): pa.int64(), pa.uint64(): pa.int64()}


def _spark_type(arrow_type: pa.DataType) -> pa.DataType:
    """The Arrow type Spark can hold: unsigned integers (token ids) widen as Spark's Parquet reader widens them."""
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        return pa.list_(_spark_type(arrow_type.value_type))
    return _WIDER.get(arrow_type, arrow_type)


def write_parquet(df, uri: str, schema: pa.Schema | None = None, compression: str = "zstd",
                  row_group_rows: int = 16384,
                  convert: Callable[[pa.Table], pa.Table] | None = None) -> list[dict]:
    """Write each partition as `part-NNNNN.parquet` with pyarrow; returns [{file, rows, bytes, sha256}].

    pyarrow, not Spark's Parquet writer, writes the files: parquet-mr orders a column's encoding list
    differently in every JVM, so its bytes differ between runs. With row order and contents fixed by the
    caller's partitioning and sort, a re-run writes byte-identical files. Every partition writes a file,
    empty or not, so the dataset always carries its schema. `schema` (default: the DataFrame's) sets
    column types and nullability; `convert` reshapes each row group's table before that cast.
    """
    from pyspark.sql.pandas.types import to_arrow_schema

    target = schema if schema is not None else to_arrow_schema(df.schema)

    def write(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        part = _PartFile(uri, target, compression, row_group_rows, convert)
        for batch in batches:
            part.write(batch)
        yield pa.RecordBatch.from_pylist([part.close()], schema=_WRITTEN)

    written = [row.asDict() for row in df.mapInArrow(write, _WRITTEN_DDL).collect()]
    return sorted(written, key=lambda r: r["file"]) or [_empty_part(uri, target, compression)]


def write_parquet_routed(df, route: str, outputs: dict[str, tuple[str, pa.Schema]], tally: str,
                         transform: Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]] | None = None,
                         compression: str = "zstd", row_group_rows: int = 16384) -> dict[str, dict]:
    """`write_parquet` into several datasets in one pass: a row goes to the output its `route` column names,
    as that output's schema's columns. Saves a persisted DataFrame read back once per output. `transform`
    (a mapInArrow function) runs on each partition's batches in the writing task itself, which saves its
    output's round trip through the JVM.

    Returns, per output, {"files": [{file, rows, bytes, sha256}], "counts": {value of `tally`: rows}}.
    """
    import pyarrow.compute as pc

    def write(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        parts = {name: _PartFile(uri, schema, compression, row_group_rows) for name, (uri, schema) in outputs.items()}
        counts: dict[str, dict] = {name: {} for name in outputs}
        names = pa.array(list(outputs), pa.string())
        for batch in transform(batches) if transform else batches:
            routes = batch.column(route)
            stray = pc.unique(routes.filter(pc.invert(pc.is_in(routes, value_set=names)))).to_pylist()
            if stray:  # never drop a row silently
                raise ValueError(f"rows routed to no output: {route} in {stray} (outputs: {list(outputs)})")
            for name, part in parts.items():
                rows = batch.filter(pc.equal(routes, name))
                if rows.num_rows:
                    part.write(rows.select(outputs[name][1].names))
                    for value, count in zip(*rows.column(tally).value_counts().flatten()):
                        key = value.as_py()
                        counts[name][key] = counts[name].get(key, 0) + count.as_py()
        yield pa.RecordBatch.from_pylist([{**part.close(), "output": name, "counts": json.dumps(list(counts[name].items()))}
                                          for name, part in parts.items()], schema=_ROUTED)

    result: dict[str, dict] = {name: {"files": [], "counts": {}} for name in outputs}
    for row in df.mapInArrow(write, _ROUTED_DDL).collect():
        entry = result[row["output"]]
        entry["files"].append({key: row[key] for key in _WRITTEN.names})
        for key, count in json.loads(row["counts"]):
            entry["counts"][key] = entry["counts"].get(key, 0) + count
    for name, (uri, schema) in outputs.items():
        result[name]["files"] = sorted(result[name]["files"], key=lambda r: r["file"]) or \
            [_empty_part(uri, schema, compression)]
    return result


class _PartFile:
    """One task's Parquet file, written under an attempt name and renamed into place when complete, so a
    failed or repeated attempt never leaves a partial part behind."""

    def __init__(self, uri: str, schema: pa.Schema, compression: str, row_group_rows: int,
                 convert: Callable[[pa.Table], pa.Table] | None = None) -> None:
        from pyspark import TaskContext

        context = TaskContext.get()
        self.name = f"part-{context.partitionId():05d}.parquet"
        self.fs, self.directory = storage.resolve(uri)
        self.fs.create_dir(self.directory, recursive=True)
        self.attempt = f"{self.directory}/.{self.name}.attempt-{context.attemptNumber()}"
        self.schema, self.row_group_rows, self.convert = schema, row_group_rows, convert
        self.rows, self.pending, self.digest = 0, [], hashlib.sha256()
        self.sink = _HashingStream(self.fs.open_output_stream(self.attempt), self.digest)
        self.writer = pq.ParquetWriter(self.sink, schema, compression=compression)

    def write(self, batch: pa.RecordBatch) -> None:
        self.pending.append(batch)
        self.rows += batch.num_rows
        if sum(b.num_rows for b in self.pending) >= self.row_group_rows:
            self._flush()

    def _flush(self) -> None:
        table = pa.Table.from_batches(self.pending)
        table = self.convert(table) if self.convert else table
        self.writer.write_table(table.cast(self.schema), row_group_size=self.row_group_rows)
        self.pending.clear()

    def close(self) -> dict:
        if self.pending:
            self._flush()
        self.writer.close()
        self.sink.close()
        self.fs.move(self.attempt, f"{self.directory}/{self.name}")
        size = self.fs.get_file_info(f"{self.directory}/{self.name}").size
        return {"file": self.name, "rows": self.rows, "bytes": size, "sha256": self.digest.hexdigest()}


def _empty_part(uri: str, schema: pa.Schema, compression: str) -> dict:
    """Spark may plan no partition at all for an empty result: keep the schema on disk in one empty part."""
    fs, directory = storage.resolve(uri)
    fs.create_dir(directory, recursive=True)
    digest = hashlib.sha256()
    with _HashingStream(fs.open_output_stream(f"{directory}/part-00000.parquet"), digest) as sink:
        pq.write_table(schema.empty_table(), sink, compression=compression)
    size = fs.get_file_info(f"{directory}/part-00000.parquet").size
    return {"file": "part-00000.parquet", "rows": 0, "bytes": size, "sha256": digest.hexdigest()}


_WRITTEN = pa.schema([("file", pa.string()), ("rows", pa.int64()), ("bytes", pa.int64()), ("sha256", pa.string())])
_WRITTEN_DDL = "file string, rows long, bytes long, sha256 string"
_ROUTED = _WRITTEN.append(pa.field("output", pa.string())).append(pa.field("counts", pa.string()))
_ROUTED_DDL = _WRITTEN_DDL + ", output string, counts string"


class _HashingStream:
    """A write-only file object that feeds every byte written to a hash as well."""

    def __init__(self, stream, digest) -> None:
        self._stream, self._digest = stream, digest
        self.closed = False

    def write(self, data) -> int:
        self._digest.update(data)
        return self._stream.write(data)

    def flush(self) -> None:
        self._stream.flush()

    def close(self) -> None:
        if not self.closed:
            self._stream.close()
            self.closed = True

    def tell(self) -> int:
        return self._stream.tell()

    def __enter__(self) -> _HashingStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
