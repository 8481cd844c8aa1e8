"""Tokens per second per core of `clover tokenize` (Spark encode, pack, shuffle, Parquet write) against
raw SentencePiece encoding of the same texts in one process.

    python benchmarks/tokenize_stage.py --docs 50000 --master 'local[2]'
"""

from __future__ import annotations

import os
import sys

# This file shares its name with the standard library's tokenize: take its folder off the path first.
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import argparse
import platform
import tempfile
import time

import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.tables import table
from dataprep.spark import SparkConfig, spark_session
from dataprep.tokenize_stage import TokenizeConfig, run_tokenize
from dataprep.train_tokenizer import TokenizerConfig, train_tokenizer
from schemas.sample import prose_documents


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=50_000)
    parser.add_argument("--vocab-size", type=int, default=16000)
    parser.add_argument("--seq-len", type=int, default=8192)
    parser.add_argument("--master", default="local[2]")
    args = parser.parse_args()
    cores = int(args.master.split("[")[1].rstrip("]")) if "[" in args.master else os.cpu_count()

    import sentencepiece as spm

    with tempfile.TemporaryDirectory() as tmp:
        texts = prose_documents(args.docs, 2000, seed=3)
        docs_dir = os.path.join(tmp, "docs")
        os.makedirs(docs_dir)
        for f in range(8):
            part = slice(f * args.docs // 8, (f + 1) * args.docs // 8)
            pq.write_table(pa.table({"id": [f"d{i:07d}" for i in range(args.docs)][part], "text": texts[part]}),
                           os.path.join(docs_dir, f"docs-{f}.parquet"))
        spark = spark_session(SparkConfig(master=args.master, driver_memory="6g"), "clover-bench-tokenize")
        tokenizer_dir = os.path.join(tmp, "tokenizer")
        train_tokenizer(spark, docs_dir, tokenizer_dir, TokenizerConfig(vocab_size=args.vocab_size, sample_docs=20000))

        processor = spm.SentencePieceProcessor(model_file=os.path.join(tokenizer_dir, "tokenizer.model"))
        start = time.perf_counter()
        raw_tokens = sum(len(ids) + 1 for ids in processor.encode(texts, num_threads=1))
        raw_rate = raw_tokens / (time.perf_counter() - start)

        cfg = TokenizeConfig(seq_len=args.seq_len, spark=SparkConfig(partitions=cores * 2))
        start = time.perf_counter()
        report, manifest = run_tokenize(spark, docs_dir, tokenizer_dir, os.path.join(tmp, "out"), cfg, validate=False,
                                        allow_unvalidated=True)
        seconds = time.perf_counter() - start
        spark.stop()
    pipeline_rate = manifest["tokens"] / seconds / cores
    rows = [
        ("clover tokenize (Spark: encode, pack, global shuffle, Parquet + sha256)", f"{manifest['tokens']:,}",
         f"{seconds:.1f}", f"{pipeline_rate:,.0f}", f"{pipeline_rate / raw_rate:.2f}"),
        ("raw SentencePiece encode, one process", f"{raw_tokens:,}", f"{raw_tokens / raw_rate:.1f}",
         f"{raw_rate:,.0f}", "1.00"),
    ]
    header = ("run", "tokens", "seconds", "tokens/s/core", "ratio to raw")
    print(f"{time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} cores, master {args.master}, "
          f"{args.docs:,} docs of ~2 KB, vocab {args.vocab_size}, seq_len {args.seq_len}\n"
          f"`python benchmarks/tokenize_stage.py {' '.join(sys.argv[1:])}`\n\n" + table(header, rows))


if __name__ == "__main__":
    main()
