"""The README's two command blocks are what CI runs, and the first works under PEP 668 (no install outside a venv).

Fast: nothing is installed here; .ci/readme-first-block runs the first block for real in a fresh clone.
"""

import os
import re
import shlex
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _bash_blocks() -> list[str]:
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as handle:
        return [b.strip() for b in re.findall(r"^```bash\n(.*?)^```$", handle.read(), re.S | re.M)]


def test_first_block_installs_inside_a_virtual_environment():
    first = _bash_blocks()[0]
    steps = [shlex.split(step) for step in first.split("&&")]
    assert steps[0] == ["python3", "-m", "venv", ".venv"], first
    assert steps[1] == [".", ".venv/bin/activate"], first
    installs = [i for i, s in enumerate(steps) if s[:2] == ["pip", "install"]]
    assert installs and min(installs) > 1, first
    assert steps[-1][0] == "clover", first


def test_ci_runs_exactly_the_second_block():
    second = _bash_blocks()[1]
    assert "\n" not in second and second.startswith("python3 -m venv .venv && . .venv/bin/activate && pip install")
    with open(os.path.join(REPO, ".ci", "run"), encoding="utf-8") as handle:
        commands = [line for line in handle.read().splitlines() if line and not line.startswith("#")]
    assert commands[-1] == second


def test_ci_first_block_script_runs_the_first_block():
    script = os.path.join(REPO, ".ci", "readme-first-block")
    printed = subprocess.run([script, "--print"], capture_output=True, text=True, check=True).stdout
    assert printed.strip() == _bash_blocks()[0]


def test_ci_runs_the_first_block_before_the_tests():
    with open(os.path.join(REPO, ".ci", "run"), encoding="utf-8") as handle:
        commands = [line for line in handle.read().splitlines() if line and not line.startswith("#")]
    assert ".ci/readme-first-block" in commands[:-1]
