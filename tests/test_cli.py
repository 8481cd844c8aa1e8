import subprocess
import sys

from jobs.cli import commands, main


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in commands():
        assert name in out


def test_each_command_has_help():
    for name in commands():
        result = subprocess.run([sys.executable, "-m", "jobs.cli", name, "--help"], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert f"clover {name}" in result.stdout


def test_unknown_command_fails(capsys):
    assert main(["nope"]) == 2
    assert "unknown command" in capsys.readouterr().err


def test_job_scripts_run_with_jobs_folder_first_on_the_path():
    """spark-submit runs jobs/<stage>.py with jobs/ first on sys.path: every entry point must still import."""
    import os

    jobs = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "jobs")
    for script in ("curate.py", "dedup.py", "tokenize_stage.py", "train_tokenizer.py", "validate.py", "prep_pairs.py",
                   "train.py", "dpo.py"):
        result = subprocess.run([sys.executable, os.path.join(jobs, script), "--help"], capture_output=True, text=True)
        assert result.returncode == 0, (script, result.stderr[-2000:])
        assert "usage:" in result.stdout


def test_a_stage_is_quiet_by_default(tmp_path):
    """One real `clover curate` (~35 s): no Spark start-up noise or GX progress bars, the summary and report still shown."""
    import os

    from schemas.sample import write_sample

    write_sample(str(tmp_path / "raw"), 50)
    env = {k: v for k, v in os.environ.items() if k != "CLOVER_VERBOSE"}
    result = subprocess.run([sys.executable, "-m", "jobs.cli", "curate", str(tmp_path / "raw"), "--out",
                             str(tmp_path / "cur"), "--master", "local[1]"], capture_output=True, text=True, env=env,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    for noise in ("Calculating Metrics", "Using Spark's default log4j profile", "WARN Utils", "NativeCodeLoader",
                  "SparkStringUtils"):
        assert noise not in result.stderr, (noise, result.stderr[-3000:])
    assert result.stdout.startswith("curate: ") and " kept, removed " in result.stdout
    assert "Data Docs: " in result.stdout


def _help_literals(path):
    """Every literal help text of an add_argument(..., help=...) or Option(...) call in a module."""
    import ast

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Call):
            continue
        name = getattr(node.func, "attr", getattr(node.func, "id", ""))
        texts = [k.value for k in node.keywords if k.arg == "help"]
        if name == "Option" and len(node.args) > 2:
            texts.append(node.args[2])
        if name in ("add_argument", "Option"):
            for text in texts:
                for part in ast.walk(text):
                    if isinstance(part, ast.Constant) and isinstance(part.value, str):
                        yield f"{path.name}:{node.lineno}", part.value


def test_no_help_text_repeats_a_default_by_hand():
    """Defaults are shown by jobs/flags.py from the config field or the argument's default, never written in help."""
    from pathlib import Path

    jobs = Path(__file__).resolve().parents[1] / "jobs"
    found = [(where, text) for path in sorted(jobs.glob("*.py"))
             for where, text in _help_literals(path) if "(default" in text]
    assert found == []


def _help(command: str) -> str:
    import importlib
    import re

    from jobs.cli import COMMANDS

    parser = importlib.import_module(COMMANDS[command][0]).COMMAND.parser(f"clover {command}")
    return re.sub(r"\s+", " ", parser.format_help())


def test_generated_help_shows_the_config_defaults():
    from training.inference.serve import ServeOptions
    from training.trainer.dpo import DPOConfig
    from training.trainer.pretrain import TrainConfig

    assert f"optimizer steps (default {TrainConfig().max_steps})" in _help("train")
    assert "(default 150000)" in _help("train") and "(default 2500)" in _help("dpo")
    assert f"(default {DPOConfig().beta})" in _help("dpo")
    assert f"(default {ServeOptions().port})" in _help("serve")
    assert "sampling temperatures (default 0.3,0.7,1.0)" in _help("sample-candidates")
    assert "(default 128)" in _help("quantize") and "(default 0.7)" in _help("generate")
    assert "directory for every stage's output (default clover-demo)" in _help("demo")


def test_every_command_declares_its_config_and_flags():
    """Every command but inspect goes through jobs/flags.py: --config and --set, and each named flag
    sets a key of its config dataclass."""
    import importlib

    from jobs.cli import COMMANDS
    from jobs.flags import config_field

    for name, (module, _) in COMMANDS.items():
        if name == "inspect":
            continue
        command = importlib.import_module(module).COMMAND
        for option in command.options:
            if option.key is not None:
                config_field(command.config, option.key)  # raises for a key the config lacks
        if name != "review":
            assert "--config" in _help(name) and "--set" in _help(name), name


def test_config_then_set_then_flags(tmp_path):
    from jobs.judge import COMMAND as JUDGE
    from jobs.train import COMMAND as TRAIN

    config = tmp_path / "train.yaml"
    config.write_text("max_steps: 5\nmicro_batch: 3\ncheckpoint:\n  every: 9\ndata:\n  allow_unvalidated: true\n")
    base = ["--data", "d", "--model", "clover-tiny", "--out", "o", "--config", str(config)]
    _, cfg = TRAIN.parse(base, "clover train")
    assert (cfg.max_steps, cfg.micro_batch, cfg.checkpoint.every, cfg.data.allow_unvalidated) == (5, 3, 9, True)
    _, cfg = TRAIN.parse(base + ["--set", "max_steps=6", "--set", "checkpoint.every=8"], "clover train")
    assert (cfg.max_steps, cfg.micro_batch, cfg.checkpoint.every) == (6, 3, 8)
    _, cfg = TRAIN.parse(base + ["--set", "max_steps=6", "--max-steps", "7", "--checkpoint-every", "2"], "clover train")
    assert (cfg.max_steps, cfg.checkpoint.every, cfg.model) == (7, 2, "clover-tiny")
    judged = tmp_path / "judge.yaml"
    judged.write_text("guided: true\nconcurrency: 2\n")
    _, cfg = JUDGE.parse(["c", "--out", "o", "--judge", "j", "--config", str(judged)], "clover judge")
    assert cfg.guided is True and cfg.concurrency == 2  # an absent switch leaves the config's value
    _, cfg = JUDGE.parse(["c", "--out", "o", "--judge", "j", "--guided", "--model-name", "m"], "clover judge")
    assert cfg.guided is True and cfg.model == "m"


def test_list_flags_and_off_switches():
    from jobs.plan import COMMAND as PLAN
    from jobs.sample_candidates import COMMAND as SAMPLE

    _, cfg = SAMPLE.parse(["p.jsonl", "--model", "run", "--out", "o", "--temperatures", "0.3,1.0"], "x")
    assert cfg.temperatures == [0.3, 1.0]
    _, cfg = PLAN.parse(["--model", "clover-tiny"], "clover plan")
    assert cfg.activation_checkpointing is True
    _, cfg = PLAN.parse(["--model", "clover-tiny", "--no-activation-checkpointing"], "clover plan")
    assert cfg.activation_checkpointing is False


def test_plan_runs_through_its_config(capsys):
    assert main(["plan", "--model", "clover-tiny", "--gpus", "2", "--set", "seq_len=1024"]) == 0
    out = capsys.readouterr().out
    assert "clover-tiny" in out and "2 GPU(s)" in out and "1024" in out


def test_a_registered_stage_joins_the_demo_by_its_step(tmp_path, monkeypatch):
    """The demo's Spark steps come from the stage registry: a new stage at step 25 runs after dedup, on its output,
    and the tokenizer trains on what it keeps; no edit to jobs/demo.py."""
    from dataclasses import dataclass, field

    from dataprep.stages import STAGES, Option, Stage, discover, register
    from jobs.demo import DemoConfig, _steps

    @dataclass
    class LangIdConfig:
        min_probability: float = field(default=0.65, metadata={"help": "keep above this"})

    import jobs.stage_cli

    parse, argvs = jobs.stage_cli.parse_stage, {}
    monkeypatch.setattr(jobs.stage_cli, "parse_stage",
                        lambda stage, argv, prog: argvs.setdefault(stage.name, argv) and parse(stage, argv, prog))
    discover()
    register(Stage(name="langid", summary="", description="", config=LangIdConfig, run=lambda spark, args, cfg: None,
                   describe=lambda report, cfg, args: "", inputs=("input", "documents"), out_help="", writes="documents",
                   options=(Option("--min-probability", "min_probability"),), step=25))
    try:
        steps = _steps(tmp_path, DemoConfig(), spark=None)
    finally:
        del STAGES["langid"]
    assert [s.name for s in steps] == ["sample", "curate", "dedup", "langid", "train-tokenizer", "tokenize", "pretrain",
                                       "gate-story", "prep-pairs", "dpo", "export"]
    assert argvs["langid"][:3] == [str(tmp_path / "deduped"), "--out", str(tmp_path / "langid")]
    assert argvs["train-tokenizer"][0] == argvs["tokenize"][0] == str(tmp_path / "langid")
