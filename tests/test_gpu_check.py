"""benchmarks/gpu_check.py --dry-run: the GPU check's code runs on CPU, without pyspark, Great Expectations
or polars (a bare GPU machine has none of them), so it cannot rot between the rare days a GPU is lent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCKED_RUN = """
import runpy, sys
for name in ("pyspark", "great_expectations", "polars"):
    sys.modules[name] = None  # any import of them now fails, as on the bare GPU machine
sys.argv = ["benchmarks/gpu_check.py", *sys.argv[1:]]
runpy.run_path("benchmarks/gpu_check.py", run_name="__main__")
"""


def test_gpu_check_dry_run_without_spark_or_gx(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", BLOCKED_RUN, "--dry-run", "--out", str(tmp_path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    sections = json.loads((tmp_path / "gpu_check.json").read_text())["sections"]
    assert {name: s["status"] for name, s in sections.items()} == dict.fromkeys(
        ["environment", "flash", "train_eager", "train_eager_gate_off", "memory", "generation", "memory_phases",
         "train_compiled", "train_compiled_selective_ac"], "ok")
    assert sections["train_eager_gate_off"]["gate_rejections"] == 0 and sections["train_eager_gate_off"]["gate_share"] == 0
    assert sections["environment"]["packages"]["pyspark"].startswith("not available")
    eager = sections["train_eager"]
    assert eager["measured_steps"] == 3 and eager["tokens_per_s"] > 0
    assert eager["gate_rejections"] > 0  # the synthetic shards' looping rows meet the real batch gate
    assert 0 < eager["loader_and_gate_share"] < 1
    assert sections["train_compiled_selective_ac"]["settings"]["checkpoint_every_n_blocks"] == 2
    generation = sections["generation"]
    assert generation["cached_tokens_per_s"] > 0 and generation["uncached_tokens_per_s"] > 0
    assert generation["greedy_rows_identical"].startswith("4 of 4")  # fp32 on CPU: the cache changes nothing
    assert "## train_eager: ok" in (tmp_path / "gpu_check.md").read_text()
