"""Fault injection: unsafe loads, escaping paths, corrupt inputs and shards, torn checkpoints, fuzzed JSONL.

Each fault must end in a quarantine row with a reason or a fast, clear error; nothing is lost and
nothing hangs. Cases too slow for CI (a 200 MB line, longer fuzzing campaigns) are in benchmarks/faults.py.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("dataprep", "jobs", "quality", "schemas", "training", "benchmarks")


def _package_sources() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (REPO / package).rglob("*.py"))


def test_no_unsafe_deserialization_in_the_package():
    """torch.load only with weights_only=True; no pickle, no yaml.load, no np.load(allow_pickle=True)."""
    unsafe = []
    for path in _package_sources():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            owner = node.func.value.id if isinstance(node.func.value, ast.Name) else ""
            call = f"{owner}.{node.func.attr}"
            keywords = {k.arg: getattr(k.value, "value", None) for k in node.keywords}
            if (call == "torch.load" and keywords.get("weights_only") is not True
                    or owner in ("pickle", "cPickle", "dill", "marshal") and node.func.attr.startswith("load")
                    or call == "yaml.load" or call in ("np.load", "numpy.load") and keywords.get("allow_pickle")):
                unsafe.append(f"{path.relative_to(REPO)}:{node.lineno}: {call}")
        text = path.read_text()
        for needle in ("weights_only" + "=False", "pickle" + ".load"):
            unsafe += [f"{path.relative_to(REPO)}: {needle}"] if needle in text else []
    assert not unsafe, "unsafe deserialization:\n" + "\n".join(unsafe)
    assert len(_package_sources()) > 50  # the scan saw the package
