"""Great Expectations' Data Docs, made to work offline: GX's page templates load jQuery, Bootstrap,
bootstrap-table, Popper, Font Awesome, Vega and a datepicker from CDNs, and the index's table of
validation results is built by that JavaScript, so on a cluster without network the index is empty.
`vendor_site` copies the copies shipped in dataprep/data_docs_assets/ (fetched once from the npm
registry by dataprep/data_docs_assets/fetch.py, with their licences) into the site's static/vendor/
and rewrites every CDN link in the site's HTML to a relative path."""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

ASSETS_DIR = Path(__file__).with_name("data_docs_assets")
VENDOR = "static/vendor"  # inside the site


@dataclass(frozen=True)
class Asset:
    url: str  # exactly as GX's templates write it
    package: str  # on the npm registry
    version: str  # the version GX asks for; for vega@5 and the like the newest of that major on the registry
    path: str  # inside the package

    @property
    def local(self) -> str:
        """Where it lies under data_docs_assets/ and under the site's static/vendor/."""
        return local_path(self.package, self.version, self.path)


def local_path(package: str, version: str, path: str) -> str:
    """<name>-<version>/<path> less a leading dist/ or build/ (which .gitignore keeps out of git)."""
    return f"{package.split('/')[-1]}-{version}/{re.sub(r'^(dist|build)/', '', path)}"


def _assets(rows: str) -> tuple[Asset, ...]:
    return tuple(Asset(*row.split()) for row in rows.strip().splitlines())


# The CDN links of great_expectations 1.x's render/view/templates (`grep -rhoE 'https://[^"]+'` there), and
# the file each is served from (bootstrap-dark's: the package's minified copy of the same CSS, 153 kB, not 884).
ASSETS = _assets("""
https://code.jquery.com/jquery-3.7.1.min.js jquery 3.7.1 dist/jquery.min.js
https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js popper.js 1.12.9 dist/umd/popper.min.js
https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css bootstrap 4.3.1 dist/css/bootstrap.min.css
https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js bootstrap 4.3.1 dist/js/bootstrap.min.js
https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css @forevolve/bootstrap-dark 1.1.0 dist/css/bootstrap-prefers-dark.min.css
https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css bootstrap-table 1.19.1 dist/bootstrap-table.min.css
https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js bootstrap-table 1.19.1 dist/bootstrap-table.min.js
https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js bootstrap-table 1.19.1 dist/extensions/filter-control/bootstrap-table-filter-control.min.js
https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css bootstrap-table 1.19.0 dist/extensions/filter-control/bootstrap-table-filter-control.css
https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css bootstrap-table 1.19.0 dist/extensions/filter-control/bootstrap-table-filter-control.min.css
https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css bootstrap-datepicker 1.9.0 dist/css/bootstrap-datepicker.min.css
https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js bootstrap-datepicker 1.9.0 dist/js/bootstrap-datepicker.min.js
https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css @fortawesome/fontawesome-free 6.6.0 css/all.min.css
https://cdn.jsdelivr.net/npm/vega@5 vega 5.33.1 build/vega.min.js
https://cdn.jsdelivr.net/npm/vega-lite@5 vega-lite 5.23.0 build/vega-lite.min.js
https://cdn.jsdelivr.net/npm/vega-embed@6 vega-embed 6.29.0 build/vega-embed.min.js
""")
# Files the assets load themselves (Font Awesome's CSS: its webfonts, woff2 only; fetch.py drops the .ttf).
EXTRA_FILES = {("@fortawesome/fontawesome-free", "6.6.0"): (
    "webfonts/fa-brands-400.woff2", "webfonts/fa-regular-400.woff2", "webfonts/fa-solid-900.woff2",
    "webfonts/fa-v4compatibility.woff2")}

# GX's own images on its S3 bucket, its logo (logo-long.png, and full_logo_dark.png for a dark theme): the
# copy of logo-long.png GX writes into the site's static/images/ stands in for both.
_GX_IMAGES = re.compile(r"https://great-expectations-web-assets\.s3[\w.-]*\.amazonaws\.com/[\w.-]+(\?[^\"')\s]*)?")
_GX_IMAGE = "logo-long.png"
# A remote asset a page loads: script or img src, a stylesheet's href, a CSS url(); links (<a href>) are not assets.
_REMOTE = re.compile(r"""<(?:script|img|source|iframe)\b[^>]*?\bsrc\s*=\s*["']?(https?:)?//[^"'\s>]+"""
                     r"""|<link\b[^>]*?\bhref\s*=\s*["']?(https?:)?//[^"'\s>]+"""
                     r"""|url\(\s*["']?(https?:)?//[^"')\s]+""", re.I)


def remote_asset_links(html: str) -> list[str]:
    """The remote assets a page still loads (`<link href>` of any rel: stylesheets, icons, preloads)."""
    return [m.group(0) for m in _REMOTE.finditer(html)]


def _rewrite(html: str, prefix: str) -> str:
    """`prefix`: the site root relative to the page ('' for index.html, '../../' two levels down)."""
    for asset in ASSETS:
        local = f"{prefix}{VENDOR}/{asset.local}"
        for quote in "\"'":
            html = html.replace(f"{quote}{asset.url}{quote}", f"{quote}{local}{quote}")

    return _GX_IMAGES.sub(f"{prefix}static/images/{_GX_IMAGE}", html)


def _copy_assets(source, target: Path) -> None:
    """Copy the assets file by file through importlib.resources: under spark-submit --py-files the dataprep
    package, and its assets, are inside clover.zip, where no directory can be copied with shutil."""
    target.mkdir(parents=True, exist_ok=True)
    for item in source.iterdir():
        if item.is_dir():
            if item.name != "__pycache__":
                _copy_assets(item, target / item.name)
        elif not item.name.endswith((".py", ".pyc")) and item.name != "README.md":
            (target / item.name).write_bytes(item.read_bytes())


def vendor_site(site_dir: str) -> list[str]:
    """Copy the vendored assets into the local Data Docs site at `site_dir` and point every page at them.
    Returns the remote asset links left (a GX upgrade's new CDN link), each also warned about."""
    _copy_assets(resources.files("dataprep") / ASSETS_DIR.name, Path(site_dir) / VENDOR)
    left: list[str] = []
    for page in Path(site_dir).rglob("*.html"):
        depth = len(page.relative_to(site_dir).parts) - 1
        html = page.read_text(encoding="utf-8")
        rewritten = _rewrite(html, "../" * depth)
        if rewritten != html:
            page.write_text(rewritten, encoding="utf-8")
        left += [f"{page.relative_to(site_dir)}: {link}" for link in remote_asset_links(rewritten)]
    for link in left:
        warnings.warn(f"Data Docs page loads a remote asset Clover does not vendor (add it to "
                      f"dataprep.data_docs.ASSETS): {link}", stacklevel=2)
    return left
