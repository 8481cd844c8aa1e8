"""The dedup stage: exact duplicates by hash, near duplicates by MinHash-LSH, verified, clustered on Spark.

Every input document ends in exactly one of OUT/documents (kept), OUT/duplicates (removed, with the
document that replaced it) or OUT/quarantine (no id, no text, or a repeated id).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from dataprep.spark import SparkConfig, partitions_for, quarantine_rows, read_parquet, write_parquet
from dataprep.validate import commit_stage
from quality.gate import require_validated
from quality.minhash import ShingleHasher, band_digests, jaccard, scheme_record, signatures
from quality.text import normalize_text
from schemas import QUARANTINE, StageReport, storage
from schemas.config import ConfigError, to_dict
from schemas.datasets import DUPLICATES

FEATURES = pa.schema([
    ("id", pa.string()),
    ("exact_hash", pa.string()),
    ("bands", pa.list_(pa.int64())),
    ("shingles", pa.list_(pa.int32())),
    ("score", pa.float64()),
    ("priority", pa.int32()),
])
INDEX_COLUMNS = ("id", "exact_hash", "bands", "shingles")


@dataclass
class DedupConfig:
    text_column: str = field(default="text", metadata={"help": "column holding the text"})
    score_column: str = field(default="", metadata={"help": "representative = highest score, then smallest id"})
    shingle_n: int = field(default=5, metadata={"help": "words per shingle"})
    num_perm: int = field(default=112, metadata={"help": "MinHash permutations"})
    bands: int = field(default=14, metadata={"help": "LSH bands"})
    rows: int = field(default=8, metadata={"help": "signature rows per band"})
    seed: int = field(default=1, metadata={"help": "MinHash seed (datasketch's default is 1)"})
    threshold: float = field(default=0.75, metadata={"help": "Jaccard a verified pair must reach"})
    verify: bool = field(default=True, metadata={"help": "check candidate pairs by exact Jaccard"})
    max_bucket_size: int = field(default=1000, metadata={"help": "bucket members beyond this are not linked"})
    max_iterations: int = field(default=100, metadata={"help": "connected-components iteration limit"})
    driver_components_max_edges: int = field(default=200_000, metadata={
        "help": "verified edges up to which connected components run on the driver (union-find, one collect) "
                "instead of as checkpointed Spark iterations; the result is the same"})
    checkpoint_dir: str = field(default="", metadata={
        "help": "directory Spark's Hadoop filesystems reach, for reliable checkpoints of connected components; "
                "empty: beside the output when it is local or hdfs://, else local (executor) checkpoints"})
    spark: SparkConfig = field(default_factory=SparkConfig)

    def validate(self) -> None:
        if self.bands * self.rows > self.num_perm:
            raise ConfigError(f"bands x rows = {self.bands * self.rows} exceeds num_perm = {self.num_perm}")
        if not 0 < self.threshold <= 1:
            raise ConfigError(f"'threshold' must be in (0, 1], got {self.threshold}")

    def index_params(self) -> dict:
        """What an index's signatures depend on, MinHash scheme and permutation hash included."""
        params = {k: getattr(self, k) for k in ("shingle_n", "num_perm", "bands", "rows", "seed")}
        return {**params, **scheme_record(self.num_perm, self.seed)}


def exact_hash(text: str) -> str:
    """Hash of the normalized text (`quality.text.normalize_text`), 128 bits as hex."""
    return hashlib.sha256(normalize_text(text).encode("utf-8")).hexdigest()[:32]


def _list_array(arrays: list[np.ndarray], value_type: pa.DataType) -> pa.Array:
    offsets = np.concatenate(([0], np.cumsum([len(a) for a in arrays]))).astype(np.int32)
    values = np.concatenate(arrays) if arrays else np.empty(0)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values.astype(value_type.to_pandas_dtype())))


def _features(cfg: DedupConfig):
    def compute(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        hasher = ShingleHasher(cfg.shingle_n)
        for batch in batches:
            texts = batch.column("text").to_pylist()
            shingles = hasher.batch(texts)
            digests = band_digests(signatures(shingles, cfg.num_perm, cfg.seed), cfg.bands, cfg.rows)
            yield pa.RecordBatch.from_arrays([
                batch.column("id"),
                pa.array([exact_hash(t) for t in texts]),
                _list_array(list(digests), pa.int64()),
                _list_array([s.view(np.int32) for s in shingles], pa.int32()),
                batch.column("score"),
                pa.array(np.zeros(len(texts), dtype=np.int32)),
            ], schema=FEATURES)

    return compute


_SIMILARITY = pa.schema([("src", pa.string()), ("dst", pa.string()), ("similarity", pa.float64())])


def _jaccard_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        a, b = batch.column("a_shingles"), batch.column("b_shingles")
        sims = [jaccard(np.asarray(x.values), np.asarray(y.values)) for x, y in zip(a, b)]
        yield pa.RecordBatch.from_arrays([batch.column("src"), batch.column("dst"), pa.array(sims)], schema=_SIMILARITY)


def _similarities(pairs, shingles):
    """Exact Jaccard of each (src, dst) pair, from the documents' shingles; stays distributed."""
    from pyspark.sql.pandas.types import from_arrow_schema

    joined = (pairs.join(shingles.withColumnRenamed("id", "src").withColumnRenamed("shingles", "a_shingles"), "src")
              .join(shingles.withColumnRenamed("id", "dst").withColumnRenamed("shingles", "b_shingles"), "dst"))
    return joined.select("src", "dst", "a_shingles", "b_shingles").mapInArrow(_jaccard_batches, from_arrow_schema(_SIMILARITY))


@storage.writes_output("out")
def run_dedup(spark, input_uri: str, out: str, cfg: DedupConfig, against: str | None = None,
              write_index: str | None = None, validate: bool = True, allow_unvalidated: bool = False) -> StageReport:
    from pyspark.sql import Window
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema

    from dataprep.components import connected_components

    started = time.time()
    cfg.validate()
    gate = require_validated(input_uri, allow_unvalidated)
    source = storage.documents_path(input_uri)
    docs = read_parquet(spark, source)
    missing = {"id", cfg.text_column} - set(docs.columns)
    if missing:
        raise ConfigError(f"{source} is not a documents dataset: no column {', '.join(sorted(missing))}")
    if cfg.score_column and cfg.score_column not in docs.columns:
        raise ConfigError(f"score column '{cfg.score_column}' is not in {source} (columns: {', '.join(docs.columns)})")
    staging = storage.staging_dir(out)
    checkpoints = cfg.checkpoint_dir or (storage.join(staging, "_checkpoints") if _hadoop_reaches(staging) else "")
    if checkpoints:
        spark.sparkContext.setCheckpointDir(checkpoints)

    # Quarantine: rows without id or text, and every repeat of an id (the first by content hash stays).
    # Repeated ids are found on the ids alone; only their rows are ranked, so the text is not shuffled.
    repeated = (docs.where(F.col("id").isNotNull()).groupBy("id").count().where(F.col("count") > 1)
                .select("id", F.lit(True).alias("_repeated")).persist())
    marked = docs.join(F.broadcast(repeated), "id", "left").select(*docs.columns, "_repeated")
    missing_reason = F.when(F.col("id").isNull(), "missing_id").when(F.col(cfg.text_column).isNull(), "missing_text")
    rank = F.row_number().over(Window.partitionBy("id").orderBy(F.xxhash64(*docs.columns)))
    flagged = (marked.where(F.col("_repeated").isNull()).withColumn("_reason", missing_reason)
               .unionByName(marked.where(F.col("_repeated"))
                            .withColumn("_reason", F.coalesce(missing_reason, F.when(rank > 1, "duplicate_id"))))
               .drop("_repeated"))
    valid = flagged.where(F.col("_reason").isNull()).drop("_reason")
    quarantine = quarantine_rows(flagged, source)

    score = F.col(cfg.score_column).cast("double") if cfg.score_column else F.lit(None).cast("double")
    features = (valid.select("id", F.col(cfg.text_column).alias("text"), score.alias("score"))
                .mapInArrow(_features(cfg), from_arrow_schema(FEATURES)))
    if against:
        features = features.unionByName(_read_index(spark, against, cfg))
    features = features.persist()
    rank_order = [F.desc("priority"), F.desc_nulls_last("score"), F.asc("id")]

    # Exact duplicates: one survivor per hash.
    exact_window = Window.partitionBy("exact_hash").orderBy(*rank_order)
    ranked = (features.withColumn("_rank", F.row_number().over(exact_window))
              .withColumn("_rep", F.first("id").over(exact_window)))
    exact_removed = ranked.where(F.col("_rank") > 1).select("id", F.col("_rep").alias("exact_kept"), "priority")
    survivors = ranked.where(F.col("_rank") == 1).drop("_rank", "_rep")

    # LSH: one 64-bit digest per band is shuffled; each bucket becomes star edges to its smallest id.
    members = survivors.where(F.size("shingles") > 0).select("id", F.posexplode("bands").alias("band", "digest"))
    bucket = Window.partitionBy("band", "digest")
    members = (members.withColumn("_pos", F.row_number().over(bucket.orderBy("id")))
               .withColumn("_size", F.count("*").over(bucket))
               .withColumn("_root", F.min("id").over(bucket)))
    oversized = members.where((F.col("_size") > cfg.max_bucket_size) & (F.col("_pos") == 1)).agg(
        F.count("*").alias("buckets"), F.coalesce(F.sum(F.col("_size") - cfg.max_bucket_size), F.lit(0)).alias("unlinked")
    ).first()
    candidates = (members.where((F.col("_pos") > 1) & (F.col("_pos") <= cfg.max_bucket_size))
                  .select(F.col("id").alias("src"), F.col("_root").alias("dst")).distinct()).persist()
    shingles = survivors.select("id", "shingles")
    if cfg.verify:
        edges = (_similarities(candidates, shingles).where(F.col("similarity") >= cfg.threshold)
                 .select("src", "dst").persist())
    else:
        edges = candidates
    # Counted once, for the report and to spare the jobs of an empty or small graph.
    candidate_count = candidates.count()
    edge_count = edges.count() if cfg.verify and candidate_count else candidate_count
    components = connected_components(edges, cfg.max_iterations, reliable=bool(checkpoints), edge_count=edge_count,
                                      driver_max_edges=cfg.driver_components_max_edges)

    # Near duplicates: the representative of a component is the best-ranked member.
    near = components.assignment.join(survivors.select(F.col("id").alias("node"), "score", "priority"), "node")
    comp_window = Window.partitionBy("component").orderBy(F.desc("priority"), F.desc_nulls_last("score"), F.asc("node"))
    near = (near.withColumn("_rank", F.row_number().over(comp_window))
            .withColumn("kept_id", F.first("node").over(comp_window)))
    released = 0
    if cfg.verify and edge_count:
        # A chain A~B~C can join documents that are not alike: a member is removed only if it is itself
        # similar to the document that replaces it; otherwise it stays, as its own representative.
        to_check = near.where(F.col("_rank") > 1).select(F.col("node").alias("src"), F.col("kept_id").alias("dst"))
        unlike = (_similarities(to_check, shingles).where(F.col("similarity") < cfg.threshold)
                  .select(F.col("src").alias("node"), F.lit(True).alias("_released")).localCheckpoint())
        released = unlike.count()
        near = (near.join(unlike, "node", "left")
                .withColumn("kept_id", F.when(F.col("_released"), F.col("node")).otherwise(F.col("kept_id")))
                .withColumn("_rank", F.when(F.col("_released"), F.lit(1)).otherwise(F.col("_rank"))))
    near_removed = near.where(F.col("_rank") > 1).select(
        F.col("node").alias("id"), F.col("component").alias("cluster_id"), "kept_id", F.lit("near").alias("kind"),
        "priority")
    # An exact duplicate points at its hash group's survivor, or at whatever replaced that survivor.
    exact_final = (exact_removed.join(near.select(F.col("node").alias("exact_kept"), "component",
                                                  F.col("kept_id").alias("near_kept")), "exact_kept", "left")
                   .select("id", F.coalesce("component", "exact_kept").alias("cluster_id"),
                           F.coalesce("near_kept", "exact_kept").alias("kept_id"), F.lit("exact").alias("kind"),
                           "priority"))
    duplicates = (exact_final.unionByName(near_removed).where(F.col("priority") == 0).drop("priority")).persist()
    kept = (valid.join(duplicates.select("id"), "id", "left_anti")
            .join(features.where(F.col("priority") == 0).select("id", "exact_hash"), "id"))

    num_partitions = partitions_for(cfg.spark, _input_bytes(source))
    outputs = {
        "documents": kept.select(*valid.columns, "exact_hash"),
        "duplicates": duplicates.select(*DUPLICATES.names),
        "quarantine": quarantine.select(*QUARANTINE.names),
    }
    counts = {}
    for name, frame in outputs.items():
        ordered = frame.repartition(num_partitions, "id").sortWithinPartitions("id")
        counts[name] = sum(f["rows"] for f in write_parquet(ordered, storage.join(staging, name)))
    kinds = {r["kind"]: r["count"] for r in read_parquet(spark, storage.join(staging, "duplicates"), ["kind"]).groupBy("kind").count().collect()}
    reasons = {r["reason"]: r["count"] for r in read_parquet(spark, storage.join(staging, "quarantine"), ["reason"]).groupBy("reason").count().collect()}
    total = sum(counts.values())  # every input row is in exactly one of the three outputs
    stats = {
        "candidate_pairs": candidate_count,
        "verified_pairs": edge_count if cfg.verify else None,
        "oversized_buckets": oversized["buckets"],
        "unlinked_bucket_members": int(oversized["unlinked"]),
        "released_from_chains": released,
        "components": (components.count if components.count is not None
                       else components.assignment.select("component").distinct().count()),
        "cc_iterations": components.iterations,
        "against": against,
    }
    if write_index:
        _write_index(kept.select("id").join(features.select(*INDEX_COLUMNS), "id"), write_index, cfg, num_partitions)
    for frame in (repeated, features, candidates, edges, duplicates):
        frame.unpersist()

    report = StageReport(
        stage="dedup", input=total, output=counts["documents"],
        removed={f"{kind}_duplicate": n for kind, n in sorted(kinds.items())},
        quarantined=dict(sorted(reasons.items())), config=to_dict(cfg),
        extra={"source": source, "input_validation": gate, **stats},
    )
    report.seconds = round(time.time() - started, 3)
    if checkpoints:
        storage.remove_dir(checkpoints if cfg.checkpoint_dir else storage.join(staging, "_checkpoints"))
    commit_stage(spark, staging, out, report, validate)
    return report


def _hadoop_reaches(uri: str) -> bool:
    """Whether Spark's built-in Hadoop filesystems can write `uri` (object stores need extra jars)."""
    return "://" not in uri or uri.startswith(("hdfs://", "file://"))


def _input_bytes(uri: str) -> int:
    return sum(f.size for f in storage.expand(uri, (".parquet",)))


def _write_index(frame, uri: str, cfg: DedupConfig, num_partitions: int) -> None:
    """Signatures' band digests and shingles of the kept documents, for a later `--against`."""
    staging = storage.staging_dir(uri)
    write_parquet(frame.repartition(num_partitions, "id").sortWithinPartitions("id"), storage.join(staging, "signatures"))
    storage.write_text(storage.join(staging, "index.json"), json.dumps(cfg.index_params(), indent=2) + "\n")
    storage.commit_dir(staging, uri)


def _read_index(spark, uri: str, cfg: DedupConfig):
    from pyspark.sql import functions as F

    params = json.loads(storage.read_text(storage.join(uri, "index.json")))
    ours = cfg.index_params()
    if params != ours:
        differ = {k: (params.get(k), ours.get(k)) for k in sorted(set(params) | set(ours)) if params.get(k) != ours.get(k)}
        raise ConfigError(f"index {uri} was built with other MinHash parameters (index, this run): {differ}; "
                          "its signatures cannot be compared with this run's. Use the index's settings, or rebuild "
                          "the index with this run's (clover dedup ... --write-index INDEX).")
    return (read_parquet(spark, storage.join(uri, "signatures"))
            .select(*INDEX_COLUMNS, F.lit(None).cast("double").alias("score"), F.lit(1).alias("priority")))
