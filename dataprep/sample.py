"""Real English prose available on every machine: the docstrings of Python's standard library.

Harvested deterministically (sorted modules and names), so every machine makes the same corpus.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import warnings

# Modules whose import has side effects (opening windows, printing, starting services).
_SKIP = {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "lib2to3", "ensurepip", "venv",
         "pydoc_data", "test", "__main__", "xxsubtype", "xxlimited", "msilib", "winreg", "winsound"}
_WORDS = re.compile(r"[A-Za-z][a-z]+")


def _modules() -> list[str]:
    names = {m.name for m in pkgutil.iter_modules() if m.module_finder and "site-packages" not in str(
        getattr(m.module_finder, "path", ""))}
    return sorted(n for n in names if not n.startswith("_") and n not in _SKIP)


def stdlib_docstrings(min_words: int = 40) -> list[str]:
    """Distinct module, class and function docstrings of at least `min_words` words, in a fixed order."""
    seen: set[str] = set()
    docs: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in _modules():
            try:
                module = importlib.import_module(name)
            except Exception:  # noqa: BLE001 - an unimportable stdlib module just contributes nothing
                continue
            objects = [module] + [getattr(module, a, None) for a in sorted(vars(module)) if not a.startswith("_")]
            for obj in objects:
                doc = inspect.getdoc(obj) if obj is not None else None
                if doc and doc not in seen and len(_WORDS.findall(doc)) >= min_words:
                    seen.add(doc)
                    docs.append(doc)
    return docs
