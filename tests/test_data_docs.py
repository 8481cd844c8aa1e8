"""Data Docs work offline (issue #18): the CDN assets GX's pages load are shipped in dataprep/data_docs_assets/
and every built site links them by relative path; headless Chromium with the network off renders the
index's table of validation runs and a validation page's expectation rows, both built by that JavaScript."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from dataprep.data_docs import ASSETS, ASSETS_DIR, EXTRA_FILES, VENDOR, local_path, remote_asset_links
from dataprep.data_docs import vendor_site as vendor
from dataprep.validate import run_suites
from jobs.inspect_data import href
from jobs.inspection import build_report
from quality import expectations as suites

# Suite -> how many expectations it holds; one checkpoint run, so one validation page, per suite, and one
# more for the failing checks of a failing suite, with examples of their unexpected values.
SUITES = {"documents": 3, "duplicates": 2}
FAILING = {"documents/unexpected": 1}


@pytest.fixture(scope="module")
def site(spark, tmp_path_factory) -> Path:
    documents = spark.createDataFrame([("a", "h1"), ("b", "h2"), ("c", "h2")], ["id", "exact_hash"])
    duplicates = spark.createDataFrame([(True, "exact"), (True, "near")], ["kept_found", "kind"])
    docs = tmp_path_factory.mktemp("data_docs") / "data_docs"
    result = run_suites({"documents": (documents, suites.dedup_documents_suite()),
                         "duplicates": (duplicates, suites.duplicates_suite())}, str(docs), "dedup")
    assert not result.success  # exact_hash h2 twice: a failed expectation shows on the pages too
    assert Path(result.data_docs) == docs / "index.html"
    return docs


def _dom(page: Path) -> str:
    """The DOM headless Chromium builds for `page` with every remote fetch failing (a proxy nobody listens on)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (.ci/run installs it)")
    result = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                             "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
                             "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
                            capture_output=True, text=True, timeout=120)
    assert "</html>" in result.stdout, result.stderr[-2000:]
    return result.stdout


def _table_rows(dom: str, table: str) -> list[str]:
    """The rows bootstrap-table rendered (it numbers them data-index) in the <table> whose attributes match."""
    found = re.search(rf'<table\b[^>]*{table}[^>]*>(.*?)</table>', dom, re.S)
    assert found, table
    return re.findall(r'<tr\b[^>]*\bdata-index="\d+"[^>]*>(.*?)</tr>', found.group(1), re.S)


def test_every_asset_is_shipped_with_its_licence():
    for asset in ASSETS:
        assert (ASSETS_DIR / asset.local).is_file(), asset
    for (package, version), paths in EXTRA_FILES.items():
        assert all((ASSETS_DIR / local_path(package, version, p)).is_file() for p in paths)
    for folder in {asset.local.split("/")[0] for asset in ASSETS}:
        assert list((ASSETS_DIR / folder).glob("LICENSE*")), folder
    assert "format(\"truetype\")" not in (ASSETS_DIR / "fontawesome-free-6.6.0/css/all.min.css").read_text()


def test_no_remote_asset_is_left_and_every_local_link_resolves(site):
    pages = list(site.rglob("*.html"))
    assert len(pages) == 1 + 2 * len(SUITES | FAILING)  # the index, an expectation and a validation page per suite
    for page in pages:
        html = page.read_text(encoding="utf-8")
        assert remote_asset_links(html) == [], page
        links = re.findall(rf'(?:src|href)="([^"]*{VENDOR}/[^"]+)"', html)
        assert len(links) == len(ASSETS) - 1, page  # all but one of the two filter-control CSS spellings
        assert all((page.parent / link).resolve().is_file() for link in links), page


def test_index_renders_one_row_per_validation_run_offline(site):
    raw = (site / "index.html").read_text(encoding="utf-8")
    assert not _table_rows(raw.replace("<table\n", "<table "), "ge-index-page-validation-results-table")
    dom = _dom(site / "index.html")
    rows = _table_rows(dom, "ge-index-page-validation-results-table")
    assert len(rows) == len(SUITES | FAILING)  # built from the page's data by bootstrap-table, loaded from static/vendor
    links = re.findall(r'<tr\b[^>]*data-href="(validations/[^"]+)"', dom)
    assert sorted(link.split("/__none__/")[0].split("/", 2)[2] for link in links) == sorted(SUITES | FAILING)
    assert 'class="bootstrap-table bootstrap4"' in dom and "search-input" in dom


@pytest.mark.parametrize("suite", sorted(SUITES | FAILING))
def test_validation_page_renders_its_expectation_rows_offline(site, suite):
    (page,) = (site / "validations" / "dedup" / suite / "__none__").rglob("*.html")
    dom = _dom(page)
    tables = re.findall(r'<table\b[^>]*data-search="True"[^>]*>(.*?)</table>', dom, re.S)
    rows = [row for table in tables for row in re.findall(r'<tr\b[^>]*\bdata-index="\d+"', table)]
    assert len(rows) == (SUITES | FAILING)[suite]
    if suite.startswith("documents"):
        assert "fa-times" in dom  # the failed uniqueness expectation's icon
    if suite in FAILING:
        assert ">h2<" in dom  # the duplicated value, as an example


def test_an_unknown_remote_asset_is_reported(tmp_path):
    (tmp_path / "deep").mkdir()
    page = tmp_path / "deep" / "page.html"
    page.write_text(f'<script src="{ASSETS[0].url}"></script><script src="https://cdn.example/new.js"></script>'
                    '<link rel="stylesheet" href="https://cdn.example/new.css"><a href="https://example.org">x</a>')
    with pytest.warns(UserWarning) as caught:
        left = vendor(str(tmp_path))
    assert len(left) == 2 and all(link.startswith("deep/page.html: ") for link in left)
    assert sorted(str(w.message).rsplit("/", 1)[1] for w in caught) == ["new.css", "new.js"]
    assert f'src="../{VENDOR}/{ASSETS[0].local}"' in page.read_text()
    assert (tmp_path / VENDOR / ASSETS[0].local).is_file()


def test_inspect_links_each_outputs_data_docs(site, tmp_path):
    stage = tmp_path / "demo" / "checked"  # a stage output whose report.json records its validation and Data Docs
    shutil.copytree(site, stage / "data_docs")
    (stage / "report.json").write_text(json.dumps({"stage": "checked", "input": 3, "output": 3, "validation": {
        "success": False, "expectations": 5, "failed": [{}], "data_docs": "data_docs/index.html"}}))
    index = stage / "data_docs" / "index.html"
    out = tmp_path / "demo" / "report.html"  # clover inspect DIR --out DIR/report.html: a page per output
    html = build_report(str(out.parent), out=str(out))
    assert re.findall(r'<a class="data-docs" href="([^"]+)"', html) == ["checked/data_docs/index.html"]
    assert "failed: 1 of 5 expectations" in html
    single = build_report(str(stage), out=str(tmp_path / "elsewhere" / "report.html"))
    assert 'href="../demo/checked/data_docs/index.html"' in single
    for absolute in (build_report(str(stage)), build_report(str(stage), out="s3://bucket/report.html")):
        assert f'<a class="data-docs" href="{index.as_uri()}"' in absolute  # no --out, or another filesystem


def test_data_docs_links_are_relative_on_one_filesystem():
    assert href("s3://b/runs/x/data_docs/index.html", "s3://b/runs/report.html") == "x/data_docs/index.html"
    assert href("s3://b/x/data_docs/index.html", "s3://other/report.html") == "s3://b/x/data_docs/index.html"
    assert href("/data/x/data_docs/index.html", "s3://b/report.html") == "file:///data/x/data_docs/index.html"
    assert href("/data/x/data docs/index.html", "/data/report.html") == "x/data%20docs/index.html"
