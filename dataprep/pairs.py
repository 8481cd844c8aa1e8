"""The prep-pairs stage: preference pairs (pair_id, prompt, chosen, rejected[, source, meta]) from JSONL or
Parquet, normalized, checked, exact-deduplicated, tokenized with the chat template, truncated by
documented rules, validated and committed with a report that accounts for every input row.

Every row ends in one place: OUT/pairs/ (kept), OUT/removed/ (duplicate_pair, identical_responses,
too_long) or OUT/quarantine/ (malformed: the reader's reasons, plus missing_/non_string_/empty_ of
each text field and duplicate_id).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pyarrow as pa

from dataprep.spark import SparkConfig, map_units, partitions_for, read_parquet, ship_file, write_parquet
from dataprep.stages import TOKENIZER_OPTION, Option, Stage, register
from dataprep.train_tokenizer import load_tokenizer_metadata
from dataprep.validate import commit_stage
from quality import expectations as suites
from quality.text import normalize_text
from schemas import QUARANTINE, StageReport, storage
from schemas.chat import PAIRS, REMOVED_PAIRS, prompt_ids, response_ids, template_ids
from schemas.config import ConfigError, to_dict
from schemas.ingest import RAW, SUPPORTED_SUFFIXES, IngestConfig, input_format, parquet_units, read_units

KEPT, REMOVED, QUARANTINED = "pairs", "removed", "quarantine"
# The reader passes every extra field, a lone `meta` too, as one JSON object, so `meta: {"chosen": ...}`
# stays metadata instead of being read as the record's responses (schemas.ingest.read_unit).
PAIRS_UNWRAP_META = False
RESPONSES = ("chosen", "rejected")
_PROMPT_REASONS = {"missing_text": "missing_prompt", "non_string_text": "non_string_prompt"}


@dataclass
class PairsConfig:
    max_length: int = field(default=2048, metadata={"help": "most tokens of prompt + one response"})
    max_prompt_length: int = field(default=1024, metadata={"help": "prompt tokens kept when a pair is too long"})
    min_response_tokens: int = field(default=8, metadata={"help": "a truncated response shorter than this removes the pair (too_long)"})
    ingest: IngestConfig = field(default_factory=lambda: IngestConfig(text_field="prompt", id_field="pair_id"))
    spark: SparkConfig = field(default_factory=SparkConfig)

    def validate(self) -> None:
        if not 0 < self.max_prompt_length < self.max_length:
            raise ConfigError("'max_prompt_length' must be positive and below 'max_length'")


def truncate(prompt: list[int], chosen: list[int], rejected: list[int], cfg: PairsConfig
             ) -> tuple[list[int], list[int], list[int], bool, bool] | None:
    """The truncation rules; None when the pair cannot fit (removed as too_long).

    1. A pair fits when prompt + the longer response <= max_length: unchanged.
    2. Else the prompt keeps its last max_prompt_length tokens, with its opening tokens (<s>, the user
       turn marker) and closing tokens (<|end|><|assistant|>) always kept.
    3. Then each response keeps its first (max_length - prompt) tokens, its last one forced to <|end|>.
    4. A response left with fewer than min_response_tokens tokens removes the pair.
    """
    longest = max(len(chosen), len(rejected))
    if len(prompt) + longest <= cfg.max_length:
        return prompt, chosen, rejected, False, False
    prompt_cut = len(prompt) > cfg.max_prompt_length
    if prompt_cut:
        keep = cfg.max_prompt_length - 4
        prompt = prompt[:2] + prompt[len(prompt) - 2 - keep:]
    room = cfg.max_length - len(prompt)
    cut = False
    responses = []
    for response in (chosen, rejected):
        if len(response) > room:
            response, cut = response[: room - 1] + response[-1:], True
        responses.append(response)
    if min(len(r) for r in responses) < cfg.min_response_tokens:
        return None
    return prompt, responses[0], responses[1], prompt_cut, cut


def _parsed_schema() -> pa.Schema:
    fields = [pa.field(f.name, f.type) for f in PAIRS.arrow()]
    fields += [pa.field(n, t) for n, t in (("content_hash", pa.string()), ("input_file", pa.string()),
                                           ("line", pa.int64()), ("raw", pa.string()), ("dest", pa.string()),
                                           ("reason", pa.string()))]
    return pa.schema(fields)


def _extras(meta: str | None) -> dict:
    """The record's fields beyond the reader's, which it passes as one JSON object (PAIRS_UNWRAP_META)."""
    extras = json.loads(meta) if meta else {}
    if not isinstance(extras, dict):  # not from the reader configured above
        raise ValueError(f"the pair reader passed extras that are not a JSON object: {meta[:200]!r}")
    return extras


class _PairParser:
    """Runs on an executor over one partition sorted by pair_id, so repeated ids are adjacent."""

    def __init__(self, cfg: PairsConfig, model_file: str, ids: dict[str, int]):
        import sentencepiece as spm

        self.cfg, self.ids = cfg, ids
        self.processor = spm.SentencePieceProcessor(model_file=model_file)
        self.schema = _parsed_schema()
        self.last_id: str | None = None

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            out: dict[str, list] = {name: [] for name in self.schema.names}
            for row in batch.to_pylist():
                self._parse(row, out)
            yield pa.RecordBatch.from_pydict(out, schema=self.schema)

    def _parse(self, row: dict, out: dict[str, list]) -> None:
        base = {"pair_id": row["id"], "source": row["source"], "input_file": row["input_file"], "line": row["line"]}
        fields, reason = self._fields(row)
        if reason is None and row["id"] == self.last_id:
            reason = "duplicate_id"
        if reason is not None:
            return self._append(out, base, QUARANTINED, reason, raw=row["raw"] or (row["text"] or "")[:1000])
        self.last_id = row["id"]
        encode = self.processor.encode
        tokens = truncate(prompt_ids(encode, self.ids, fields["prompt"]),
                          response_ids(encode, self.ids, fields["chosen"]),
                          response_ids(encode, self.ids, fields["rejected"]), self.cfg)
        kept = {**base, **fields}
        if fields["chosen"] == fields["rejected"]:
            return self._append(out, kept, REMOVED, "identical_responses")
        if tokens is None:
            return self._append(out, kept, REMOVED, "too_long")
        prompt, chosen, rejected, prompt_cut, responses_cut = tokens
        digest = hashlib.sha256("\x00".join(fields[k] for k in ("prompt", "chosen", "rejected")).encode()).hexdigest()
        self._append(out, {**kept, "prompt_ids": prompt, "chosen_ids": chosen, "rejected_ids": rejected,
                           "prompt_truncated": prompt_cut, "responses_truncated": responses_cut,
                           "content_hash": digest}, KEPT, None)

    def _fields(self, row: dict) -> tuple[dict, str | None]:
        """prompt (the reader's text field), chosen and rejected from the other fields, normalized; or a reason."""
        if row["error"] is not None:  # the reader's text field is the prompt: its reasons name the prompt
            return {}, _PROMPT_REASONS.get(row["error"], row["error"])
        extras = _extras(row["meta"])
        values = {"prompt": row["text"], **{k: extras.pop(k, None) for k in RESPONSES}}
        for name, value in values.items():
            if value is None:
                return {}, f"missing_{name}"
            if not isinstance(value, str):
                return {}, f"non_string_{name}"
            if "\x00" in value:
                return {}, "nul_bytes"
            values[name] = normalize_text(value)
            if not values[name]:
                return {}, f"empty_{name}"
        meta = extras.pop("meta", None) if set(extras) == {"meta"} else extras or None
        values["meta"] = meta if meta is None or isinstance(meta, str) else json.dumps(meta, sort_keys=True, default=str)
        return values, None

    def _append(self, out: dict[str, list], values: dict, dest: str, reason: str | None, raw: str | None = None) -> None:
        for name, column in out.items():
            column.append(values.get(name))
        out["dest"][-1], out["reason"][-1], out["raw"][-1] = dest, reason, raw
        for flag in ("prompt_truncated", "responses_truncated"):
            if out[flag][-1] is None:
                out[flag][-1] = False


@storage.writes_output("out")
def run_prep_pairs(spark, inputs: list[str], tokenizer_dir: str, out: str, cfg: PairsConfig,
                   validate: bool = True) -> StageReport:
    """Parse, check and tokenize every pair, drop exact duplicates, write pairs/removed/quarantine, commit."""
    from pyspark.sql import functions as F

    started = time.time()
    cfg.validate()
    tokenizer = load_tokenizer_metadata(tokenizer_dir)
    files = sorted({f.uri: f for pattern in inputs for f in storage.expand(pattern, SUPPORTED_SUFFIXES)}.values(),
                   key=lambda f: f.uri)
    if not files:
        raise FileNotFoundError(f"no JSONL or Parquet input in {inputs}")
    partitions = partitions_for(cfg.spark, sum(f.size for f in files))
    model_file = ship_file(spark, storage.join(tokenizer_dir, tokenizer["model"]))
    deduped = _without_duplicates(_parsed_pairs(spark, files, partitions, cfg, model_file, template_ids(tokenizer))).persist()
    try:
        counts = {(r["dest"], r["reason"]): r["count"] for r in deduped.groupBy("dest", "reason").count().collect()}
        truncated = deduped.where(F.col("dest") == KEPT).agg(
            F.sum(F.col("prompt_truncated").cast("long")).alias("prompt"),
            F.sum(F.col("responses_truncated").cast("long")).alias("responses")).first().asDict()
        staging = storage.staging_dir(out)
        _write_outputs(deduped, staging, partitions)
    finally:
        deduped.unpersist()
    report = StageReport.from_counts(
        "prep-pairs", counts, KEPT, REMOVED, QUARANTINED, config=to_dict(cfg),
        extra={"inputs": [f.uri for f in files], "truncated": {k: int(v or 0) for k, v in truncated.items()},
               "tokenizer": {"path": tokenizer_dir, "sha256": tokenizer["sha256"], "vocab_size": tokenizer["vocab_size"],
                             "special_ids": tokenizer["special_ids"], "control_ids": tokenizer["control_ids"]},
               "chat_template": "<s>[<|system|>{system}<|end|>]<|user|>{prompt}<|end|><|assistant|>{response}<|end|>"},
    )
    report.seconds = round(time.time() - started, 3)
    commit_stage(spark, staging, out, report, validate)
    return report


def _parsed_pairs(spark, files: list, partitions: int, cfg: PairsConfig, model_file, ids):
    """Every input record as one parsed row (kept, removed or quarantined), in an order the cluster cannot change."""
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema

    formats = {f.uri: input_format(f.uri) for f in files}
    units = [(f.uri, rg) for f in files for rg in (parquet_units(f.uri) if formats[f.uri] == "parquet" else [0])]
    raw = map_units(spark, units, read_units(cfg.ingest, PAIRS_UNWRAP_META), from_arrow_schema(RAW))
    key = F.coalesce(F.col("id"), F.concat_ws(":", "input_file", F.col("line").cast("string")))
    ordered = raw.withColumn("_key", key).repartition(partitions, "_key") \
        .sortWithinPartitions("_key", "input_file", "line").drop("_key")

    def parse(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        return _PairParser(cfg, model_file(), ids)(batches)

    return ordered.mapInArrow(parse, from_arrow_schema(_parsed_schema()))


def _without_duplicates(parsed):
    """Exact duplicates (the same normalized prompt, chosen and rejected) are removed; the smallest pair_id stays."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    by_content = Window.partitionBy("content_hash").orderBy("pair_id", "input_file", "line")
    is_pair = F.col("dest") == KEPT
    return parsed.withColumn("_duplicate", is_pair & (F.when(is_pair, F.row_number().over(by_content)) > 1)) \
        .withColumn("kept_pair_id", F.when(is_pair, F.first("pair_id").over(by_content))) \
        .withColumn("reason", F.when(F.col("_duplicate"), F.lit("duplicate_pair")).otherwise(F.col("reason"))) \
        .withColumn("dest", F.when(F.col("_duplicate"), F.lit(REMOVED)).otherwise(F.col("dest")))


def _write_outputs(deduped, staging: str, partitions: int) -> None:
    """pairs/ (by pair_id), removed/ and quarantine/ (one file each)."""
    from pyspark.sql import functions as F

    write_parquet(deduped.where(F.col("dest") == KEPT).select(*PAIRS.names).repartition(partitions, "pair_id")
                  .sortWithinPartitions("pair_id"), storage.join(staging, KEPT), PAIRS.arrow())
    removed = deduped.where(F.col("dest") == REMOVED).withColumn(
        "kept_pair_id", F.when(F.col("reason") == "duplicate_pair", F.col("kept_pair_id")))
    write_parquet(removed.select(*REMOVED_PAIRS.names).repartition(1).sortWithinPartitions("pair_id"),
                  storage.join(staging, REMOVED), REMOVED_PAIRS.arrow())
    quarantine = deduped.where(F.col("dest") == QUARANTINED).select(
        "input_file", "line", "raw", "reason", F.col("pair_id").alias("id"))
    write_parquet(quarantine.repartition(1).sortWithinPartitions("input_file", "line"),
                  storage.join(staging, QUARANTINED), QUARANTINE.arrow())


def validation_frames(spark, root: str, record: dict) -> dict:
    """Every pair complete, its answers different, its token ids in the vocabulary and within max_length."""
    from pyspark.sql import functions as F

    pairs = read_parquet(spark, storage.join(root, "pairs"))
    checked = pairs.withColumn("chosen_differs", F.col("chosen") != F.col("rejected"))
    tokenizer = record.get("tokenizer") or {}
    if "prompt_ids" not in pairs.columns:
        return {"preference_pairs": (checked, suites.preference_pairs_suite())}
    every = F.concat("prompt_ids", "chosen_ids", "rejected_ids")
    checked = checked.select(
        "pair_id", "prompt", "chosen", "rejected", "chosen_differs",
        F.size("prompt_ids").alias("prompt_tokens"), F.size("chosen_ids").alias("chosen_tokens"),
        F.size("rejected_ids").alias("rejected_tokens"), F.array_min(every).alias("min_token_id"),
        F.array_max(every).alias("max_token_id"),
        (F.size("prompt_ids") + F.greatest(F.size("chosen_ids"), F.size("rejected_ids"))).alias("pair_tokens"))
    suite = suites.preference_pairs_suite(tokenizer.get("vocab_size"), record["config"]["max_length"])
    return {"preference_pairs": (checked, suite)}


register(Stage(
    name="prep-pairs",
    summary="normalize, deduplicate, tokenize and validate preference pairs (Spark)",
    description="Normalize, check, deduplicate, tokenize (chat template) and validate preference pairs.",
    config=PairsConfig,
    run=lambda spark, args, cfg: run_prep_pairs(spark, args.inputs, args.tokenizer, args.out, cfg,
                                                validate=not args.no_validate),
    describe=lambda report, cfg, args: (
        f"prep-pairs: {report.input} in, {report.output} pairs, removed {report.removed}, quarantined "
        f"{report.quarantined}, truncated {report.extra['truncated']} -> {args.out}"),
    inputs=("inputs", "JSONL (.gz/.zst) or Parquet with pair_id, prompt, chosen, rejected[, source, meta]"),
    out_help="output directory (pairs/, removed/, quarantine/, report.json)",
    writes="pairs",
    validates=("prep-pairs", "review"),  # `clover review` writes pairs of the same contract, without Spark
    frames=validation_frames,
    options=(TOKENIZER_OPTION,
             Option("--max-length", "max_length")),
    gated_input=False,
    module=__name__,
    step=50,
))
