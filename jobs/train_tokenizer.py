"""`clover train-tokenizer`: SentencePiece on a deterministic Spark sample of a documents dataset."""

from __future__ import annotations

import sys

from dataprep.spark import SparkConfig, spark_session
from dataprep.train_tokenizer import TokenizerConfig, train_tokenizer
from jobs.common import add_validation_arguments, exit_on_config_error, stage_config, stage_parser
from quality.gate import require_validated
from schemas import storage


@exit_on_config_error
def main(argv: list[str] | None = None, prog: str = "clover train-tokenizer") -> int:
    parser = stage_parser(prog, "Train a SentencePiece tokenizer (byte fallback, split digits, chat tokens).")
    parser.add_argument("input", metavar="INPUT", help="a documents dataset (or a curate/dedup output directory)")
    parser.add_argument("--out", required=True, help="directory for tokenizer.model and tokenizer.json")
    parser.add_argument("--vocab-size", type=int, help="vocabulary size (default 64000)")
    parser.add_argument("--model-type", choices=["bpe", "unigram"])
    parser.add_argument("--sample-docs", type=int, help="documents in the training sample")
    parser.add_argument("--master", help="Spark master (default: spark-submit's, else local[*])")
    add_validation_arguments(parser, own_suite=False)
    args = parser.parse_args(argv)
    cfg = stage_config(TokenizerConfig, args, {"vocab_size": args.vocab_size, "model_type": args.model_type,
                                               "sample_docs": args.sample_docs})
    gate = require_validated(args.input, args.allow_unvalidated)
    spark = spark_session(SparkConfig(master=args.master or ""), "clover-train-tokenizer")
    meta = train_tokenizer(spark, storage.documents_path(args.input), args.out, cfg, input_validation=gate)
    print(f"tokenizer: {meta['vocab_size']} pieces ({meta['model_type']}), trained on {meta['sample']['lines']} "
          f"lines / {meta['sample']['chars']} chars, sha256 {meta['sha256'][:12]} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
