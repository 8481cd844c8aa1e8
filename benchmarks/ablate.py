"""Does curation buy a better model? `clover ablate` of raw, curated and curated+dedup built-in sample data.

    python benchmarks/ablate.py --docs 2000 --tokens 614400 --seeds 3 --out /tmp/clover-ablate

The three variants come from one `clover make-sample` corpus: raw (curate with no quality rule, so only
malformed records are quarantined), curated (curate's default rules) and curated+dedup. The held-out set
is fresh prose drawn like the sample's clean documents (ids eval-N), which no variant contains as a
document; every run trains clover-tiny for the same tokens. Prints the table `clover ablate` writes.
"""

from __future__ import annotations

import os
import sys

sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import argparse
import platform
import time

import pyarrow as pa
import pyarrow.parquet as pq


def main() -> None:
    from dataprep.curate import CurateConfig, run_curate
    from dataprep.dedup import DedupConfig, run_dedup
    from dataprep.spark import SparkConfig, spark_session
    from dataprep.validate import validate_dataset
    from jobs.ablate import AblateConfig, run_ablation
    from schemas.sample import prose_documents, write_sample

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--eval-docs", type=int, default=200)
    parser.add_argument("--tokens", type=int, default=614_400)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--model", default="clover-tiny")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    started = time.time()
    root = args.out.rstrip("/")
    spark = spark_session(SparkConfig(), "clover-bench-ablate", input_bytes=0)
    if not os.path.exists(f"{root}/sample"):
        write_sample(f"{root}/sample", args.docs)
    if not os.path.exists(f"{root}/raw/report.json"):
        run_curate(spark, [f"{root}/sample"], f"{root}/raw", CurateConfig(thresholds={}))
    if not os.path.exists(f"{root}/curated/report.json"):
        run_curate(spark, [f"{root}/sample"], f"{root}/curated", CurateConfig())
    if not os.path.exists(f"{root}/deduped/report.json"):
        run_dedup(spark, f"{root}/curated", f"{root}/deduped", DedupConfig())
    if not os.path.exists(f"{root}/eval-docs/validation.json"):
        os.makedirs(f"{root}/eval-docs", exist_ok=True)
        texts = prose_documents(args.eval_docs, 1500, seed=10_007)
        pq.write_table(pa.table({"id": [f"eval-{i}" for i in range(len(texts))], "text": texts}),
                       f"{root}/eval-docs/part-00000.parquet")
        validate_dataset(spark, f"{root}/eval-docs", kind="documents")
    cfg = AblateConfig(variants=f"raw={root}/raw,curated={root}/curated,curated_dedup={root}/deduped",
                       eval=f"{root}/eval-docs", model=args.model, tokens=args.tokens, seeds=args.seeds)
    result = run_ablation(spark, cfg, f"{root}/ablation")
    print(f"{time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} cores, local Spark, CPU training; "
          f"{time.time() - started:.0f} s in all\n`python benchmarks/ablate.py {' '.join(sys.argv[1:])}`\n")
    print(result["table"])


if __name__ == "__main__":
    main()
