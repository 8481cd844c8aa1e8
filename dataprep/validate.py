"""Validate any Clover dataset with Great Expectations on Spark DataFrames, publish Data Docs, and record
the result in the dataset's report.json or manifest.json (which the gate reads)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field

from dataprep.spark import read_parquet, verbose
from dataprep.stages import Frames, dataset_kinds, frames_for
from quality import expectations as suites
from quality.gate import dataset_record, member_uri
from quality.signals import Bounds
from schemas import storage

# Removal-rate bounds when the stage config sets none: any one reason removing over half the input is a bug.
DEFAULT_REMOVAL_BOUNDS = {"*": Bounds(max=0.5)}


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


def run_suites(frames: dict[str, tuple[object, list]], docs_dir: str, kind: str) -> Validation:
    """Validate each (DataFrame, expectations) with one checkpoint; Data Docs get a page per suite."""
    import great_expectations as gx
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
    source = context.data_sources.add_spark(name="clover")
    checks: list[dict] = []
    success = True
    for name, (frame, expectations) in frames.items():
        batch = source.add_dataframe_asset(name=name).add_batch_definition_whole_dataframe("whole")
        suite = context.suites.add(gx.ExpectationSuite(name=f"{kind}.{name}", expectations=expectations))
        definition = context.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch, suite=suite))
        checkpoint = context.checkpoints.add(gx.Checkpoint(
            name=f"{kind}-{name}", validation_definitions=[definition],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="docs", site_names=["clover"])],
            result_format={"result_format": "SUMMARY"}))
        result = checkpoint.run(batch_parameters={"dataframe": frame})
        success &= result.success
        for run in result.run_results.values():
            for item in run.results:
                kwargs = item.expectation_config.kwargs
                checks.append({"suite": name, "expectation": item.expectation_config.type,
                               "column": kwargs.get("column"), "success": bool(item.success),
                               "unexpected_count": item.result.get("unexpected_count"),
                               "element_count": item.result.get("element_count"),
                               "bounds": [kwargs.get("min_value"), kwargs.get("max_value")]
                               if "min_value" in kwargs or "max_value" in kwargs else None})
    if "://" in docs_dir:
        storage.copy_dir(local_docs, docs_dir)
        shutil.rmtree(local_docs)
    return Validation(kind, success, checks, storage.join(docs_dir, "index.html") if "://" in docs_dir
                      else os.path.join(local_docs, "index.html"))


def _foreign_frames(spark, root: str, record: dict) -> dict:
    """A documents or pairs dataset Clover did not write: the columns every later stage relies on."""
    frame = read_parquet(spark, root)
    if record["kind"] == "documents":
        return {"documents": (frame, suites.documents_suite({}, {}))}
    checked = frame.withColumn("chosen_differs", frame["chosen"] != frame["rejected"])
    return {"preference_pairs": (checked, suites.preference_pairs_suite())}


# Datasets Clover did not write; a Clover dataset's frames come from the stage that writes it.
FOREIGN_FRAMES = {"foreign-documents": _foreign_frames, "foreign-pairs": _foreign_frames}


def frames_of(kind: str) -> Frames | None:
    return FOREIGN_FRAMES.get(kind) or frames_for(kind)


# `--kind` for datasets Clover did not write: the columns each needs (the Clover kinds each covers come
# from the stages that write it, `dataset_kinds()`).
REQUIRED_COLUMNS = {"documents": ("id", "text"), "pairs": ("pair_id", "prompt", "chosen", "rejected")}
FOREIGN_RECORD = "validation.json"


@dataclass
class Target:
    """What `clover validate` will check, found without Spark: the dataset, its record and its suite kind."""
    path: str
    root: str
    record_uri: str
    record: dict
    kind: str


def check_dataset(path: str, kind: str | None = None) -> Target:
    """Every check that needs no Spark, before Spark starts; raises with a command that works."""
    kinds = dataset_kinds()
    if kind is not None and kind not in kinds:
        raise ValueError(f"--kind {kind!r}: choose one of {', '.join(kinds)}")
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
    if kind is None:
        raise FileNotFoundError(f"{path} was not written by Clover (no report.json or manifest.json), so its kind "
                                f"is unknown: run `clover validate {path} --kind documents` (or --kind pairs)")
    if kind == "tokens":
        raise ValueError(f"{path}: token shards are read through the manifest.json that `clover tokenize` writes; "
                         "tokenize the documents with `clover tokenize` instead")
    fs, local = storage.resolve(root)
    files = [] if fs.get_file_info(local).is_file else storage.expand(root, (".parquet",))
    if not files:
        raise ValueError(f"{path}: expected a directory of Parquet files; for JSONL or text run "
                         f"`clover curate {path} --out DIR` (it writes a validated documents dataset), or put "
                         f"the Parquet files in a directory and run `clover validate DIR --kind {kind}`")
    for item in files:
        try:
            names = storage.parquet_metadata(item.uri).schema.names
        except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
            raise ValueError(f"{item.uri}: not a readable Parquet file ({err}); remove or replace it, then run "
                             f"`clover validate {path} --kind {kind}` again") from err
        missing = [c for c in REQUIRED_COLUMNS[kind] if c not in names]
        if missing:
            raise ValueError(f"{item.uri}: a {kind} dataset needs columns {', '.join(REQUIRED_COLUMNS[kind])}; "
                             f"missing {', '.join(missing)} (has {', '.join(names)})")
    record = {"kind": kind, "written_by": "clover validate --kind",
              "files": {item.uri[len(root) + 1:]: item.size for item in files}}
    return Target(path, root, storage.join(root, FOREIGN_RECORD), record, f"foreign-{kind}")


def validate_dataset(spark, path: str, docs_dir: str | None = None, kind: str | None = None,
                     target: Target | None = None) -> Validation:
    """Validate the dataset at `path`, write Data Docs, and record the result in its report or manifest
    (or, for a dataset Clover did not write, in validation.json beside it, which the gate reads too)."""
    target = target or check_dataset(path, kind)
    root, record = target.root, target.record
    docs_dir = docs_dir or storage.join(root, "data_docs")
    result = run_suites(frames_of(target.kind)(spark, root, record), docs_dir, target.kind)
    record["validation"] = result.record()
    if docs_dir == storage.join(root, "data_docs"):  # beside the dataset: relative, so it survives the commit
        record["validation"]["data_docs"] = "data_docs/index.html"
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
