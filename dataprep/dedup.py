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

from dataprep.spark import (
    SparkConfig,
    fit_shuffle_partitions,
    partitions_for,
    quarantine_rows,
    read_parquet,
    write_parquet,
)
from dataprep.stages import Option, Stage, register
from dataprep.validate import commit_stage
from quality import expectations as suites
from quality.gate import require_validated
from quality.minhash import (
    ShingleHasher,
    band_digests,
    jaccard,
    lsh_params,
    permutations,
    scheme_record,
    signatures,
)
from quality.text import normalize_text
from schemas import QUARANTINE, StageReport, storage
from schemas.config import ConfigError, to_dict
from schemas.datasets import DUPLICATES, FEATURES, INDEX_COLUMNS


@dataclass
class DedupConfig:
    text_column: str = field(default="text", metadata={"help": "column holding the text"})
    score_column: str = field(default="", metadata={
        "help": "representative = highest score, then most verified neighbours, then smallest id"})
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
    permutation = permutations(cfg.num_perm, cfg.seed)  # taken here, so executors need not import datasketch

    def compute(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        hasher = ShingleHasher(cfg.shingle_n)
        for batch in batches:
            texts = batch.column("text").to_pylist()
            shingles = hasher.batch(texts)
            digests = band_digests(signatures(shingles, cfg.num_perm, cfg.seed, permutation), cfg.bands, cfg.rows)
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
    """Quarantine, then exact, then near duplicates; write the three outputs, validate, commit."""
    started = time.time()
    cfg.validate()
    gate = require_validated(input_uri, allow_unvalidated)
    source = storage.documents_path(input_uri)
    docs = _read_documents(spark, source, cfg)
    input_bytes = storage.parquet_bytes(source)
    shuffle_partitions = fit_shuffle_partitions(spark, cfg.spark, input_bytes)
    staging = storage.staging_dir(out)
    checkpoints = cfg.checkpoint_dir or (storage.join(staging, "_checkpoints") if _hadoop_reaches(staging) else "")
    if checkpoints:
        spark.sparkContext.setCheckpointDir(checkpoints)

    valid, quarantine, repeated = _split_invalid(docs, cfg, source)
    features = _features_frame(spark, valid, cfg, against).persist()
    exact_removed, survivors = _exact_duplicates(features)
    candidates, oversized = _lsh_candidates(survivors, cfg)
    graph = _similarity_graph(candidates.persist(), survivors, cfg, bool(checkpoints))
    duplicates = _duplicate_rows(exact_removed, graph.near).persist()
    kept = (valid.join(duplicates.select("id"), "id", "left_anti")
            .join(features.where(features["priority"] == 0).select("id", "exact_hash"), "id"))

    num_partitions = partitions_for(cfg.spark, input_bytes)
    counts, kinds, reasons = _write_outputs(spark, staging, num_partitions, {
        "documents": kept.select(*valid.columns, "exact_hash"),
        "duplicates": duplicates.select(*DUPLICATES.names),
        "quarantine": quarantine.select(*QUARANTINE.names),
    })
    if write_index:
        _write_index(kept.select("id").join(features.select(*INDEX_COLUMNS), "id"), write_index, cfg, num_partitions)
    for frame in (repeated, features, candidates, graph.scored, duplicates):
        frame.unpersist()

    report = StageReport(
        stage="dedup", input=sum(counts.values()), output=counts["documents"],  # every row is in one output
        removed={f"{kind}_duplicate": n for kind, n in sorted(kinds.items())},
        quarantined=dict(sorted(reasons.items())), config=to_dict(cfg),
        extra={"source": source, "input_validation": gate, **graph.stats, **oversized, "against": against,
               "shuffle_partitions": shuffle_partitions},
    )
    report.seconds = round(time.time() - started, 3)
    if checkpoints:
        storage.remove_dir(checkpoints if cfg.checkpoint_dir else storage.join(staging, "_checkpoints"))
    commit_stage(spark, staging, out, report, validate)
    return report


def _read_documents(spark, source: str, cfg: DedupConfig):
    """The input documents, with a clear error when the text or score column is not there."""
    docs = read_parquet(spark, source)
    missing = {"id", cfg.text_column} - set(docs.columns)
    if missing:
        raise ConfigError(f"{source} is not a documents dataset: no column {', '.join(sorted(missing))}")
    if cfg.score_column and cfg.score_column not in docs.columns:
        raise ConfigError(f"score column '{cfg.score_column}' is not in {source} (columns: {', '.join(docs.columns)})")
    return docs.drop("exact_hash")  # an earlier dedup's output has one: this run writes its own


def _split_invalid(docs, cfg: DedupConfig, source: str):
    """(valid, quarantine, repeated ids): rows without id or text, and every repeat of an id (the first by
    content hash stays). Repeated ids are found on the ids alone; only their rows are ranked, so the text
    is not shuffled."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    repeated = (docs.where(F.col("id").isNotNull()).groupBy("id").count().where(F.col("count") > 1)
                .select("id", F.lit(True).alias("_repeated")).persist())
    marked = docs.join(F.broadcast(repeated), "id", "left").select(*docs.columns, "_repeated")
    missing_reason = F.when(F.col("id").isNull(), "missing_id").when(F.col(cfg.text_column).isNull(), "missing_text")
    rank = F.row_number().over(Window.partitionBy("id").orderBy(F.xxhash64(*docs.columns)))
    flagged = (marked.where(F.col("_repeated").isNull()).withColumn("_reason", missing_reason)
               .unionByName(marked.where(F.col("_repeated"))
                            .withColumn("_reason", F.coalesce(missing_reason, F.when(rank > 1, "duplicate_id"))))
               .drop("_repeated"))
    return flagged.where(F.col("_reason").isNull()).drop("_reason"), quarantine_rows(flagged, source), repeated


def _features_frame(spark, valid, cfg: DedupConfig, against: str | None):
    """Exact hash, band digests and shingles per document; an --against index joins with priority 1."""
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema

    score = F.col(cfg.score_column).cast("double") if cfg.score_column else F.lit(None).cast("double")
    features = (valid.select("id", F.col(cfg.text_column).alias("text"), score.alias("score"))
                .mapInArrow(_features(cfg), from_arrow_schema(FEATURES)))
    return features.unionByName(_read_index(spark, against, cfg)) if against else features


def _rank_order():
    """Who survives: indexed documents, then the higher score, then the smaller id."""
    from pyspark.sql import functions as F

    return [F.desc("priority"), F.desc_nulls_last("score"), F.asc("id")]


def _exact_duplicates(features):
    """(removed, survivors): one survivor per exact hash."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    exact_window = Window.partitionBy("exact_hash").orderBy(*_rank_order())
    ranked = (features.withColumn("_rank", F.row_number().over(exact_window))
              .withColumn("_rep", F.first("id").over(exact_window)))
    removed = ranked.where(F.col("_rank") > 1).select("id", F.col("_rep").alias("exact_kept"), "priority")
    return removed, ranked.where(F.col("_rank") == 1).drop("_rank", "_rep")


def _lsh_candidates(survivors, cfg: DedupConfig):
    """(candidate pairs, oversized-bucket stats): one 64-bit digest per band is shuffled; each bucket
    becomes star edges to its smallest id, up to max_bucket_size members."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    members = survivors.where(F.size("shingles") > 0).select("id", F.posexplode("bands").alias("band", "digest"))
    bucket = Window.partitionBy("band", "digest")
    members = (members.withColumn("_pos", F.row_number().over(bucket.orderBy("id")))
               .withColumn("_size", F.count("*").over(bucket))
               .withColumn("_root", F.min("id").over(bucket)))
    oversized = members.where((F.col("_size") > cfg.max_bucket_size) & (F.col("_pos") == 1)).agg(
        F.count("*").alias("buckets"), F.coalesce(F.sum(F.col("_size") - cfg.max_bucket_size), F.lit(0)).alias("unlinked")
    ).first()
    candidates = (members.where((F.col("_pos") > 1) & (F.col("_pos") <= cfg.max_bucket_size))
                  .select(F.col("id").alias("src"), F.col("_root").alias("dst")).distinct())
    return candidates, {"oversized_buckets": oversized["buckets"], "unlinked_bucket_members": int(oversized["unlinked"])}


@dataclass
class _Graph:
    near: object  # DataFrame(node, component, kept_id, _rank, priority): every member of a near-duplicate component
    scored: object  # the persisted candidate pairs (with their similarity, when verified)
    stats: dict


def _similarity_graph(candidates, survivors, cfg: DedupConfig, reliable: bool) -> _Graph:
    """Verified edges, their connected components, and each component's representative."""
    from pyspark.sql import functions as F

    from dataprep.components import connected_components

    if cfg.verify:  # candidates and verified edges counted in one job, for the report and to size the next step
        scored = _similarities(candidates, survivors.select("id", "shingles")).persist()
        verified = F.col("similarity") >= cfg.threshold
        candidate_count, edge_count = scored.agg(F.count("*"), F.count(F.when(verified, 1))).first()
        edges = scored.where(verified).select("src", "dst")
    else:
        scored, edges = candidates, candidates
        candidate_count = edge_count = candidates.count()
    components = connected_components(edges, cfg.max_iterations, reliable=reliable, edge_count=edge_count,
                                      driver_max_edges=cfg.driver_components_max_edges)
    near, released = _representatives(components.assignment, survivors, cfg, edge_count)
    stats = {
        "candidate_pairs": candidate_count,
        "verified_pairs": edge_count if cfg.verify else None,
        "released_from_chains": released,
        "components": (components.count if components.count is not None
                       else components.assignment.select("component").distinct().count()),
        "cc_iterations": components.iterations,
    }
    return _Graph(near, scored, stats)


def _representatives(assignment, survivors, cfg: DedupConfig, edge_count: int):
    """(members with their kept_id, released): the best-ranked member represents its component: indexed
    first, then the highest score, then the most verified neighbours, then the smallest id.

    A chain A~B~C can join documents that are not alike: a member is removed only if it is itself similar
    to the document that replaces it; otherwise it stays, as its own representative. The member with the
    most near-duplicates is the one most members resemble (of six releases of a file, a middle one rather
    than the oldest, which the smallest id would pick), so fewer are released."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    near = assignment.join(survivors.select(F.col("id").alias("node"), "score", "priority"), "node")
    comp_window = Window.partitionBy("component").orderBy(F.desc("priority"), F.desc_nulls_last("score"),
                                                          F.desc("degree"), F.asc("node"))
    near = (near.withColumn("_rank", F.row_number().over(comp_window))
            .withColumn("kept_id", F.first("node").over(comp_window)))
    if not (cfg.verify and edge_count):
        return near, 0
    to_check = near.where(F.col("_rank") > 1).select(F.col("node").alias("src"), F.col("kept_id").alias("dst"))
    unlike = (_similarities(to_check, survivors.select("id", "shingles")).where(F.col("similarity") < cfg.threshold)
              .select(F.col("src").alias("node"), F.lit(True).alias("_released")).localCheckpoint())
    released = unlike.count()
    near = (near.join(unlike, "node", "left")
            .withColumn("kept_id", F.when(F.col("_released"), F.col("node")).otherwise(F.col("kept_id")))
            .withColumn("_rank", F.when(F.col("_released"), F.lit(1)).otherwise(F.col("_rank"))))
    return near, released


def _duplicate_rows(exact_removed, near):
    """The removed documents of this dataset, each with its cluster and the document that replaced it.
    An exact duplicate points at its hash group's survivor, or at whatever replaced that survivor."""
    from pyspark.sql import functions as F

    near_removed = near.where(F.col("_rank") > 1).select(
        F.col("node").alias("id"), F.col("component").alias("cluster_id"), "kept_id", F.lit("near").alias("kind"),
        "priority")
    exact_final = (exact_removed.join(near.select(F.col("node").alias("exact_kept"), "component",
                                                  F.col("kept_id").alias("near_kept")), "exact_kept", "left")
                   .select("id", F.coalesce("component", "exact_kept").alias("cluster_id"),
                           F.coalesce("near_kept", "exact_kept").alias("kept_id"), F.lit("exact").alias("kind"),
                           "priority"))
    return exact_final.unionByName(near_removed).where(F.col("priority") == 0).drop("priority")


def _write_outputs(spark, staging: str, num_partitions: int, outputs: dict) -> tuple[dict, dict, dict]:
    """(rows per output, duplicates per kind, quarantined per reason), the last two read back from the files."""
    counts = {}
    for name, frame in outputs.items():
        ordered = frame.repartition(num_partitions, "id").sortWithinPartitions("id")
        counts[name] = sum(f["rows"] for f in write_parquet(ordered, storage.join(staging, name)))
    kinds = {r["kind"]: r["count"] for r in
             read_parquet(spark, storage.join(staging, "duplicates"), ["kind"]).groupBy("kind").count().collect()}
    reasons = {r["reason"]: r["count"] for r in
               read_parquet(spark, storage.join(staging, "quarantine"), ["reason"]).groupBy("reason").count().collect()}
    return counts, kinds, reasons


def _hadoop_reaches(uri: str) -> bool:
    """Whether Spark's built-in Hadoop filesystems can write `uri` (object stores need extra jars)."""
    return "://" not in uri or uri.startswith(("hdfs://", "file://"))


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


def validation_frames(spark, root: str, record: dict) -> dict:
    """The kept documents, and every duplicate pointing at a document that exists (here or in the index)."""
    from pyspark.sql import functions as F

    documents = read_parquet(spark, storage.join(root, "documents"))
    duplicates = read_parquet(spark, storage.join(root, "duplicates"))
    known = documents.select(F.col("id").alias("kept_id"))
    against = record.get("against")
    if against:  # a duplicate of an indexed document points outside this dataset
        known = known.unionByName(read_parquet(spark, storage.join(against, "signatures"), ["id"]).select(F.col("id").alias("kept_id")))
    found = known.distinct().withColumn("kept_found", F.lit(True))
    checked = duplicates.join(found, "kept_id", "left").withColumn("kept_found", F.coalesce("kept_found", F.lit(False)))
    return {"documents": (documents, suites.dedup_documents_suite()), "duplicates": (checked, suites.duplicates_suite())}


def _lsh_from_flags(cfg: DedupConfig, args) -> None:
    """--threshold or --num-perm also picks bands and rows for the threshold (datasketch's method)."""
    if args.threshold is not None or args.num_perm is not None:
        params = lsh_params(cfg.threshold, cfg.num_perm)
        cfg.bands, cfg.rows = params.bands, params.rows


def _describe(report, cfg: DedupConfig, args) -> str:
    return (f"dedup: {report.input} in, {report.output} kept, removed {report.removed}, "
            f"quarantined {report.quarantined}; {report.extra['candidate_pairs']} candidate pairs, "
            f"{report.extra['verified_pairs']} verified, bands {cfg.bands}x{cfg.rows} -> {args.out}")


register(Stage(
    name="dedup",
    summary="remove exact and MinHash-LSH near-duplicate documents (Spark)",
    description="Remove exact and near-duplicate documents (MinHash-LSH, verified, clustered on Spark).",
    config=DedupConfig,
    run=lambda spark, args, cfg: run_dedup(spark, args.input, args.out, cfg, against=args.against,
                                           write_index=args.write_index, validate=not args.no_validate,
                                           allow_unvalidated=args.allow_unvalidated),
    describe=_describe,
    inputs=("input", "a documents dataset (or a curate output directory)"),
    out_help="output directory (documents/, duplicates/, quarantine/)",
    writes="documents",
    validates=("dedup",),
    frames=validation_frames,
    options=(
        Option("--threshold", "threshold", "Jaccard threshold; with --num-perm it also picks bands and rows "
                                           "(datasketch's method)"),
        Option("--num-perm", "num_perm"),
        Option("--score-column", "score_column"),
        Option("--against", help="also remove duplicates of an earlier dataset's index", kwargs={"metavar": "INDEX"}),
        Option("--write-index", help="write the kept documents' signatures for --against", kwargs={"metavar": "INDEX"}),
    ),
    prepare=_lsh_from_flags,
    module=__name__,
    step=20,
))
