"""`clover train-classifier`: a small fastText quality classifier from labelled JSONL or Parquet."""

from __future__ import annotations

import sys

from jobs.common import exit_on_config_error
from jobs.flags import Command, Option
from quality.classifier_training import ClassifierConfig, train_classifier

__all__ = ["COMMAND", "ClassifierConfig", "main", "train_classifier"]

COMMAND = Command(
    description="Train a fastText classifier; report precision and recall on a held-out split.",
    config=ClassifierConfig,
    options=(
        Option("input", help="labelled JSONL or Parquet (file, directory or glob)"),
        Option("--out", help="directory for model.bin and metrics.json", kwargs={"required": True}),
        Option("--text-field", "text_field"),
        Option("--label-field", "label_field"),
        Option("--bucket", "bucket"),
    ),
)


@exit_on_config_error
def main(argv: list[str] | None = None, prog: str = "clover train-classifier") -> int:
    args, cfg = COMMAND.parse(argv, prog)
    metrics = train_classifier(args.input, args.out, cfg)
    print(f"{'label':<24} {'precision':>9} {'recall':>7} {'f1':>6} {'support':>8}")
    for label, row in metrics["labels"].items():
        print(f"{label:<24} {row['precision']:>9.3f} {row['recall']:>7.3f} {row['f1']:>6.3f} {row['support']:>8}")
    print(f"accuracy {metrics['accuracy']:.3f} on {metrics['test_examples']} held-out examples; "
          f"model {metrics['model_bytes'] / 1e6:.1f} MB -> {metrics['model']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
