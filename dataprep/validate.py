"""Validate any Clover dataset with Great Expectations on Spark DataFrames, publish Data Docs, and record
the result in the dataset's report.json or manifest.json (which the gate reads)."""

from __future__ import annotations

import json
import os
import posixpath
import shutil
import tempfile
import time
from dataclasses import dataclass, field

import pyarrow as pa

from dataprep.data_docs import vendor_site
from dataprep.spark import SparkConfig, read_parquet, verbose
from dataprep.stages import Frames, dataset_kinds, frames_for
from quality import expectations as suites
from quality.gate import FILE_RECORD_SUFFIX, RECORD_FILES, dataset_record, member_uri
from quality.signals import Bounds
from schemas import storage
from schemas.ingest import JSONL_SUFFIXES, input_format

# Removal-rate bounds when the stage config sets none: any one reason removing over half the input is a bug.
DEFAULT_REMOVAL_BOUNDS = {"*": Bounds(max=0.5)}
# A suite over at most this many rows (of the columns it checks) runs on the driver, in pandas.
DRIVER_ROWS = 20_000


@dataclass
class ValidateConfig:
    """`clover validate`'s settings (the dataset itself is its PATH argument)."""
    kind: str = field(default="", metadata={
        "help": "what a dataset Clover did not write holds (a Clover dataset's kind is read from its report.json or "
                "manifest.json); the result goes to PATH/validation.json, or FILE.validation.json beside a single "
                "file, which the next stage's gate reads"})
    docs_dir: str = field(default="", metadata={
        "help": "where to write the Data Docs site; empty: PATH/data_docs, or FILE.data_docs beside a single file"})
    spark: SparkConfig = field(default_factory=SparkConfig)


@dataclass
class Validation:
    kind: str
    success: bool
    checks: list[dict] = field(default_factory=list)
    data_docs: str = ""

    @property
    def failed(self) -> list[dict]:
        return [c for c in self.checks if not c["success"]]

    def record(self) -> dict:
        import great_expectations as gx

        return {"kind": self.kind, "success": self.success, "expectations": len(self.checks),
                "failed": self.failed, "data_docs": self.data_docs,
                "validated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "great_expectations": gx.__version__}

    def table(self) -> str:
        rows = [("suite", "expectation", "column", "unexpected", "of")]
        rows += [(c["suite"], c["expectation"], c.get("column") or "", str(c.get("unexpected_count")),
                  str(c.get("element_count"))) for c in self.failed]
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in rows]
        verdict = "PASSED" if self.success else f"FAILED ({len(self.failed)} of {len(self.checks)} expectations)"
        body = "\n".join(lines) if self.failed else f"all {len(self.checks)} expectations met"
        return f"{self.kind}: {verdict}\n{body}\nData Docs: {self.data_docs}"


def run_suites(frames: dict[str, tuple[object, list]], docs_dir: str, kind: str,
               driver_rows: int = DRIVER_ROWS) -> Validation:
    """Validate each (DataFrame, expectations) with one checkpoint; Data Docs get a page per suite. A frame
    is a Spark DataFrame, or a pandas one the driver holds; a Spark frame of at most `driver_rows` rows
    (over the columns its suite checks) is validated on the driver too."""
    import great_expectations as gx
    import pandas as pd
    from great_expectations.data_context.types.base import ProgressBarsConfig

    # GX's site store writes a local, absolute directory; Data Docs for an object store are built
    # in a temporary one and copied there through pyarrow.
    local_docs = os.path.abspath(docs_dir) if "://" not in docs_dir else tempfile.mkdtemp(prefix="clover-docs-")
    context = gx.get_context(mode="ephemeral")
    if not verbose():  # GX draws a "Calculating Metrics" bar per suite into the log; the stage prints its own progress
        context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    context.add_data_docs_site(site_name="clover", site_config={
        "class_name": "SiteBuilder",
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": local_docs},
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    })
    sources = {"spark": context.data_sources.add_spark(name="clover"),
               "driver": context.data_sources.add_pandas(name="driver")}
    checks: list[dict] = []
    success = True
    for name, (frame, expectations) in frames.items():
        checked = frame if isinstance(frame, pd.DataFrame) else _checked_frame(frame, expectations, driver_rows)
        on_driver = isinstance(checked, pd.DataFrame)
        batch = sources["driver" if on_driver else "spark"].add_dataframe_asset(name=name) \
            .add_batch_definition_whole_dataframe("whole")
        try:
            result = _checkpoint(context, batch, f"{kind}.{name}", expectations, 0).run(
                batch_parameters={"dataframe": checked})
            failed = [item.expectation_config.to_domain_obj() for run in result.run_results.values()
                      for item in run.results if not item.success]
            if failed:  # a page of the failing checks with examples of their unexpected values
                for expectation in failed:
                    expectation.id = None  # a copy, free to join another suite
                _checkpoint(context, batch, f"{kind}.{name}.unexpected", failed, 20).run(
                    batch_parameters={"dataframe": checked})
        finally:
            if not on_driver:
                checked.unpersist()
        success &= result.success
        for run in result.run_results.values():
            for item in run.results:
                kwargs = item.expectation_config.kwargs
                checks.append({"suite": name, "expectation": item.expectation_config.type,
                               "column": kwargs.get("column"), "success": bool(item.success),
                               "unexpected_count": item.result.get("unexpected_count"),
                               "element_count": item.result.get("element_count"),
                               "engine": "driver" if on_driver else "spark",
                               "bounds": [kwargs.get("min_value"), kwargs.get("max_value")]
                               if "min_value" in kwargs or "max_value" in kwargs else None})
    context.build_data_docs(site_names=["clover"])  # once, every suite's pages: not once per checkpoint
    vendor_site(local_docs)  # GX's pages load their JavaScript and CSS from CDNs: point them at shipped copies
    if "://" in docs_dir:
        storage.copy_dir(local_docs, docs_dir)
        shutil.rmtree(local_docs)
    return Validation(kind, success, checks, storage.join(docs_dir, "index.html") if "://" in docs_dir
                      else os.path.join(local_docs, "index.html"))


def _checkpoint(context, batch, suite_name: str, expectations: list, examples: int):
    """A checkpoint of one suite over one batch, its result kept for the Data Docs. `examples` unexpected
    values are sampled per failing check, at the cost of a Spark job per check: 0 for the run every dataset
    gets."""
    import great_expectations as gx

    suite = context.suites.add(gx.ExpectationSuite(name=suite_name, expectations=expectations))
    definition = context.validation_definitions.add(gx.ValidationDefinition(name=suite_name, data=batch, suite=suite))
    return context.checkpoints.add(gx.Checkpoint(
        name=suite_name, validation_definitions=[definition], actions=[],
        result_format={"result_format": "SUMMARY", "partial_unexpected_count": examples}))


def _checked_frame(frame, expectations: list, driver_rows: int):
    """The frame narrowed to the columns its expectations check, ready for Great Expectations, which runs a
    Spark job per metric (a hundred for a documents suite). The columns are read once into Spark's cache, in
    one partition per core, since each job's tasks cost more than their work (`clover validate` of 842
    documents in 16 partitions: 36 s cached, 19 s also coalesced, 44 s reading the files for every job).
    Up to `driver_rows` rows are then collected into a pandas frame instead: no Spark job per metric (842
    kept documents: 1.1 s against 3.7 s). The cache comes first so that a frame derived by a join or a
    shuffle is not computed twice when it turns out larger."""
    columns = {getattr(e, "column", None) for e in expectations}
    if None not in columns:  # a table-level expectation sees every column
        frame = frame.select(*[name for name in frame.columns if name in columns])
    cached = frame.coalesce(frame.sparkSession.sparkContext.defaultParallelism).persist()
    if driver_rows > 0:
        head = cached.limit(driver_rows + 1).toArrow()
        if head.num_rows <= driver_rows:
            cached.unpersist()
            return _nan_as_spark_orders_it(head).to_pandas()
    return cached


def _nan_as_spark_orders_it(table: pa.Table) -> pa.Table:
    """Great Expectations' pandas engine reads NaN as null, which a range check skips; Spark orders NaN
    above every number and never calls it null. +inf behaves as Spark's NaN in every check a suite makes
    (ranges bound by finite values, nullness, sets), so a NaN score fails on the driver as on Spark."""
    import pyarrow.compute as pc

    for i, column in enumerate(table.columns):
        if pa.types.is_floating(column.type):
            infinity = pa.scalar(float("inf"), column.type)
            table = table.set_column(i, table.field(i), pc.if_else(pc.is_nan(column), infinity, column))
    return table


def with_text_chars(frame):
    """The documents frame with the length of its text (null for a null text), which a documents suite checks."""
    from pyspark.sql import functions as F

    return frame.withColumn(suites.TEXT_CHARS, F.length("text"))


def _foreign_frames(spark, root: str, record: dict) -> dict:
    """A documents or pairs dataset Clover did not write: the columns every later stage relies on."""
    if record.get("format") == "jsonl":
        frame = _jsonl_frame(spark, root, REQUIRED_COLUMNS[record["kind"]])
    else:
        frame = read_parquet(spark, root)
    if record["kind"] == "documents":
        return {"documents": (with_text_chars(frame), suites.documents_suite({}, {}))}
    checked = frame.withColumn("chosen_differs", frame["chosen"] != frame["rejected"])
    return {"preference_pairs": (checked, suites.preference_pairs_suite())}


# Datasets Clover did not write; a Clover dataset's frames come from the stage that writes it.
FOREIGN_FRAMES = {"foreign-documents": _foreign_frames, "foreign-pairs": _foreign_frames}


def frames_of(kind: str) -> Frames | None:
    return FOREIGN_FRAMES.get(kind) or frames_for(kind)


# `--kind` for datasets Clover did not write: the columns each needs (the Clover kinds each covers come
# from the stages that write it, `dataset_kinds()`).
REQUIRED_COLUMNS = {"documents": ("id", "text"), "pairs": ("pair_id", "prompt", "chosen", "rejected")}
ID_COLUMNS = ("id", "pair_id")  # a JSON number is an id too, as for the curate and prep-pairs readers
FOREIGN_RECORD = "validation.json"
FILE_DOCS_SUFFIX = ".data_docs"  # and its Data Docs: FILE.data_docs/


@dataclass
class Target:
    """What `clover validate` will check, found without Spark: the dataset, its record and its suite kind."""
    path: str
    root: str
    record_uri: str
    record: dict
    kind: str
    single_file: bool = False

    @property
    def docs_dir(self) -> str:
        """Where the Data Docs go by default: beside a single file, inside a directory."""
        return self.root + FILE_DOCS_SUFFIX if self.single_file else storage.join(self.root, "data_docs")


def check_dataset(path: str, kind: str | None = None) -> Target:
    """Every check that needs no Spark, before Spark starts; raises with a command that works."""
    kinds = dataset_kinds()
    if kind is not None and kind not in kinds:
        raise ValueError(f"--kind {kind!r}: choose one of {', '.join(kinds)}")
    if _is_file(path):
        return _file_target(path, kind)
    found = dataset_record(path)
    if found is not None and found[0].endswith(f"/{FOREIGN_RECORD}"):
        kind = kind or found[1].get("kind")
        found = None  # validated before with --kind: check it again the same way
    if found is None:
        return _foreign_target(path, kind)
    record_uri, record = found
    root = record_uri.rsplit("/", 1)[0]
    inferred = record.get("kind") if record_uri.endswith("manifest.json") else record.get("stage")
    if frames_of(inferred) is None:
        raise ValueError(f"{record_uri}: no validation suite for datasets of kind {inferred!r}")
    if kind is not None and inferred not in kinds[kind]:
        raise ValueError(f"{path} is a Clover {inferred} dataset, not {kind}: run `clover validate {path}` "
                         "(the kind is read from its record)")
    if inferred == "tokens":
        for entry in record["shards"]:
            uri = member_uri(root, entry["file"], record_uri)
            if not storage.exists(uri):
                raise FileNotFoundError(f"{record_uri}: shard {entry['file']} is missing; run `clover tokenize` again")
    return Target(path, root, record_uri, record, inferred)


def _foreign_target(path: str, kind: str | None) -> Target:
    """A dataset Clover did not write: Parquet files whose footers parse and hold the kind's columns."""
    root = path.rstrip("/")
    if not storage.exists(root):
        raise FileNotFoundError(f"{path}: no such file or directory")
    kind = _foreign_kind(path, kind, "was not written by Clover (no report.json or manifest.json)")
    try:
        files = storage.expand(root, (".parquet",))
    except FileNotFoundError:
        files = []
    if not files:
        raise ValueError(f"{path}: expected a directory of Parquet files; for JSONL or text run "
                         f"`clover curate {path} --out DIR` (it writes a validated documents dataset), or "
                         f"validate each Parquet or JSONL file alone: `clover validate FILE --kind {kind}`")
    for item in files:
        _check_parquet_columns(item.uri, path, kind)
    record = {"kind": kind, "written_by": "clover validate --kind",
              "files": {item.uri[len(root) + 1:]: item.size for item in files}}
    return Target(path, root, storage.join(root, FOREIGN_RECORD), record, f"foreign-{kind}")


def _foreign_kind(path: str, kind: str | None, what: str) -> str:
    """The --kind given for a dataset Clover did not write, or an error naming a command that works."""
    if kind is None:
        raise FileNotFoundError(f"{path} {what}, so its kind is unknown: run `clover validate {path} --kind documents` "
                                "(or --kind pairs)")
    if kind == "tokens":
        raise ValueError(f"{path}: token shards are read through the manifest.json that `clover tokenize` writes; "
                         "tokenize the documents with `clover tokenize` instead")
    return kind


def _is_file(path: str) -> bool:
    fs, local = storage.resolve(path.rstrip("/"))
    return fs.get_file_info(local).is_file


def _check_parquet_columns(uri: str, path: str, kind: str) -> None:
    try:
        names = storage.parquet_metadata(uri).schema.names
    except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
        raise ValueError(f"{uri}: not a readable Parquet file ({err}); remove or replace it, then run "
                         f"`clover validate {path} --kind {kind}` again") from err
    missing = [c for c in REQUIRED_COLUMNS[kind] if c not in names]
    if missing:
        raise ValueError(f"{uri}: a {kind} dataset needs columns {', '.join(REQUIRED_COLUMNS[kind])}; "
                         f"missing {', '.join(missing)} (has {', '.join(names)})")


def _file_target(path: str, kind: str | None) -> Target:
    """A single Parquet or JSONL file Clover did not write; its record is FILE.validation.json beside it."""
    name = posixpath.basename(path)
    if name in RECORD_FILES or name.endswith(FILE_RECORD_SUFFIX):
        dataset = path.removesuffix(FILE_RECORD_SUFFIX) if name.endswith(FILE_RECORD_SUFFIX) else \
            posixpath.dirname(path) or "."
        raise ValueError(f"{path} is the validation record of a dataset, not a dataset: run "
                         f"`clover validate {dataset}`")
    record_uri = path + FILE_RECORD_SUFFIX
    if kind is None and storage.exists(record_uri):  # validated before with --kind: check it again the same way
        kind = json.loads(storage.read_text(record_uri)).get("kind")
    kind = _foreign_kind(path, kind, "is a single file Clover did not write")
    try:
        fmt = input_format(path)
    except ValueError:
        fmt = None
    if fmt not in ("parquet", "jsonl"):
        raise ValueError(f"{path}: a single {kind} file is Parquet (.parquet) or JSONL ({', '.join(JSONL_SUFFIXES)}, "
                         f"optionally .gz or .zst); for text run `clover curate {path} --out DIR` (it writes a "
                         "validated documents dataset)")
    if fmt == "parquet":
        _check_parquet_columns(path, path, kind)
    else:
        _check_jsonl_head(path, kind)
    fs, local = storage.resolve(path)
    record = {"kind": kind, "written_by": "clover validate --kind", "format": fmt,
              "files": {name: fs.get_file_info(local).size}}
    return Target(path, path, record_uri, record, f"foreign-{kind}", single_file=True)


def _check_jsonl_head(path: str, kind: str) -> None:
    """The first record of a JSONL file is a JSON object with the kind's fields (the rest are checked on Spark)."""
    from schemas.ingest import _open_jsonl

    again = f"run `clover validate {path} --kind {kind}` again"
    try:
        reader = _open_jsonl(path)
        try:
            line, number = b"", 0
            while not line.strip():
                line, number = reader.readline(64 << 20), number + 1
                if not line:
                    raise ValueError(f"{path}: no records (an empty JSONL file); add records, then {again}")
        finally:
            reader.close()
        record = json.loads(line.removeprefix(b"\xef\xbb\xbf").decode("utf-8"))
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: line {number} is not JSON ({type(err).__name__}: {err}); fix or remove it, "
                         f"then {again}") from err
    except ValueError as err:
        if "no records" in str(err):
            raise
        raise ValueError(f"{path}: not a readable JSONL file ({err}); replace it, then {again}") from err
    if not isinstance(record, dict):
        raise ValueError(f"{path}: line {number} is not a JSON object; each line of a JSONL {kind} file is one "
                         f"record, an object with fields {', '.join(REQUIRED_COLUMNS[kind])}")
    missing = [c for c in REQUIRED_COLUMNS[kind] if c not in record]
    if missing:
        raise ValueError(f"{path}: a {kind} file needs fields {', '.join(REQUIRED_COLUMNS[kind])}; line {number} "
                         f"misses {', '.join(missing)} (has {', '.join(record) or 'none'})")


def _jsonl_frame(spark, uri: str, columns: tuple[str, ...]):
    """A JSONL file's records as string columns, read on an executor: a field that is missing or not a string
    (an id may be a number) is null, and so is every column of a line that is not a JSON object, so the
    suite's not-null expectations count them."""
    from pyspark.sql.pandas.types import from_arrow_schema

    schema = pa.schema([(c, pa.string()) for c in columns])

    def read(batches):
        for batch in batches:
            for item in batch.column("uri").to_pylist():
                yield from _jsonl_batches(item, columns, schema)

    return spark.createDataFrame([(uri,)], "uri string").mapInArrow(read, from_arrow_schema(schema))


def _jsonl_batches(uri: str, columns: tuple[str, ...], schema, batch_rows: int = 4096):
    from schemas.ingest import _open_jsonl

    out: dict[str, list] = {c: [] for c in columns}

    def add(record: object) -> None:
        record = record if isinstance(record, dict) else {}
        for c in columns:
            value = record.get(c)
            if c in ID_COLUMNS and isinstance(value, (int, float)) and not isinstance(value, bool):
                value = str(value)
            out[c].append(value if isinstance(value, str) else None)

    reader = _open_jsonl(uri)
    try:
        first = True
        while True:
            try:
                line = reader.readline()
            except (OSError, EOFError, ValueError) as err:  # a torn compressed stream: one null row, then stop
                add({"error": str(err)})
                break
            if not line:
                break
            if first:
                line, first = line.removeprefix(b"\xef\xbb\xbf"), False
            if not line.strip():
                continue
            try:
                add(json.loads(line.decode("utf-8")))
            except (UnicodeDecodeError, ValueError, RecursionError):
                add(None)
            if len(out[columns[0]]) >= batch_rows:
                yield pa.RecordBatch.from_pydict(out, schema=schema)
                out = {c: [] for c in columns}
    finally:
        reader.close()
    if out[columns[0]]:
        yield pa.RecordBatch.from_pydict(out, schema=schema)


def validate_dataset(spark, path: str, docs_dir: str | None = None, kind: str | None = None,
                     target: Target | None = None) -> Validation:
    """Validate the dataset at `path`, write Data Docs, and record the result in its report or manifest
    (or, for a dataset Clover did not write, in its validation.json, which the gate reads too; for a single
    file, in FILE.validation.json beside it)."""
    target = target or check_dataset(path, kind)
    root, record = target.root, target.record
    docs_dir = docs_dir or target.docs_dir
    result = run_suites(frames_of(target.kind)(spark, root, record), docs_dir, target.kind)
    record["validation"] = result.record()
    if docs_dir == target.docs_dir:  # beside the dataset: relative to the record, so it survives the commit
        relative = posixpath.basename(root) + FILE_DOCS_SUFFIX if target.single_file else "data_docs"
        record["validation"]["data_docs"] = f"{relative}/index.html"
    storage.write_text(target.record_uri, json.dumps(record, indent=2, default=str) + "\n")
    return result


def commit_stage(spark, staging: str, out: str, report, validate: bool, files: dict[str, str] | None = None) -> None:
    """The end of every stage: check the report's sum, write it (and `files`, such as a manifest, last),
    validate the staged dataset, then commit it, passed or not.

    A mismatched report removes the staging directory and raises: nothing is committed. A failed
    validation still commits (the data can be inspected) and the gate keeps it from the next stage;
    `report.extra["validation"]` carries the outcome for the caller.
    """
    try:
        report.check()
    except Exception:
        storage.remove_dir(staging)
        raise
    storage.write_text(storage.join(staging, "report.json"), report.to_json())
    for name, text in (files or {}).items():
        storage.write_text(storage.join(staging, name), text)
    if validate:
        result = validate_dataset(spark, staging)
        report.extra["validation"] = {"success": result.success, "failed": result.failed,
                                      "table": result.table().replace(staging, out)}
    storage.commit_dir(staging, out)
