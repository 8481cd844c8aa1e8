"""Remove from a documents dataset every document that duplicates one of a held-out set, and nothing else.

An evaluation is only worth its numbers if the model never trained on its text. The dedup stage already
finds exact and MinHash near-duplicates of an earlier dataset's index (`clover dedup --against INDEX`);
here its verdicts are used for one question alone: which documents it would replace with an indexed
(held-out) document. Those leave; duplicates among the dataset's own documents stay, so a comparison of
"with dedup" against "without" is not decided by the decontamination.

The result is a documents dataset (Parquet under OUT, validated with `clover validate --kind documents`),
and `OUT/decontamination.json` records what was checked and how many documents were removed.
"""

from __future__ import annotations

import json

import pyarrow.parquet as pq

from dataprep.dedup import DedupConfig, run_dedup
from dataprep.spark import partitions_for, read_parquet, write_parquet
from dataprep.validate import validate_dataset
from schemas import storage
from schemas.config import ConfigError

RECORD = "decontamination.json"


def held_out_ids(index: str) -> set[str]:
    """Ids of the documents a dedup index (`clover dedup --write-index`) holds."""
    return _ids(storage.join(index, "signatures"), "id")


@storage.writes_output("out")
def remove_overlap(spark, documents: str, index: str, out: str, cfg: DedupConfig | None = None) -> dict:
    """Write `documents` minus its duplicates of the indexed documents to `out`; returns the record.

    The dedup verdicts are written to `out`.check/ (kept for inspection: `clover inspect OUT.check`).
    """
    cfg = cfg or DedupConfig()
    source = storage.documents_path(documents)
    held_out = held_out_ids(index)
    shared = held_out & _ids(source, "id")
    if shared:
        raise ConfigError(f"{documents} and the held-out index {index} share {len(shared)} document ids (e.g. "
                          f"{sorted(shared)[0]!r}); ids must be unique across both to tell their documents apart")
    check = out.rstrip("/") + ".check"
    run_dedup(spark, documents, check, cfg, against=index)
    duplicates = _read(storage.join(check, "duplicates"), ["id", "kept_id"]).to_pylist()
    overlap = sorted(row["id"] for row in duplicates if row["kept_id"] in held_out)

    docs = read_parquet(spark, source)
    removed = spark.createDataFrame([(i,) for i in overlap], "id string")
    kept = docs.join(removed, "id", "left_anti")
    staging = storage.staging_dir(out)
    written = write_parquet(kept.repartition(partitions_for(cfg.spark, storage.parquet_bytes(source)), "id").sortWithinPartitions("id"),
                            storage.join(staging, "documents"))
    record = {"documents": documents, "held_out_index": index, "input": _rows(source), "removed": len(overlap),
              "output": sum(f["rows"] for f in written), "removed_ids": overlap, "check": check}
    if record["input"] != record["output"] + record["removed"]:
        storage.remove_dir(staging)
        raise RuntimeError(f"decontamination of {documents} lost rows: {record['input']} in, {record['output']} "
                           f"kept + {record['removed']} removed")
    storage.write_text(storage.join(staging, RECORD), json.dumps(record, indent=2) + "\n")
    storage.commit_dir(staging, out)
    validation = validate_dataset(spark, storage.join(out, "documents"), kind="documents")
    return {**record, "validation": {"success": validation.success, "failed": validation.failed}}


def _read(uri: str, columns: list[str]):
    """Columns of every Parquet file a path names, through pyarrow (any filesystem storage reaches)."""
    import pyarrow as pa

    tables = []
    for f in storage.expand(uri, (".parquet",)):
        fs, path = storage.resolve(f.uri)
        tables.append(pq.read_table(path, columns=columns, filesystem=fs))
    return pa.concat_tables(tables)


def _ids(uri: str, column: str) -> set[str]:
    return set(_read(uri, [column]).column(column).to_pylist())


def _rows(uri: str) -> int:
    return sum(storage.parquet_metadata(f.uri).num_rows for f in storage.expand(uri, (".parquet",)))
