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
