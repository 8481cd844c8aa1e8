"""SentencePiece training on a deterministic Spark sample, and the tokenizer's metadata."""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from dataprep.stages import Option, Stage, register
from quality.gate import require_validated
from schemas import storage
from schemas.config import ConfigError, to_dict

SPECIAL_TOKENS = {"pad": "<pad>", "bos": "<s>", "eos": "</s>", "unk": "<unk>"}
# Reserved for the chat template (DPO and serving); control symbols are never produced from raw text.
CHAT_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>")
RESERVED_TOKENS = tuple(f"<|reserved_{i}|>" for i in range(4))


@dataclass
class TokenizerConfig:
    vocab_size: int = field(default=64000, metadata={"help": "vocabulary size (Clover: 64000)"})
    model_type: str = field(default="bpe", metadata={"help": "bpe or unigram"})
    sample_docs: int = field(default=200_000, metadata={"help": "documents drawn for training"})
    seed: int = field(default=0, metadata={"help": "sample seed"})
    text_column: str = field(default="text", metadata={"help": "column holding the text"})
    character_coverage: float = field(default=0.9995, metadata={"help": "share of characters given own pieces"})
    max_sentence_chars: int = field(default=16384, metadata={"help": "longer lines are cut for training"})
    threads: int = field(default=2, metadata={"help": "SentencePiece training threads"})

    def validate(self) -> None:
        if self.model_type not in ("bpe", "unigram"):
            raise ConfigError(f"'model_type' must be bpe or unigram, got {self.model_type!r}")


def sample_lines(spark, documents_uri: str, cfg: TokenizerConfig):
    """Lines of a deterministic sample: the documents with the smallest hash of (id, seed)."""
    from pyspark.sql import functions as F

    from dataprep.spark import read_parquet

    docs = read_parquet(spark, documents_uri, ["id", cfg.text_column])
    sample = (docs.where(F.col(cfg.text_column).isNotNull())
              .orderBy(F.xxhash64("id", F.lit(cfg.seed)), "id").limit(cfg.sample_docs)
              .select(cfg.text_column))
    for row in sample.toLocalIterator():
        for line in row[0].split("\n"):
            if line.strip():
                yield line[: cfg.max_sentence_chars]


def train_model(lines: Iterable[str], cfg: TokenizerConfig) -> bytes:
    """Clover's SentencePiece settings (docs/tokenize.md) over lines of text; returns the model's bytes."""
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, vocab_size=cfg.vocab_size, model_type=cfg.model_type,
        byte_fallback=True, split_digits=True, character_coverage=cfg.character_coverage,
        pad_id=0, bos_id=1, eos_id=2, unk_id=3, pad_piece="<pad>", bos_piece="<s>", eos_piece="</s>",
        unk_piece="<unk>", control_symbols=list(CHAT_TOKENS + RESERVED_TOKENS),
        normalization_rule_name="identity", add_dummy_prefix=False, remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True, max_sentence_length=cfg.max_sentence_chars * 4,
        num_threads=cfg.threads, minloglevel=2, hard_vocab_limit=True,
    )
    return model.getvalue()


@storage.writes_output("out_dir")
def train_tokenizer(spark, documents_uri: str, out_dir: str, cfg: TokenizerConfig,
                    input_validation: dict | None = None) -> dict:
    """Train on the sample and write tokenizer.model and tokenizer.json into out_dir."""
    import sentencepiece as spm

    started = time.time()
    cfg.validate()
    counted = {"lines": 0, "chars": 0}

    def lines():
        for line in sample_lines(spark, documents_uri, cfg):
            counted["lines"] += 1
            counted["chars"] += len(line)
            yield line

    data = train_model(lines(), cfg)
    processor = spm.SentencePieceProcessor(model_proto=data)
    metadata = {
        "model": "tokenizer.model",
        "sha256": hashlib.sha256(data).hexdigest(),
        "vocab_size": processor.vocab_size(),
        "model_type": cfg.model_type,
        "special_ids": {name: processor.piece_to_id(piece) for name, piece in SPECIAL_TOKENS.items()},
        "control_ids": {piece: processor.piece_to_id(piece) for piece in CHAT_TOKENS + RESERVED_TOKENS},
        "sample": {"source": documents_uri, **counted},
        "input_validation": input_validation,
        "seconds": round(time.time() - started, 3),
        "config": to_dict(cfg),
    }
    staging = storage.staging_dir(out_dir)
    fs, path = storage.resolve(storage.join(staging, "tokenizer.model"))
    fs.create_dir(storage.resolve(staging)[1], recursive=True)
    with fs.open_output_stream(path) as handle:
        handle.write(data)
    storage.write_text(storage.join(staging, "tokenizer.json"), json.dumps(metadata, indent=2) + "\n")
    storage.commit_dir(staging, out_dir)
    return metadata


def load_tokenizer_metadata(tokenizer_dir: str) -> dict:
    return json.loads(storage.read_text(storage.join(tokenizer_dir, "tokenizer.json")))


def _run(spark, args, cfg: TokenizerConfig) -> dict:
    gate = require_validated(args.input, args.allow_unvalidated)
    return train_tokenizer(spark, storage.documents_path(args.input), args.out, cfg, input_validation=gate)


register(Stage(
    name="train-tokenizer",
    summary="train a SentencePiece tokenizer on a Spark sample",
    description="Train a SentencePiece tokenizer (byte fallback, split digits, chat tokens).",
    config=TokenizerConfig,
    run=_run,
    describe=lambda meta, cfg, args: (
        f"tokenizer: {meta['vocab_size']} pieces ({meta['model_type']}), trained on {meta['sample']['lines']} "
        f"lines / {meta['sample']['chars']} chars, sha256 {meta['sha256'][:12]} -> {args.out}"),
    inputs=("input", "a documents dataset (or a curate/dedup output directory)"),
    out_help="directory for tokenizer.model and tokenizer.json",
    writes="tokenizer",
    options=(Option("--vocab-size", "vocab_size"), Option("--model-type", "model_type", kwargs={"choices": ["bpe", "unigram"]}),
             Option("--sample-docs", "sample_docs")),
    own_suite=False,
    spark_partitions=False,
    module=__name__,
    step=30,
))
