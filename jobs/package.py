"""`clover package --out DIR`: Clover's code as DIR/clover.zip for spark-submit --py-files.

Executors need the dependencies (pyarrow, numpy, sentencepiece, ...) installed, not Clover: its
packages travel with the job. The zip is reproducible (sorted entries, fixed timestamps).
"""

from __future__ import annotations

import json
import os
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field

from jobs.common import exit_on_config_error
from jobs.flags import Command, Option

PACKAGES = ("dataprep", "quality", "schemas", "jobs")
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class PackageConfig:
    packages: list[str] = field(default_factory=lambda: list(PACKAGES), metadata={
        "help": "Clover's packages zipped for the executors (training/ only for a job of your own that needs it)"})


COMMAND = Command(
    description=__doc__.split("\n")[0],
    config=PackageConfig,
    options=(Option("--out", help="directory for clover.zip", kwargs={"required": True}),),
)


def build_zip(out_dir: str, packages: Sequence[str] = PACKAGES) -> str:
    """Write out_dir/clover.zip holding the Python packages the Spark executors import; returns its path."""
    os.makedirs(out_dir, exist_ok=True)
    target = os.path.join(out_dir, "clover.zip")
    files = sorted(os.path.relpath(os.path.join(folder, name), _REPO)
                   for package in packages for folder, _, names in os.walk(os.path.join(_REPO, package))
                   for name in names if "__pycache__" not in folder and not name.endswith(".pyc"))  # package data too
    with zipfile.ZipFile(target + ".part", "w", zipfile.ZIP_DEFLATED) as archive:
        for relative in files:
            info = zipfile.ZipInfo(relative, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type, info.external_attr = zipfile.ZIP_DEFLATED, 0o644 << 16
            with open(os.path.join(_REPO, relative), "rb") as handle:
                archive.writestr(info, handle.read())
    os.replace(target + ".part", target)
    return target


@exit_on_config_error
def main(argv: list[str] | None = None, prog: str = "clover package") -> int:
    args, cfg = COMMAND.parse(argv, prog)
    path = build_zip(args.out, cfg.packages)
    print(json.dumps({"py_files": path, "bytes": os.path.getsize(path),
                      "submit": f"spark-submit --py-files {path} jobs/curate.py INPUT --out OUT"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
