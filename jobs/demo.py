"""`clover demo [--out DIR]`: the whole Clover path on the built-in sample, on one machine.

make the sample -> curate -> dedup -> train the tokenizer -> tokenize (each validated, with Data Docs)
-> pretrain clover-tiny -> prep-pairs -> DPO -> export -> generate, then a summary table and plots.
Each stage is the real stage code writing its real outputs under DIR. A rerun skips finished stages;
--force redoes them.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from jobs.common import add_verbose_argument, exit_on_config_error, stage_config, stage_parser
from jobs.progress import SparkProgress, step_bar


@dataclass
class DemoConfig:
    docs: int = field(default=2000, metadata={"help": "documents in the built-in sample"})
    pairs: int = field(default=200, metadata={"help": "preference pairs in the built-in sample"})
    vocab_size: int = field(default=2000, metadata={"help": "tokenizer vocabulary"})
    seq_len: int = field(default=256, metadata={"help": "tokens per pretraining sequence"})
    pretrain_steps: int = field(default=300, metadata={"help": "clover-tiny pretraining steps"})
    pretrain_micro_batch: int = field(default=8, metadata={"help": "sequences per pretraining step"})
    pretrain_lr: float = field(default=3e-3, metadata={"help": "peak pretraining learning rate"})
    dpo_steps: int = field(default=120, metadata={"help": "DPO steps"})
    dpo_micro_batch: int = field(default=8, metadata={"help": "pairs per DPO step"})
    dpo_lr: float = field(default=1e-3, metadata={"help": "DPO learning rate"})
    max_pair_length: int = field(default=256, metadata={"help": "prep-pairs max_length (fits clover-tiny's context)"})
    prompt: str = field(default="Explain this part of the Python documentation: Return a new list",
                        metadata={"help": "prompt for the final generate"})


@dataclass
class Stage:
    name: str
    output: str                       # relative to DIR: removed by --force, checked for completion
    done: Callable[[Path], bool]
    run: Callable[[], None]


def _validated(record: str) -> Callable[[Path], bool]:
    def check(out: Path) -> bool:
        path = out / record
        return path.exists() and bool((json.loads(path.read_text()).get("validation") or {}).get("success"))
    return check


def _finished(steps: int) -> Callable[[Path], bool]:
    def check(out: Path) -> bool:
        return (out / "checkpoints" / f"step-{steps:08d}" / "COMPLETE").exists()
    return check


def _exists(name: str) -> Callable[[Path], bool]:
    return lambda out: (out / name).exists()


def run_demo(out_dir: str, cfg: DemoConfig, force: bool = False, spark=None) -> dict:
    """Run every stage (skipping finished ones unless force), write summary.md/json and plots; return the summary."""
    from dataprep.spark import SparkConfig, spark_session

    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    spark = spark or spark_session(SparkConfig(), "clover-demo")
    timings = _run_stages(_stages(root, cfg, spark), root, force)
    return _summarize(root, cfg, timings)


def _stages(root: Path, cfg: DemoConfig, spark) -> list[Stage]:
    """The path in order, each stage the real stage code writing its real output under root."""
    from dataprep.curate import CurateConfig, run_curate
    from dataprep.dedup import DedupConfig, run_dedup
    from dataprep.pairs import PairsConfig, run_prep_pairs
    from dataprep.tokenize_stage import TokenizeConfig, run_tokenize
    from training.inference.export import export

    path = lambda name: str(root / name)  # noqa: E731
    tokenize_cfg = TokenizeConfig(seq_len=cfg.seq_len, shard_bytes=4 << 20, row_group_rows=32)
    return [
        Stage("sample", "sample", _exists("crawl-00.jsonl"), lambda: _sample(root, cfg)),
        Stage("curate", "curated", _validated("report.json"),
              _spark_stage(spark, "curate", lambda: run_curate(spark, [path("sample")], path("curated"), CurateConfig()))),
        Stage("dedup", "deduped", _validated("report.json"),
              _spark_stage(spark, "dedup", lambda: run_dedup(spark, path("curated"), path("deduped"), DedupConfig()))),
        Stage("train-tokenizer", "tokenizer", _exists("tokenizer.json"),
              _spark_stage(spark, "train-tokenizer", lambda: _train_tokenizer(root, cfg, spark))),
        Stage("tokenize", "tokens", _validated("manifest.json"), _spark_stage(spark, "tokenize", lambda: run_tokenize(
            spark, path("deduped"), path("tokenizer"), path("tokens"), tokenize_cfg))),
        Stage("pretrain", "runs/pretrain", _finished(cfg.pretrain_steps), lambda: _pretrain(root, cfg)),
        Stage("prep-pairs", "pairs", _validated("report.json"), _spark_stage(spark, "prep-pairs", lambda: run_prep_pairs(
            spark, [path("sample-pairs")], path("tokenizer"), path("pairs"), PairsConfig(
                max_length=cfg.max_pair_length, max_prompt_length=cfg.max_pair_length // 2)))),
        Stage("dpo", "runs/dpo", _finished(cfg.dpo_steps), lambda: _dpo(root, cfg)),
        Stage("export", "export", _exists("config.json"), lambda: export(path("runs/dpo"), path("export"), "float32")),
    ]


def _sample(root: Path, cfg: DemoConfig) -> None:
    """The built-in documents and preference pairs: the demo needs no download."""
    from schemas.sample import write_sample, write_sample_pairs

    write_sample(str(root / "sample"), cfg.docs)
    write_sample_pairs(str(root / "sample-pairs"), cfg.pairs)


def _train_tokenizer(root: Path, cfg: DemoConfig, spark) -> None:
    """A tokenizer sized for the sample, trained only on documents whose validation passed."""
    from dataprep.train_tokenizer import TokenizerConfig, train_tokenizer
    from quality.gate import require_validated

    gate = require_validated(str(root / "deduped"))
    train_tokenizer(spark, str(root / "deduped/documents"), str(root / "tokenizer"),
                    TokenizerConfig(vocab_size=cfg.vocab_size, sample_docs=cfg.docs), input_validation=gate)


def _pretrain(root: Path, cfg: DemoConfig) -> None:
    """clover-tiny with a schedule scaled to the demo's step count, checkpointed three times."""
    from training.trainer.pretrain import TrainConfig, train

    train_cfg = TrainConfig(model="clover-tiny", micro_batch=cfg.pretrain_micro_batch, grad_accum=1,
                            max_steps=cfg.pretrain_steps, model_overrides={"max_seq_len": max(cfg.seq_len, 1024)})
    train_cfg.schedule.warmup_steps = max(cfg.pretrain_steps // 20, 1)
    train_cfg.schedule.max_lr, train_cfg.schedule.min_lr = cfg.pretrain_lr, cfg.pretrain_lr / 10
    train_cfg.schedule.total_steps = cfg.pretrain_steps
    train_cfg.checkpoint.every = max(cfg.pretrain_steps // 3, 1)
    train(train_cfg, str(root / "tokens"), str(root / "runs/pretrain"),
          progress=step_bar("pretrain", cfg.pretrain_steps))


def _dpo(root: Path, cfg: DemoConfig) -> None:
    """DPO from the pretrained run with a schedule scaled to the demo's step count, checkpointed twice."""
    from training.trainer.dpo import DPOConfig, run_dpo

    dpo_cfg = DPOConfig(micro_batch=cfg.dpo_micro_batch, grad_accum=1, max_steps=cfg.dpo_steps)
    dpo_cfg.schedule.warmup_steps = max(cfg.dpo_steps // 20, 1)
    dpo_cfg.schedule.max_lr, dpo_cfg.schedule.min_lr = cfg.dpo_lr, cfg.dpo_lr / 10
    dpo_cfg.schedule.total_steps = cfg.dpo_steps
    dpo_cfg.checkpoint.every = max(cfg.dpo_steps // 2, 1)
    run_dpo(dpo_cfg, str(root / "pairs"), str(root / "runs/pretrain"), str(root / "runs/dpo"),
            progress=step_bar("dpo", cfg.dpo_steps))


def _spark_stage(spark, label: str, body: Callable[[], object]) -> Callable[[], None]:
    """A Spark stage that shows its jobs' progress while it runs."""
    def run() -> None:
        with SparkProgress(spark, label):
            body()
    return run


def _run_stages(stages: list[Stage], root: Path, force: bool) -> dict[str, float]:
    """Each stage not finished before (all of them with force), checked done after; the seconds each took."""
    timings = {}
    for stage in stages:
        target = root / stage.output
        if force and target.exists():
            shutil.rmtree(target)
            if stage.name == "sample":
                shutil.rmtree(root / "sample-pairs", ignore_errors=True)
        if stage.done(target):
            print(f"[{stage.name}] done before: {target} (use --force to redo)", file=sys.stderr, flush=True)
            continue
        print(f"[{stage.name}] running -> {target}", file=sys.stderr, flush=True)
        started = time.time()
        stage.run()
        timings[stage.name] = round(time.time() - started, 1)
        if not stage.done(target):
            raise RuntimeError(f"stage {stage.name} did not complete: {target} (see its report.json)")
    return timings


def _summarize(root: Path, cfg: DemoConfig, timings: dict[str, float]) -> dict:
    """A greedy answer from the export, the summary table and plots, and the curate inspection report."""
    from jobs.generate import complete
    from jobs.inspection import build_report
    from jobs.summary import summarize

    sample_text = complete(str(root / "export"), cfg.prompt, max_new_tokens=40, temperature=0.0)
    summary = summarize(root, timings, cfg.prompt, sample_text)
    (root / "report.html").write_text(build_report(str(root / "curated")), encoding="utf-8")  # clover inspect, curate only
    return summary


@exit_on_config_error
def main(argv: list[str] | None = None, prog: str = "clover demo") -> int:
    parser = stage_parser(prog, "Run the whole Clover path on the built-in sample: curate, dedup, tokenizer, "
                                "tokenize, validate, pretrain clover-tiny, prep-pairs, DPO, export, generate.")
    parser.add_argument("--out", default="clover-demo", help="directory for every stage's output (default clover-demo)")
    parser.add_argument("--force", action="store_true", help="redo finished stages")
    add_verbose_argument(parser)
    args = parser.parse_args(argv)
    cfg = stage_config(DemoConfig, args, {})
    summary = run_demo(args.out, cfg, force=args.force)
    print(summary["table"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
