"""The curation stage: ingest, normalize, score, and keep or reject by thresholds, with full accounting.

Every input record ends in exactly one of OUT/documents (kept), OUT/rejected (a failing rule, with all
scores, or with those up to it under `early_exit`) or OUT/quarantine (malformed), and report.json proves
the sum.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pyarrow as pa

from dataprep.spark import (
    SparkConfig,
    fit_shuffle_partitions,
    map_units,
    partitions_for,
    read_parquet,
    ship_file,
    write_parquet_routed,
)
from dataprep.stages import Option, Stage, register
from dataprep.validate import DEFAULT_REMOVAL_BOUNDS, commit_stage, with_text_chars
from quality import expectations as suites
from quality.classifier import FastTextStep, load_model, predict
from quality.signals import (
    SCORE_RANGES,
    Bounds,
    DocumentScorer,
    SignalConfig,
    first_failing_rule,
    preset_thresholds,
    resolve_thresholds,
    settles,
)
from quality.text import normalize_text
from schemas import QUARANTINE, DatasetSchema, StageReport, documents_schema, rejected_schema, storage
from schemas.config import ConfigError, build_config, to_dict
from schemas.ingest import RAW, SUPPORTED_SUFFIXES, IngestConfig, input_format, parquet_units, read_units

KEPT, REJECTED, QUARANTINED = "documents", "rejected", "quarantine"


@dataclass
class CurateConfig:
    ingest: IngestConfig = field(default_factory=IngestConfig)
    signals: SignalConfig = field(default_factory=SignalConfig)
    thresholds: dict[str, Bounds] = field(
        default_factory=lambda: preset_thresholds("clover"),
        metadata={"help": "keep when min <= score <= max; null disables a rule; checked in score order. "
                          "Unset rules follow signals.preset (docs/quality.md)"},
    )
    early_exit: bool = field(default=False, metadata={
        "help": "stop scoring a document at its first failing rule, as FineWeb's pipeline does: faster, but a "
                "rejected row then holds only the scores up to its reason (the rest null), so inspect's "
                "what-if cannot loosen a rule over it (docs/curate.md)"})
    fasttext: list[FastTextStep] = field(default_factory=list, metadata={"help": "fastText models to apply"})
    removal_rate_bounds: dict[str, Bounds] = field(
        default_factory=lambda: {"*": Bounds(max=0.5)},
        metadata={"help": "validation: share of the input one reason may remove; '*' covers the others"},
    )
    spark: SparkConfig = field(default_factory=SparkConfig)

    def __post_init__(self) -> None:
        self.thresholds = resolve_thresholds(self.thresholds, self.signals.preset)

    def score_columns(self) -> list[str]:
        return [step.score_column for step in self.fasttext] + list(SCORE_RANGES)

    def validate(self) -> None:
        known = set(self.score_columns())
        for name in self.thresholds:
            if name not in known:
                raise ConfigError(f"unknown score 'thresholds.{name}' (known: {', '.join(sorted(known))})")
        for i, step in enumerate(self.fasttext):
            if not step.name or not step.model or not step.score_label:
                raise ConfigError(f"'fasttext[{i}]' needs name, model and score_label")


def output_schemas(cfg: CurateConfig) -> tuple[DatasetSchema, DatasetSchema]:
    documents = documents_schema(cfg.score_columns(), [s.label_column for s in cfg.fasttext])
    return documents, rejected_schema(documents)


def _scored_schema(cfg: CurateConfig) -> pa.Schema:
    """Every column any of the three outputs needs, plus the destination."""
    _, rejected = output_schemas(cfg)
    extra = [pa.field(n, t) for n, t in (("dest", pa.string()), ("input_file", pa.string()),
                                         ("line", pa.int64()), ("raw", pa.string()))]
    fields = [pa.field(f.name, f.type) for f in rejected.arrow()] + extra
    return pa.schema(fields)


class _PartitionScorer:
    """Runs on an executor over one partition, sorted by id, so repeated ids are adjacent."""

    def __init__(self, cfg: CurateConfig, model_files: dict[str, str]) -> None:
        self.cfg = cfg
        self.scorer = DocumentScorer(cfg.signals)
        self.models = {step.name: load_model(model_files[step.name]) for step in cfg.fasttext}
        self.schema = _scored_schema(cfg)
        self.settled = settles(cfg.thresholds, cfg.score_columns()) if cfg.early_exit else None
        self.last_id: str | None = None

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            yield self._score_batch(batch.to_pydict())

    def _score_batch(self, raw: dict[str, list]) -> pa.RecordBatch:
        out: dict[str, list] = {name: [] for name in self.schema.names}
        base = ("id", "source", "url", "meta", "input_file", "line")
        pending = []  # (row index in out, normalized text) of documents still to score
        for i in range(len(raw["line"])):
            row = {name: raw[name][i] for name in base}
            error, text = raw["error"][i], raw["text"][i]
            if error is None and row["id"] == self.last_id:
                error = "duplicate_id"
                raw["raw"][i] = text[: self.cfg.ingest.raw_preview_chars]
            if error is not None:
                self._append(out, row, dest=QUARANTINED, reason=error, raw=raw["raw"][i])
                continue
            self.last_id = row["id"]
            text = normalize_text(text)
            if not text:
                self._append(out, row, dest=REJECTED, reason="empty", text="")
                continue
            pending.append((self._append(out, row, dest=KEPT, text=text), text))
        self._score(out, pending)
        return pa.RecordBatch.from_pydict(out, schema=self.schema)

    @staticmethod
    def _append(out: dict[str, list], row: dict, **values) -> int:
        values = {**row, **values}
        for name, column in out.items():
            column.append(values.get(name))
        return len(out["dest"]) - 1

    def _score(self, out: dict[str, list], pending: list[tuple[int, str]]) -> None:
        texts = [text for _, text in pending]
        for step in self.cfg.fasttext:
            labels, probs = predict(self.models[step.name], texts, step.score_label, step.top_k)
            for (row, _), label, prob in zip(pending, labels, probs):
                out[step.label_column][row] = label
                out[step.score_column][row] = float(prob)
        for row, text in pending:
            scores = {step.score_column: out[step.score_column][row] for step in self.cfg.fasttext}
            kept_text = text
            if self.settled is None or not self.settled(scores):
                kept_text, signals = self.scorer(text, self._with_classifiers(scores))
                scores |= signals
            for name, value in scores.items():
                out[name][row] = value
            out["text"][row] = kept_text
            reason = "empty" if not kept_text else first_failing_rule(scores, self.cfg.thresholds)
            if reason is not None:
                out["dest"][row], out["reason"][row] = REJECTED, reason

    def _with_classifiers(self, classifier_scores: dict[str, float]) -> Callable[[dict[str, float]], bool] | None:
        """The early exit's test over the scorer's scores, the classifiers' (checked first) included."""
        settled = self.settled
        return None if settled is None else lambda scores: settled(classifier_scores | scores)


@storage.writes_output("out")
def run_curate(spark, inputs: list[str], out: str, cfg: CurateConfig, validate: bool = True) -> StageReport:
    """Run the stage, validate it (Great Expectations, Data Docs in OUT/data_docs) and commit OUT atomically."""
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema

    started = time.time()
    cfg.validate()
    files = sorted({f.uri: f for pattern in inputs for f in storage.expand(pattern, SUPPORTED_SUFFIXES)}.values(),
                   key=lambda f: f.uri)
    formats = {f.uri: input_format(f.uri) for f in files}  # fails early, naming the file, on an unknown format
    units = [(f.uri, rg) for f in files for rg in (parquet_units(f.uri) if formats[f.uri] == "parquet" else [0])]
    num_partitions = partitions_for(cfg.spark, sum(f.size for f in files))
    shuffle_partitions = fit_shuffle_partitions(spark, cfg.spark, sum(f.size for f in files))

    raw = map_units(spark, units, read_units(cfg.ingest), from_arrow_schema(RAW))
    key = F.coalesce(F.col("id"), F.concat_ws(":", "input_file", F.col("line").cast("string")))
    ordered = (
        raw.withColumn("_key", key)
        .repartition(num_partitions, "_key")
        .sortWithinPartitions("_key", "input_file", "line")
        .drop("_key")
    )
    model_paths = {step.name: ship_file(spark, step.model) for step in cfg.fasttext}

    def score(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        return _PartitionScorer(cfg, {name: path() for name, path in model_paths.items()})(batches)

    documents, rejected = output_schemas(cfg)
    staging = storage.staging_dir(out)
    outputs = {dest: (storage.join(staging, dest), schema.arrow())
               for dest, schema in ((KEPT, documents), (REJECTED, rejected), (QUARANTINED, QUARANTINE))}
    written = write_parquet_routed(ordered, "dest", outputs, tally="reason", transform=score)
    counts = {(dest, reason): n for dest, entry in written.items() for reason, n in entry["counts"].items()}

    report = StageReport.from_counts(
        "curate", counts, KEPT, REJECTED, QUARANTINED, config=to_dict(cfg),
        extra={"inputs": [f.uri for f in files], "partitions": num_partitions,
               "shuffle_partitions": shuffle_partitions},
    )
    report.seconds = round(time.time() - started, 3)
    commit_stage(spark, staging, out, report, validate)
    return report


def validation_frames(spark, root: str, record: dict) -> dict:
    """The kept documents against their score ranges and thresholds; each removal reason's rate against its bound."""
    import pandas as pd

    cfg = build_config(CurateConfig, record["config"])
    documents = read_parquet(spark, storage.join(root, "documents"))
    ranges = {name: SCORE_RANGES.get(name, (0.0, 1.0)) for name in cfg.score_columns()}
    total = max(record["input"], 1)
    rates = {reason: count / total for reason, count in record["removed"].items()}
    frames = {"documents": (with_text_chars(documents), suites.documents_suite(ranges, cfg.thresholds))}
    rate_checks = suites.removal_rate_suite(rates, cfg.removal_rate_bounds or DEFAULT_REMOVAL_BOUNDS)
    if rate_checks:
        frames["removal_rates"] = (pd.DataFrame([{f"rate__{r}": rate for r, rate in rates.items()}]), rate_checks)
    return frames


register(Stage(
    name="curate",
    summary="ingest, normalize and quality-gate raw text (Spark)",
    description="Ingest JSONL/Parquet/.txt, normalize, score quality, and keep, reject or quarantine each record.",
    config=CurateConfig,
    run=lambda spark, args, cfg: run_curate(spark, args.inputs, args.out, cfg, validate=not args.no_validate),
    describe=lambda report, cfg, args: (f"curate: {report.input} in, {report.output} kept, removed {report.removed}, "
                                        f"quarantined {report.quarantined} -> {args.out}"),
    inputs=("inputs", "files, directories or globs"),
    out_help="output directory (documents/, rejected/, quarantine/)",
    writes="documents",
    validates=("curate",),
    frames=validation_frames,
    options=(Option("--text-field", "ingest.text_field"), Option("--id-field", "ingest.id_field",
                                                                  "input field with the id; derived when absent")),
    gated_input=False,
    prepare=lambda cfg, args: cfg.validate(),
    module=__name__,
    step=10,
))
