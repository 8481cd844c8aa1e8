"""Small token-shard datasets for the trainer tests: synthetic shards, and a real tokenizer trained by the stage."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from training.trainer.synthetic import write_token_shards

__all__ = ["docstring_tokenizer", "write_token_shards"]


def docstring_tokenizer(spark, root: Path, vocab_size: int = 700, docs: int = 150) -> Path:
    """A small SentencePiece tokenizer trained (by the real stage) on Python docstrings, in root/tokenizer."""
    from dataprep.train_tokenizer import TokenizerConfig, train_tokenizer
    from schemas.sample import stdlib_docstrings

    texts = stdlib_docstrings()[:docs]
    pq.write_table(pa.table({"id": [f"d{i}" for i in range(len(texts))], "text": texts}), root / "docs.parquet")
    train_tokenizer(spark, str(root / "docs.parquet"), str(root / "tokenizer"),
                    TokenizerConfig(vocab_size=vocab_size, sample_docs=docs))
    return root / "tokenizer"
