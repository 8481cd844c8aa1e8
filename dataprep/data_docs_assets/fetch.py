"""Fetch the Data Docs assets listed in dataprep.data_docs.ASSETS from the npm registry, once, with network:

    python dataprep/data_docs_assets/fetch.py

For each package version it downloads registry.npmjs.org/<package>/-/<name>-<version>.tgz, checks the
tarball against the registry's sha512 integrity, and keeps only the files the pages load plus the package's
licence, under dataprep/data_docs_assets/<name>-<version>/ (less the files' leading dist/ or build/). Font Awesome's CSS is rewritten to load its woff2
webfonts only (every browser that runs bootstrap 4 reads woff2), so the .ttf copies stay out.
Commit the result; a build never fetches anything."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import sys
import tarfile
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from dataprep.data_docs import ASSETS, ASSETS_DIR, EXTRA_FILES, local_path  # noqa: E402

REGISTRY = "https://registry.npmjs.org"
LICENCE = re.compile(r"package/(LICEN[CS]E|LICEN[CS]E\.(txt|md)|license)$", re.I)
# Releases whose tarball lost its LICENSE file: the licence of the release before (the same project's).
LICENCE_FROM = {("vega", "5.33.1"): "5.33.0"}
TTF_FALLBACK = re.compile(r""",\s*url\([^)]*\.ttf\)\s*format\(["']truetype["']\)""")


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.read()


def tarball(package: str, version: str) -> tarfile.TarFile:
    meta = json.loads(_get(f"{REGISTRY}/{package.replace('/', '%2F')}/{version}"))
    data = _get(meta["dist"]["tarball"])
    algorithm, digest = meta["dist"]["integrity"].split("-", 1)
    if base64.b64encode(hashlib.new(algorithm, data).digest()).decode() != digest:
        raise SystemExit(f"{package}@{version}: tarball does not match the registry's {algorithm}")
    return tarfile.open(fileobj=io.BytesIO(data), mode="r:gz")


def _licence_from_header(tar, members, package: str, version: str, path: str, out: Path) -> int:
    """A package without a LICENSE file: the release before's (LICENCE_FROM), or (popper.js 1.12.9) its
    package.json's licence and the file's licence header."""
    meta = json.loads(tar.extractfile(members["package/package.json"]).read())
    if (package, version) in LICENCE_FROM:
        earlier = LICENCE_FROM[package, version]
        with tarball(package, earlier) as other:
            text = other.extractfile("package/LICENSE").read().decode("utf-8")
        text = f"The {package} {version} tarball has no LICENSE file; this is {package} {earlier}'s.\n\n{text}"
        out.mkdir(parents=True, exist_ok=True)
        (out / "LICENSE").write_text(text, encoding="utf-8")
        return len(text)
    header = re.match(r"\s*/\*.*?\*/", tar.extractfile(members[f"package/{path}"]).read().decode("utf-8"), re.S)
    if not meta.get("license") or not header:
        raise SystemExit(f"{package}@{version}: no LICENSE file in the tarball and no licence header in {path}")
    text = (f"{package} {version} ships no LICENSE file. Its package.json says \"license\": \"{meta['license']}\"; "
            f"{path} begins:\n\n{header.group(0).strip()}\n")
    out.mkdir(parents=True, exist_ok=True)
    (out / "LICENSE").write_text(text, encoding="utf-8")
    return len(text)


def fetch(package: str, version: str, paths: set[str]) -> int:
    """Extract `paths` and the licence of package@version; returns the bytes written."""
    name = package.split("/")[-1]
    out = ASSETS_DIR / f"{name}-{version}"
    written = 0
    with tarball(package, version) as tar:
        members = {m.name: m for m in tar.getmembers() if m.isfile()}
        licences = [m for m in members if LICENCE.fullmatch(m)][:1]
        if not licences:
            written += _licence_from_header(tar, members, package, version, sorted(paths)[0], out)
        for member in sorted(f"package/{p}" for p in paths) + licences:
            data = tar.extractfile(members[member]).read()
            if member.endswith("/css/all.min.css"):  # Font Awesome
                data = TTF_FALLBACK.sub("", data.decode("utf-8")).encode("utf-8")
            target = ASSETS_DIR / local_path(package, version, member.removeprefix("package/"))
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            written += len(data)
    print(f"{package}@{version}: {len(paths)} files + licence, {written:,} bytes")
    return written


def main() -> None:
    wanted: dict[tuple[str, str], set[str]] = {}
    for asset in ASSETS:
        wanted.setdefault((asset.package, asset.version), set()).add(asset.path)
    for key, paths in EXTRA_FILES.items():
        wanted.setdefault(key, set()).update(paths)
    total = sum(fetch(package, version, paths) for (package, version), paths in sorted(wanted.items()))
    print(f"total {total:,} bytes under {ASSETS_DIR}")


if __name__ == "__main__":
    main()
