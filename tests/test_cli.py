import subprocess
import sys

from jobs.cli import COMMANDS, main


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


def test_each_command_has_help():
    for name in COMMANDS:
        result = subprocess.run([sys.executable, "-m", "jobs.cli", name, "--help"], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert f"clover {name}" in result.stdout


def test_unknown_command_fails(capsys):
    assert main(["nope"]) == 2
    assert "unknown command" in capsys.readouterr().err
