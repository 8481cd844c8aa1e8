"""Real text that nobody here wrote, built offline once the sdists are cached: the benchmarks' shared corpus.

Sources: the Python standard library's own modules and docs (always on the machine), and the text files
inside pinned PyPI source distributions (fetched once with `pip download`; the recipe is the pins, the
data is never committed).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import sysconfig
import tarfile
import zipfile


def fetch_sdists(specs: list[str], folder: str, python: str = sys.executable) -> None:
    """`pip download` each pinned sdist not yet in `folder` (network needed only then). `python` needs the
    sdists' build backends installed, since their metadata is read without build isolation."""
    os.makedirs(folder, exist_ok=True)
    for spec in specs:
        if _cached(folder, spec) is None:
            subprocess.run([python, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                            "--no-build-isolation", spec, "-d", folder], check=True, capture_output=True)


def sdist_path(folder: str, spec: str) -> str:
    """The cached archive of a pinned `package==version`."""
    path = _cached(folder, spec)
    if path is None:
        raise FileNotFoundError(f"{spec} is not in {folder}: fetch it first (needs network once)")
    return path


def _cached(folder: str, spec: str) -> str | None:
    """The archive of `package==version` in `folder`, whatever case and separator its file name uses."""
    package, version = spec.split("==")
    prefix = f"{package}-{version}.".lower().replace("_", "-")
    for name in sorted(os.listdir(folder)):
        if name.lower().replace("_", "-").startswith(prefix):
            return os.path.join(folder, name)
    return None


def archive_members(archive: str, suffixes: tuple[str, ...], max_bytes: int = sys.maxsize) -> list[tuple[str, bytes]]:
    """(name, bytes) of the files ending in `suffixes` and smaller than `max_bytes` in an sdist, by name."""
    if archive.endswith((".tar.gz", ".tgz")):
        with tarfile.open(archive) as opened:
            return sorted((m.name, opened.extractfile(m).read()) for m in opened.getmembers()
                          if m.isfile() and m.name.lower().endswith(suffixes) and m.size < max_bytes)
    with zipfile.ZipFile(archive) as opened:
        return sorted((i.filename, opened.read(i)) for i in opened.infolist()
                      if not i.is_dir() and i.filename.lower().endswith(suffixes) and i.file_size < max_bytes)


def stdlib_files(suffixes: tuple[str, ...], min_bytes: int, max_bytes: int) -> list[tuple[str, bytes]]:
    """(path relative to the standard library, bytes) of this interpreter's own text files, by path."""
    root = sysconfig.get_paths()["stdlib"]
    found = []
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if d not in ("site-packages", "__pycache__"))
        for name in files:
            path = os.path.join(directory, name)
            if name.lower().endswith(suffixes) and min_bytes <= os.path.getsize(path) < max_bytes:
                with open(path, "rb") as handle:
                    found.append((os.path.relpath(path, root), handle.read()))
    return sorted(found)


def stable_order(named: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """A fixed, well-mixed order (by the hash of each name), so that a prefix is a fair sample."""
    return sorted(named, key=lambda item: hashlib.sha1(item[0].encode()).hexdigest())


# Sdists rich in English prose (docs, changelogs, docstrings), one release each.
DOC_SDISTS = ("docutils==0.21.2", "sphinx==7.4.7", "pytest==8.3.3", "SQLAlchemy==2.0.36", "click==8.1.7",
              "flask==3.0.3", "attrs==24.2.0", "jinja2==3.1.4", "requests==2.32.3", "pip==24.2", "sympy==1.13.3",
              "Pygments==2.18.0", "babel==2.16.0", "alembic==1.13.3", "httpx==0.27.2", "setuptools==75.1.0")

# Six releases each of packages whose sdists carry many text files: a file barely changes between releases.
PACKAGE_RELEASES = {
    "click": ["7.1.2", "8.0.4", "8.1.3", "8.1.5", "8.1.7", "8.1.8"],
    "jinja2": ["2.11.3", "3.0.3", "3.1.2", "3.1.3", "3.1.4", "3.1.5"],
    "werkzeug": ["2.0.3", "2.2.3", "2.3.8", "3.0.1", "3.0.4", "3.1.3"],
    "flask": ["1.1.4", "2.0.3", "2.2.5", "2.3.3", "3.0.3", "3.1.0"],
    "attrs": ["21.4.0", "22.2.0", "23.1.0", "23.2.0", "24.2.0", "24.3.0"],
    "requests": ["2.25.1", "2.27.1", "2.28.2", "2.31.0", "2.32.2", "2.32.3"],
}
