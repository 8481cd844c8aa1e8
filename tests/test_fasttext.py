"""fastText: training a classifier, then applying it in the Spark stage as a score column with a keep rule."""

import json
import random

import pyarrow.parquet as pq
import pytest

from dataprep.curate import CurateConfig, run_curate
from jobs.train_classifier import ClassifierConfig, train_classifier
from schemas.config import load_config
from schemas.sample import stdlib_docstrings


def _junk(rng, words=120):
    syllables = ["zor", "qua", "blix", "vrem", "tok", "sny", "prax", "ulm", "gref", "dwo"]
    return " ".join("".join(rng.choice(syllables) for _ in range(rng.randint(1, 3))) for _ in range(words))


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    root = tmp_path_factory.mktemp("ft")
    rng = random.Random(0)
    good = stdlib_docstrings()[:300]
    rows = [{"text": t, "label": "good"} for t in good] + [{"text": _junk(rng), "label": "junk"} for _ in range(300)]
    (root / "labelled.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    metrics = train_classifier(str(root / "labelled.jsonl"), str(root / "model"), ClassifierConfig(bucket=20_000))
    return root, metrics


def test_train_classifier_reports_precision_and_recall(classifier):
    root, metrics = classifier
    assert set(metrics["labels"]) == {"__label__good", "__label__junk"}
    assert metrics["test_examples"] > 20
    for row in metrics["labels"].values():
        assert row["precision"] > 0.9 and row["recall"] > 0.9
    assert metrics["model_bytes"] < 5_000_000  # small bucket keeps the model small
    assert json.loads((root / "model" / "metrics.json").read_text())["accuracy"] == metrics["accuracy"]


@pytest.mark.parametrize("early_exit", [False, True])
def test_fasttext_step_scores_and_gates_in_spark(spark, classifier, tmp_path, early_exit):
    """The classifier's score gates first; under early_exit a document it rejects is not scored further."""
    root, _ = classifier
    rng = random.Random(1)
    docs = stdlib_docstrings()[300:340]
    rows = [{"id": f"d{i}", "text": t} for i, t in enumerate(docs)]
    rows += [{"id": f"j{i}", "text": _junk(rng)} for i in range(10)]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = load_config(CurateConfig, None, {
        "fasttext": [{"name": "quality", "model": str(root / "model" / "model.bin"), "score_label": "__label__good"}],
        "thresholds": {"fasttext_quality_score": {"min": 0.5}}, "early_exit": early_exit,
    })
    report = run_curate(spark, [str(tmp_path / "in.jsonl")], str(tmp_path / "out"), cfg, validate=False)
    rejected = pq.read_table(tmp_path / "out" / "rejected").to_pylist()
    junk = [r for r in rejected if r["id"].startswith("j")]
    assert len(junk) == 10 and {r["reason"] for r in junk} == {"fasttext_quality_score"}
    assert all(r["fasttext_quality_label"] == "__label__junk" and r["fasttext_quality_score"] < 0.5 for r in junk)
    assert all((r["gopher_word_count"] is None) == early_exit for r in junk)
    kept = pq.read_table(tmp_path / "out" / "documents").to_pylist()
    assert kept and all(d["fasttext_quality_score"] >= 0.5 for d in kept)
    assert report.removed["fasttext_quality_score"] >= 10
