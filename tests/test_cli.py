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
