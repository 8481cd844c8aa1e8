"""`clover package --out DIR`: Clover's code as DIR/clover.zip for spark-submit --py-files.

Executors need the dependencies (pyarrow, numpy, sentencepiece, ...) installed, not Clover: its
packages travel with the job. The zip is reproducible (sorted entries, fixed timestamps).
"""

from __future__ import annotations

import argparse
import json
import os
import zipfile

PACKAGES = ("dataprep", "quality", "schemas", "jobs")
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build_zip(out_dir: str) -> str:
    """Write out_dir/clover.zip holding the Python packages the Spark executors import; returns its path."""
    os.makedirs(out_dir, exist_ok=True)
    target = os.path.join(out_dir, "clover.zip")
    files = sorted(os.path.relpath(os.path.join(folder, name), _REPO)
                   for package in PACKAGES for folder, _, names in os.walk(os.path.join(_REPO, package))
                   for name in names if name.endswith((".py", ".yaml", ".txt")) and "__pycache__" not in folder)
    with zipfile.ZipFile(target + ".part", "w", zipfile.ZIP_DEFLATED) as archive:
        for relative in files:
            info = zipfile.ZipInfo(relative, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type, info.external_attr = zipfile.ZIP_DEFLATED, 0o644 << 16
            with open(os.path.join(_REPO, relative), "rb") as handle:
                archive.writestr(info, handle.read())
    os.replace(target + ".part", target)
    return target


def main(argv: list[str] | None = None, prog: str = "clover package") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="directory for clover.zip")
    args = parser.parse_args(argv)
    path = build_zip(args.out)
    print(json.dumps({"py_files": path, "bytes": os.path.getsize(path),
                      "submit": f"spark-submit --py-files {path} jobs/curate.py INPUT --out OUT"}))
    return 0
