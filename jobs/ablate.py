"""`clover ablate`: does a curation choice make the model better? Equal-budget training runs, one held-out set.

    clover ablate --variants raw=DIR_A,curated=DIR_B,deduped=DIR_C --eval EVAL_DOCS --model clover-tiny \\
        --tokens 1000000 --seeds 3 --out OUT

The method of FineWeb's and DataComp-LM's filter ablations, at any scale:
1. one tokenizer, trained once on EVAL_DOCS (or on the variant `tokenizer_from` names), so losses compare;
2. EVAL_DOCS deduplicated and indexed (`clover dedup --write-index`), then tokenized: the held-out set;
3. each variant (a validated documents dataset) loses its exact and near duplicates of EVAL_DOCS, and only
   those (dataprep/decontaminate.py; the count is reported), then is tokenized with that tokenizer;
4. the same model from the same init (seed k) trains for the same tokens on each variant, K seeds each,
   evaluated on the held-out set every `eval_every` steps.

OUT/ablation.json, OUT/ablation.md and OUT/ablation.png (jobs/ablation_report.py) hold the result. A rerun
reuses every finished step and run; an interrupted training run resumes from its checkpoint.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from dataprep.spark import SparkConfig
from jobs.common import exit_on_config_error
from jobs.flags import Command, Option
from schemas import storage
from schemas.config import ConfigError


@dataclass
class AblateConfig:
    variants: str = field(default="", metadata={"help": "NAME=DOCUMENTS,...: the documents datasets to compare"})
    eval: str = field(default="", metadata={"help": "held-out documents every variant is evaluated on (never trained on)"})
    model: str = field(default="clover-tiny", metadata={"help": "model preset trained on every variant"})
    tokens: int = field(default=1_000_000, metadata={
        "help": "training tokens per run (steps = tokens / (micro_batch x seq_len)), the same for every variant"})
    seeds: int = field(default=3, metadata={"help": "runs per variant; seed k sets the init and the data order"})
    seq_len: int = field(default=256, metadata={"help": "tokens per training sequence"})
    micro_batch: int = field(default=8, metadata={"help": "sequences per step"})
    lr: float = field(default=3e-3, metadata={"help": "peak learning rate (warmup 5%, cosine to a tenth)"})
    vocab_size: int = field(default=2000, metadata={"help": "tokenizer vocabulary"})
    tokenizer_from: str = field(default="", metadata={"help": "variant whose documents train the tokenizer; empty: EVAL_DOCS"})
    eval_every: int = field(default=0, metadata={"help": "steps between held-out evaluations; 0: 8 per run"})
    eval_sequences: int = field(default=256, metadata={"help": "held-out sequences per evaluation"})
    shard_bytes: int = field(default=1 << 20, metadata={"help": "bytes per token shard"})
    gate: bool = field(default=False, metadata={
        "help": "train through the repeated n-gram batch gate; off by default, so that the data alone decides"})
    spark: SparkConfig = field(default_factory=SparkConfig)

    def variant_dirs(self) -> dict[str, str]:
        pairs = [item.split("=", 1) for item in self.variants.split(",") if item.strip()]
        if len(pairs) < 2 or any(len(p) != 2 or not re.fullmatch(r"[A-Za-z0-9_.-]+", p[0]) for p in pairs):
            raise ConfigError(f"--variants wants at least two NAME=DIR (names of letters, digits, _ . -), got {self.variants!r}")
        names = [name for name, _ in pairs]
        if len(set(names)) != len(names):
            raise ConfigError(f"--variants names repeat: {names}")
        if self.tokenizer_from and self.tokenizer_from not in names:
            raise ConfigError(f"tokenizer_from {self.tokenizer_from!r} is not a variant ({', '.join(names)})")
        return dict(pairs)

    def steps(self) -> int:
        return max(1, self.tokens // (self.micro_batch * self.seq_len))


def run_ablation(spark, cfg: AblateConfig, out: str) -> dict:
    """Every step not done before, then the report; returns ablation.json's content."""
    from jobs.ablation_report import write_report

    variants = cfg.variant_dirs()
    if not cfg.eval:
        raise ConfigError("--eval EVAL_DOCS is required: the held-out documents every variant is judged on")
    root = Path(out)
    tokenizer = _tokenizer(spark, cfg, variants, root)
    eval_tokens, eval_index = _held_out(spark, cfg, root, tokenizer)
    prepared = {name: _variant(spark, cfg, name, docs, root, tokenizer, eval_index) for name, docs in variants.items()}
    runs = {name: [_train(cfg, prepared[name]["tokens"], eval_tokens, root / "runs" / name / f"seed-{seed}", seed)
                   for seed in range(cfg.seeds)] for name in variants}
    return write_report(root, cfg, prepared, runs, eval_tokens)


def _tokenizer(spark, cfg: AblateConfig, variants: dict[str, str], root: Path) -> str:
    from dataprep.train_tokenizer import TokenizerConfig, train_tokenizer
    from quality.gate import require_validated

    out = root / "tokenizer"
    if not (out / "tokenizer.json").exists():
        source = variants[cfg.tokenizer_from] if cfg.tokenizer_from else cfg.eval
        gate = require_validated(source, False)
        train_tokenizer(spark, storage.documents_path(source), str(out), TokenizerConfig(vocab_size=cfg.vocab_size),
                        input_validation=gate)
    return str(out)


def _held_out(spark, cfg: AblateConfig, root: Path, tokenizer: str) -> tuple[str, str]:
    """(tokens, dedup index) of EVAL_DOCS, deduplicated."""
    from dataprep.dedup import DedupConfig, run_dedup

    deduped, index = root / "eval" / "deduped", root / "eval" / "index"
    if not (storage.committed(str(deduped)) and (index / "index.json").exists()):
        run_dedup(spark, cfg.eval, str(deduped), DedupConfig(spark=cfg.spark), write_index=str(index))
    return _tokenize(spark, cfg, str(deduped), tokenizer, root / "eval" / "tokens"), str(index)


def _variant(spark, cfg: AblateConfig, name: str, documents: str, root: Path, tokenizer: str, eval_index: str) -> dict:
    """The variant without its duplicates of the held-out set, tokenized; {tokens, decontamination}."""
    from dataprep.decontaminate import RECORD, remove_overlap
    from dataprep.dedup import DedupConfig

    clean = root / "variants" / name / "documents"
    record_path = clean / RECORD
    if not (record_path.exists() and (clean / "documents" / "validation.json").exists()):
        record = remove_overlap(spark, documents, eval_index, str(clean), DedupConfig(spark=cfg.spark))
        if not record["validation"]["success"]:
            raise RuntimeError(f"variant {name}: {clean} failed validation: {record['validation']['failed']}")
    record = json.loads(record_path.read_text())
    tokens = _tokenize(spark, cfg, str(clean / "documents"), tokenizer, root / "variants" / name / "tokens")
    return {"documents": documents, "tokens": tokens, "decontamination": record}


def _tokenize(spark, cfg: AblateConfig, documents: str, tokenizer: str, out: Path) -> str:
    from dataprep.tokenize_stage import TokenizeConfig, run_tokenize

    if not (out / "manifest.json").exists():
        _, manifest = run_tokenize(spark, documents, tokenizer, str(out), TokenizeConfig(
            seq_len=cfg.seq_len, shard_bytes=cfg.shard_bytes, row_group_rows=32, spark=cfg.spark))
        if not manifest["validation"]["success"]:
            raise RuntimeError(f"{out} failed validation: {manifest['validation']}")
    return str(out)


def _train(cfg: AblateConfig, tokens: str, eval_tokens: str, run: Path, seed: int) -> str:
    """One equal-budget run (skipped when finished; resumed when interrupted)."""
    from training.trainer.pretrain import TrainConfig, train

    steps = cfg.steps()
    if (run / "checkpoints" / f"step-{steps:08d}" / "COMPLETE").exists():
        return str(run)
    train_cfg = TrainConfig(model=cfg.model, micro_batch=cfg.micro_batch, grad_accum=1, max_steps=steps, seed=seed,
                            tensorboard=False, log_every=max(steps // 100, 1),
                            model_overrides={"max_seq_len": max(cfg.seq_len, 1024)})
    train_cfg.data.seed, train_cfg.gate.enabled = seed, cfg.gate
    schedule = train_cfg.schedule
    schedule.warmup_steps, schedule.total_steps = max(steps // 20, 1), steps
    schedule.max_lr, schedule.min_lr = cfg.lr, cfg.lr / 10
    train_cfg.checkpoint.every = max(steps // 2, 1)
    train_cfg.eval.data, train_cfg.eval.sequences = eval_tokens, cfg.eval_sequences
    train_cfg.eval.every = cfg.eval_every or max(steps // 8, 1)
    print(f"[ablate] {run.parent.name} seed {seed}: {steps} steps", file=sys.stderr, flush=True)
    train(train_cfg, tokens, str(run))
    return str(run)


COMMAND = Command(
    description="Train the same model for the same tokens on each documents variant (K seeds each) and compare "
                "their loss on one held-out set that none trains on; writes OUT/ablation.json, .md and .png.",
    config=AblateConfig,
    options=(
        Option("--variants", "variants"),
        Option("--eval", "eval"),
        Option("--model", "model"),
        Option("--tokens", "tokens"),
        Option("--seeds", "seeds"),
        Option("--tokenizer-from", "tokenizer_from"),
        Option("--out", help="directory for every step's output and the report", kwargs={"required": True}),
    ),
)


@exit_on_config_error
def main(argv: list[str] | None = None, prog: str = "clover ablate") -> int:
    from dataprep.spark import spark_session

    args, cfg = COMMAND.parse(argv, prog)
    cfg.variant_dirs()  # refuse a bad --variants before Spark starts
    spark = spark_session(cfg.spark, "clover-ablate", storage.total_bytes([cfg.eval, *cfg.variant_dirs().values()]))
    result = run_ablation(spark, cfg, args.out)
    print(result["table"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
