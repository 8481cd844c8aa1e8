"""`clover demo [--out DIR]`: the whole Clover path on the built-in sample, on one machine.

make the sample -> curate -> dedup -> train the tokenizer -> tokenize (each validated, with Data Docs)
-> pretrain clover-tiny -> the gate story (jobs/gate_story.py) -> prep-pairs -> DPO -> export -> generate, then a summary table and plots.
The Spark steps are the registered stages (dataprep/stages.py) in their `step` order, each run through
its own command's arguments and config, so a new registered stage joins the demo by itself. Each writes
its real outputs under DIR. A rerun skips finished steps; --force redoes them.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from jobs.common import add_verbose_argument, exit_on_config_error
from jobs.flags import Command, Option
from jobs.gate_story import GateStoryConfig
from jobs.progress import SparkProgress, step_bar


@dataclass
class DemoConfig:
    docs: int = field(default=2000, metadata={"help": "documents in the built-in sample"})
    pairs: int = field(default=200, metadata={"help": "preference pairs in the built-in sample"})
    vocab_size: int = field(default=2000, metadata={"help": "tokenizer vocabulary"})
    seq_len: int = field(default=256, metadata={"help": "tokens per pretraining sequence"})
    token_shard_bytes: int = field(default=64 << 10, metadata={
        "help": "bytes per token shard: small enough for several shards, so some can be held out"})
    holdout_fraction: float = field(default=0.1, metadata={
        "help": "share of token shards held out of pretraining, for its held-out loss and quantize's perplexity"})
    dpo_holdout_fraction: float = field(default=0.2, metadata={
        "help": "share of preference pairs held out of DPO, for its held-out reward accuracy"})
    pretrain_steps: int = field(default=300, metadata={"help": "clover-tiny pretraining steps"})
    pretrain_micro_batch: int = field(default=8, metadata={"help": "sequences per pretraining step"})
    pretrain_lr: float = field(default=3e-3, metadata={"help": "peak pretraining learning rate"})
    dpo_steps: int = field(default=120, metadata={"help": "DPO steps"})
    dpo_micro_batch: int = field(default=8, metadata={"help": "pairs per DPO step"})
    dpo_lr: float = field(default=1e-3, metadata={"help": "DPO learning rate"})
    max_pair_length: int = field(default=256, metadata={"help": "prep-pairs max_length (fits clover-tiny's context)"})
    gate_story: GateStoryConfig = field(default_factory=GateStoryConfig)
    prompt: str = field(default="Explain this part of the Python documentation: Return a new list",
                        metadata={"help": "prompt for the final generate"})


@dataclass
class Step:
    name: str
    output: str                       # relative to DIR: removed by --force, checked for completion
    done: Callable[[Path], bool]
    run: Callable[[], None]
    order: int                        # its place among the registered Spark stages' `Stage.step`


# The demo's own steps, placed among the registered Spark stages (dataprep/stages.py) by their `step`:
# every registered stage runs, in step order, without an entry here.
SAMPLE, PRETRAIN, GATE_STORY, DPO, EXPORT = 0, 45, 47, 60, 70
# a registered stage's output directory under DIR (default: its name) and input (default: the newest documents)
OUTPUTS = {"curate": "curated", "dedup": "deduped", "train-tokenizer": "tokenizer", "tokenize": "tokens",
           "prep-pairs": "pairs"}
INPUTS = {"prep-pairs": "sample-pairs"}


def _stage_arguments(name: str, cfg: DemoConfig) -> list[str]:
    """The flags the demo adds to a registered stage's command to fit the sample (none: the stage's defaults)."""
    return {
        "train-tokenizer": ["--vocab-size", str(cfg.vocab_size), "--sample-docs", str(cfg.docs)],
        "tokenize": ["--seq-len", str(cfg.seq_len), "--set", f"shard_bytes={cfg.token_shard_bytes}",
                     "--set", "row_group_rows=32"],
        "prep-pairs": ["--max-length", str(cfg.max_pair_length),
                       "--set", f"max_prompt_length={cfg.max_pair_length // 2}"],
    }.get(name, [])


def _validated(out: Path) -> bool:
    """The dataset's report or manifest records a passed validation."""
    from quality.gate import dataset_record

    record = dataset_record(str(out)) if out.exists() else None
    return bool(record and (record[1].get("validation") or {}).get("success"))


def _finished(steps: int) -> Callable[[Path], bool]:
    def check(out: Path) -> bool:
        return (out / "checkpoints" / f"step-{steps:08d}" / "COMPLETE").exists()
    return check


def _exists(name: str) -> Callable[[Path], bool]:
    return lambda out: (out / name).exists()


def _committed(out: Path) -> bool:
    """A stage without a validation suite is done when its record file (the commit point) is there."""
    from schemas import storage

    return storage.committed(str(out))


def run_demo(out_dir: str, cfg: DemoConfig, force: bool = False, spark=None) -> dict:
    """Run every step (skipping finished ones unless force), write summary.md/json and plots; return the summary."""
    from dataprep.spark import SparkConfig, spark_session

    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    spark = spark or spark_session(SparkConfig(), "clover-demo", input_bytes=0)  # the built-in sample: a few MB
    timings = _run_steps(_steps(root, cfg, spark), root, force)
    return _summarize(root, cfg, timings)


def _steps(root: Path, cfg: DemoConfig, spark) -> list[Step]:
    """The path in order: the demo's own steps and every registered Spark stage, each writing under root."""
    from training.inference.export import export

    own = [
        Step("sample", "sample", _exists("crawl-00.jsonl"), lambda: _sample(root, cfg), SAMPLE),
        Step("pretrain", "runs/pretrain", _finished(cfg.pretrain_steps), lambda: _pretrain(root, cfg), PRETRAIN),
        *_gate_story_step(root, cfg),
        Step("dpo", "runs/dpo", _finished(cfg.dpo_steps), lambda: _dpo(root, cfg), DPO),
        Step("export", "export", _exists("config.json"),
             lambda: export(str(root / "runs/dpo"), str(root / "export"), "float32"), EXPORT),
    ]
    return sorted(own + _stage_steps(root, cfg, spark), key=lambda step: step.order)


def _stage_steps(root: Path, cfg: DemoConfig, spark) -> list[Step]:
    """Each registered Spark stage, run through its own command's arguments and config (as `clover STAGE`):
    its input is the newest documents dataset (the sample first), and a stage that encodes text gets the
    tokenizer trained before it."""
    from dataprep.stages import discover

    newest = {"documents": "sample"}
    steps = []
    for name, stage in discover().items():
        output = OUTPUTS.get(name, name)
        argv = [str(root / INPUTS.get(name, newest["documents"])), "--out", str(root / output)]
        if any(option.flag == "--tokenizer" for option in stage.options) and "tokenizer" in newest:
            argv += ["--tokenizer", str(root / newest["tokenizer"])]
        run = _run_stage(spark, stage, argv + _stage_arguments(name, cfg))
        steps.append(Step(name, output, _validated if stage.own_suite else _committed, run, stage.step))
        newest[stage.writes] = output
    return steps


def _run_stage(spark, stage, argv: list[str]) -> Callable[[], None]:
    """The stage's run function on its parsed arguments and config, showing its Spark jobs' progress."""
    from jobs.stage_cli import parse_stage

    args, stage_cfg = parse_stage(stage, argv, f"clover {stage.name}")

    def run() -> None:
        with SparkProgress(spark, stage.name):
            stage.run(spark, args, stage_cfg)
    return run


def _sample(root: Path, cfg: DemoConfig) -> None:
    """The built-in documents and preference pairs: the demo needs no download."""
    from schemas.sample import write_sample, write_sample_pairs

    write_sample(str(root / "sample"), cfg.docs)
    write_sample_pairs(str(root / "sample-pairs"), cfg.pairs)


def _gate_story_step(root: Path, cfg: DemoConfig) -> list[Step]:
    """Both arms of the gate story from the pretrain run's checkpoint (none with --no-gate-story)."""
    from jobs.gate_story import run_gate_story

    if cfg.gate_story.skip:
        return []
    steps = cfg.gate_story.steps
    done = lambda out: all(_finished(steps)(out / arm) for arm in ("ungated", "gated"))  # noqa: E731
    run = lambda: run_gate_story(root / "gate-story", cfg.gate_story, _pretrain_config(cfg),  # noqa: E731
                                 root / "runs/pretrain", root / "tokens")
    return [Step("gate-story", "gate-story", done, run, GATE_STORY)]


def _pretrain_config(cfg: DemoConfig):
    """clover-tiny with a schedule scaled to the demo's step count, checkpointed three times."""
    from training.trainer.pretrain import TrainConfig

    train_cfg = TrainConfig(model="clover-tiny", micro_batch=cfg.pretrain_micro_batch, grad_accum=1,
                            max_steps=cfg.pretrain_steps, model_overrides={"max_seq_len": max(cfg.seq_len, 1024)})
    train_cfg.schedule.warmup_steps = max(cfg.pretrain_steps // 20, 1)
    train_cfg.schedule.max_lr, train_cfg.schedule.min_lr = cfg.pretrain_lr, cfg.pretrain_lr / 10
    train_cfg.schedule.total_steps = cfg.pretrain_steps
    train_cfg.checkpoint.every = max(cfg.pretrain_steps // 3, 1)
    train_cfg.eval.every, train_cfg.eval.sequences = max(cfg.pretrain_steps // 6, 1), 128
    train_cfg.eval.holdout_fraction = cfg.holdout_fraction
    return train_cfg


def _pretrain(root: Path, cfg: DemoConfig) -> None:
    from training.trainer.pretrain import train

    train(_pretrain_config(cfg), str(root / "tokens"), str(root / "runs/pretrain"),
          progress=step_bar("pretrain", cfg.pretrain_steps))


def _dpo(root: Path, cfg: DemoConfig) -> None:
    """DPO from the pretrained run with a schedule scaled to the demo's step count, checkpointed twice."""
    from training.trainer.dpo import DPOConfig, run_dpo

    dpo_cfg = DPOConfig(micro_batch=cfg.dpo_micro_batch, grad_accum=1, max_steps=cfg.dpo_steps)
    dpo_cfg.schedule.warmup_steps = max(cfg.dpo_steps // 20, 1)
    dpo_cfg.schedule.max_lr, dpo_cfg.schedule.min_lr = cfg.dpo_lr, cfg.dpo_lr / 10
    dpo_cfg.schedule.total_steps = cfg.dpo_steps
    dpo_cfg.checkpoint.every = max(cfg.dpo_steps // 2, 1)
    dpo_cfg.eval.every, dpo_cfg.eval.holdout_fraction = max(cfg.dpo_steps // 4, 1), cfg.dpo_holdout_fraction
    run_dpo(dpo_cfg, str(root / "pairs"), str(root / "runs/pretrain"), str(root / "runs/dpo"),
            progress=step_bar("dpo", cfg.dpo_steps))


def _run_steps(steps: list[Step], root: Path, force: bool) -> dict[str, float]:
    """Each step not finished before (all of them with force), checked done after; the seconds each took."""
    timings = {}
    for step in steps:
        target = root / step.output
        if force and target.exists():
            shutil.rmtree(target)
            if step.name == "sample":
                shutil.rmtree(root / "sample-pairs", ignore_errors=True)
        if step.done(target):
            print(f"[{step.name}] done before: {target} (use --force to redo)", file=sys.stderr, flush=True)
            continue
        print(f"[{step.name}] running -> {target}", file=sys.stderr, flush=True)
        started = time.time()
        step.run()
        timings[step.name] = round(time.time() - started, 1)
        if not step.done(target):
            raise RuntimeError(f"stage {step.name} did not complete: {target} (see its report.json)")
    return timings


def _summarize(root: Path, cfg: DemoConfig, timings: dict[str, float]) -> dict:
    """A greedy answer from the export, the summary table and plots, and the inspection report of every output."""
    from jobs.inspection import build_report
    from jobs.summary import summarize
    from training.inference.generate import complete

    sample_text = complete(str(root / "export"), cfg.prompt, max_new_tokens=40, temperature=0.0)
    summary = summarize(root, timings, cfg.prompt, sample_text)
    (root / "report.html").write_text(build_report(str(root), out=str(root / "report.html")), encoding="utf-8")  # clover inspect DIR: every output
    return summary


COMMAND = Command(
    description="Run the whole Clover path on the built-in sample: curate, dedup, tokenizer, tokenize, validate, "
                "pretrain clover-tiny, prep-pairs, DPO, export, generate.",
    config=DemoConfig,
    options=(Option("--out", help="directory for every stage's output", kwargs={"default": "clover-demo"}),
             Option("--force", help="redo finished stages", kwargs={"action": "store_true"}),
             Option("--no-gate-story", "gate_story.skip")),
)


@exit_on_config_error
def main(argv: list[str] | None = None, prog: str = "clover demo") -> int:
    parser = COMMAND.parser(prog)
    add_verbose_argument(parser)
    args = parser.parse_args(argv)
    cfg = COMMAND.configure(args)
    summary = run_demo(args.out, cfg, force=args.force)
    print(summary["table"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
