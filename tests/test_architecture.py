"""The layering of docs/architecture.md, checked on the source: imports point down, never up.

schemas/ is the floor (dataset contracts, storage, config loading, raw-record readers); quality/ sits on
it; dataprep/ (Spark) and training/ (torch) sit on both and never on each other; jobs/ (the CLI and
entry points) may import anything. Inside training/: trainer <- inference <- preference.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("schemas", "quality", "dataprep", "training", "jobs")
# importer -> the first-party packages it may import (besides itself)
ALLOWED = {
    "schemas": set(),
    "quality": {"schemas"},
    "dataprep": {"schemas", "quality"},
    "training.trainer": {"schemas", "quality"},
    "training.inference": {"schemas", "quality", "training.trainer"},
    "training.preference": {"schemas", "quality", "training.trainer", "training.inference"},
    "training": {"schemas", "quality", "training.trainer", "training.inference", "training.preference"},
    "jobs": {"schemas", "quality", "dataprep", "training", "training.trainer", "training.inference",
             "training.preference"},
}
SPARK_FREE = ("quality", "training")


def _layer(module: str) -> str | None:
    """The ALLOWED key a dotted module belongs to (training splits by subpackage)."""
    parts = module.split(".")
    if parts[0] == "training" and len(parts) > 1 and f"training.{parts[1]}" in ALLOWED:
        return f"training.{parts[1]}"
    return parts[0] if parts[0] in PACKAGES else None


def _imports(path: Path, top_level_only: bool = False) -> list[str]:
    """Every module a file imports, top level or (unless `top_level_only`) inside functions."""
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in tree.body if top_level_only else ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [f"{node.module}.{alias.name}" for alias in node.names]
    return found


def _modules():
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            yield ".".join(path.relative_to(REPO).with_suffix("").parts), path


def upward_edges() -> list[str]:
    edges = []
    for module, path in _modules():
        own = _layer(module)
        for imported in _imports(path):
            target = _layer(imported)
            if target and target != own and target not in ALLOWED[own]:
                edges.append(f"{module} -> {imported}")
    return edges


def test_no_import_points_upward():
    assert upward_edges() == []


def test_spark_stays_in_dataprep_and_jobs():
    """schemas/ may name its columns as Spark types, inside the function that does it, for Spark's callers."""
    offenders = [f"{module} -> {imported}" for module, path in _modules()
                 for imported in _imports(path, top_level_only=module.startswith("schemas"))
                 if imported.split(".")[0] == "pyspark" and module.startswith((*SPARK_FREE, "schemas"))]
    assert offenders == []


def test_no_module_shadows_the_standard_library():
    """`python benchmarks/x.py` and `spark-submit jobs/x.py` put that folder first on sys.path."""
    names = {path.stem for folder in (*PACKAGES, "benchmarks") for path in (REPO / folder).rglob("*.py")}
    assert sorted(names & sys.stdlib_module_names) == []


def _one_edit_apart(a: str, b: str) -> bool:
    if abs(len(a) - len(b)) > 1 or a == b:
        return False
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b)) == 1
    short, long = sorted((a, b), key=len)
    return any(long[:i] + long[i + 1:] == short for i in range(len(long)))


def test_no_two_modules_of_a_package_differ_by_one_letter():
    folders = {path.parent for package in PACKAGES for path in (REPO / package).rglob("*.py")}
    close = [(folder.name, a.stem, b.stem) for folder in folders for a in folder.glob("*.py") for b in folder.glob("*.py")
             if a.stem < b.stem and _one_edit_apart(a.stem, b.stem)]
    assert close == []


def _schema_constants(path: Path) -> list[str]:
    """Module-level names bound to a pa.schema(...) or DatasetSchema(...) call."""
    found = []
    for node in ast.parse(path.read_text(), str(path)).body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.Call):
            func = node.value.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in ("schema", "DatasetSchema"):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                found += [t.id for t in targets if isinstance(t, ast.Name)]
    return found


def test_every_shared_schema_is_defined_in_schemas():
    """A dataset's columns are declared once, in schemas/; elsewhere only private scratch schemas of one
    module's Spark batches (never written) may be defined."""
    public = [f"{module}.{name}" for module, path in _modules() if not module.startswith("schemas")
              for name in _schema_constants(path) if not name.startswith("_")]
    assert public == []


def test_no_function_is_longer_than_sixty_lines():
    """Long functions become named steps that read top to bottom (tests are exempt)."""
    long = []
    for folder in (*PACKAGES, "benchmarks"):
        for path in sorted((REPO / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno >= 60:
                    long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1})")
    assert long == []


def _declared_distributions() -> set[str]:
    """Distribution names setup.cfg installs for `pip install -e ".[dev]"` (what CI has)."""
    import configparser
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    lines = config["options"]["install_requires"].split("\n") + config["options.extras_require"]["dev"].split("\n")
    return {re.split(r"[\[<>=!~ ]", line.strip())[0].lower().replace("_", "-") for line in lines if line.strip()}


def test_every_module_a_test_imports_at_top_level_is_a_declared_dependency():
    """CI installs only setup.cfg's dev extra: a test importing anything else fails at collection there."""
    from importlib.metadata import packages_distributions
    providers = packages_distributions()
    declared = _declared_distributions()
    missing = set()
    for path in sorted((REPO / "tests").glob("*.py")):
        for imported in _imports(path, top_level_only=True):
            top = imported.split(".")[0]
            if top in sys.stdlib_module_names or top in (*PACKAGES, "tests", "__future__"):
                continue
            distributions = {name.lower().replace("_", "-") for name in providers.get(top, [top])}
            if not distributions & declared:
                missing.add(f"{path.name}: {top}")
    assert sorted(missing) == []
