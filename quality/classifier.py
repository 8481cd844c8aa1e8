"""fastText classifiers (language id or quality) as score columns, and their evaluation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class FastTextStep:
    """Apply one fastText model: its top label and the probability of `score_label` become columns."""

    name: str = field(default="", metadata={"help": "column prefix: fasttext_<name>_label and _score"})
    model: str = field(default="", metadata={"help": "path or URI of the .bin or .ftz model"})
    score_label: str = field(default="", metadata={"help": "label whose probability is the score, e.g. __label__en"})
    top_k: int = field(default=5, metadata={"help": "labels read per document when looking for score_label"})

    @property
    def label_column(self) -> str:
        return f"fasttext_{self.name}_label"

    @property
    def score_column(self) -> str:
        return f"fasttext_{self.name}_score"


def load_model(path: str):
    import fasttext

    fasttext.FastText.eprint = lambda *args, **kwargs: None  # silence the load_model deprecation notice
    return fasttext.load_model(path)


def one_line(text: str) -> str:
    """fastText reads one line per example; newlines would end the example early."""
    return " ".join(text.split())


def predict(model, texts: Sequence[str], score_label: str, top_k: int) -> tuple[list[str], np.ndarray]:
    """(top label, probability of score_label) per text. Empty texts get label '' and score 0."""
    labels_out = [""] * len(texts)
    scores = np.zeros(len(texts), dtype=np.float64)
    idx = [i for i, t in enumerate(texts) if t.strip()]
    if idx:
        labels, probs = model.predict([one_line(texts[i]) for i in idx], k=top_k)
        for i, doc_labels, doc_probs in zip(idx, labels, probs):
            labels_out[i] = doc_labels[0]
            hits = [p for lab, p in zip(doc_labels, doc_probs) if lab == score_label]
            scores[i] = min(float(hits[0]), 1.0) if hits else 0.0
    return labels_out, scores


def precision_recall(truth: Sequence[str], predicted: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per-label precision, recall, F1 and support."""
    result = {}
    for label in sorted(set(truth) | set(predicted)):
        tp = sum(1 for t, p in zip(truth, predicted) if t == label and p == label)
        fp = sum(1 for t, p in zip(truth, predicted) if t != label and p == label)
        fn = sum(1 for t, p in zip(truth, predicted) if t == label and p != label)
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        result[label] = {"precision": precision, "recall": recall, "f1": f1, "support": tp + fn}
    return result
