"""Training and evaluating a fastText quality classifier on labelled JSONL or Parquet (`clover train-classifier`).

The held-out split is chosen by a hash of the text, so it is the same on every run; the model trains in
a fresh process and is scored with quality/classifier.py's precision and recall.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field

import polars as pl

from quality.classifier import load_model, one_line, precision_recall
from schemas import storage
from schemas.config import ConfigError, to_dict


@dataclass
class ClassifierConfig:
    text_field: str = field(default="text", metadata={"help": "input field with the text"})
    label_field: str = field(default="label", metadata={"help": "input field with the label"})
    test_fraction: float = field(default=0.1, metadata={"help": "held-out share, chosen by a hash of the text"})
    dim: int = field(default=32, metadata={"help": "embedding size"})
    bucket: int = field(default=200_000, metadata={"help": "hash buckets for word n-grams; bounds the model size"})
    word_ngrams: int = field(default=2, metadata={"help": "word n-grams"})
    epoch: int = field(default=25, metadata={"help": "training epochs"})
    lr: float = field(default=0.1, metadata={"help": "learning rate (high rates can diverge to NaN)"})
    min_count: int = field(default=1, metadata={"help": "minimum word count"})
    seed: int = field(default=0, metadata={"help": "training seed (fastText is deterministic with thread=1)"})


def read_labelled(path: str, cfg: ClassifierConfig) -> pl.DataFrame:
    """Text and label columns from JSONL or Parquet files; rows missing either are an error."""
    files = storage.expand(path, (".jsonl", ".json", ".ndjson", ".parquet"))
    frames = [
        (pl.read_parquet(f.uri) if f.uri.endswith(".parquet") else pl.read_ndjson(f.uri, infer_schema_length=None))
        .select(pl.col(cfg.text_field).alias("text"), pl.col(cfg.label_field).cast(pl.String).alias("label"))
        for f in files
    ]
    data = pl.concat(frames)
    missing = data.filter(pl.col("text").is_null() | pl.col("label").is_null()).height
    if missing:
        raise ConfigError(f"{missing} rows of {path} lack '{cfg.text_field}' or '{cfg.label_field}'")
    return data


def _is_test(text: str, fraction: float) -> bool:
    digest = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
    return digest / 2**64 < fraction


def _fasttext_label(label: str) -> str:
    return label if label.startswith("__label__") else f"__label__{label}"


def _train_and_save(train_file: str, model_path: str, params: dict) -> None:
    import fasttext

    fasttext.train_supervised(input=train_file, **params).save_model(model_path)


def train_classifier(input_path: str, out_dir: str, cfg: ClassifierConfig) -> dict:
    """Train, evaluate on the held-out split, and write model.bin and metrics.json into out_dir.

    fastText trains in a fresh process: in a process where other native libraries have changed the
    floating-point state (seen after a Great Expectations run on Spark), its loss becomes NaN.
    """
    import multiprocessing

    data = read_labelled(input_path, cfg)
    rows = list(zip(data["text"].to_list(), map(_fasttext_label, data["label"].to_list())))
    test = [(t, y) for t, y in rows if _is_test(t, cfg.test_fraction)]
    train = [(t, y) for t, y in rows if not _is_test(t, cfg.test_fraction)]
    if not train or not test:
        raise ConfigError(f"need examples on both sides of the split: {len(train)} train, {len(test)} test")
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as handle:
        handle.writelines(f"{label} {one_line(text)}\n" for text, label in train)
        train_file = handle.name
    model_path = os.path.join(out_dir, "model.bin")
    params = dict(dim=cfg.dim, bucket=cfg.bucket, wordNgrams=cfg.word_ngrams, epoch=cfg.epoch, lr=cfg.lr,
                  minCount=cfg.min_count, thread=1, seed=cfg.seed, verbose=0)
    try:
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            pool.apply(_train_and_save, (train_file, model_path, params))
    finally:
        os.unlink(train_file)
    predicted = [labels[0] for labels in load_model(model_path).predict([one_line(t) for t, _ in test], k=1)[0]]
    metrics = {
        "train_examples": len(train),
        "test_examples": len(test),
        "accuracy": sum(p == y for p, (_, y) in zip(predicted, test)) / len(test),
        "labels": precision_recall([y for _, y in test], predicted),
        "model": model_path,
        "model_bytes": os.path.getsize(model_path),
        "config": to_dict(cfg),
    }
    storage.write_text(os.path.join(out_dir, "metrics.json"), json.dumps(metrics, indent=2) + "\n")
    return metrics
