"""`clover inspect`: the report renders in headless Chromium, its evidence is the scoring code's, its
what-if counts equal a curate re-run, and hostile documents stay text."""

import copy
import html
import json
import re
import shutil
import subprocess

import polars as pl
import pytest

from dataprep.curate import CurateConfig, run_curate
from jobs.inspection import FACTORS, CurateView, apply_sets, build_report, funnel_counts, main, whatif
from jobs.report_html import esc
from quality.document import DocumentView
from quality.evidence import evidence, mask_spans
from quality.repetition import repeated_ngram_mask
from schemas.config import ConfigError, load_config
from schemas.sample import write_sample

SPAM = "buy cheap pills now at the best online store today "
PROSE = ("The river runs to the sea and the town grew with it. People of the valley have kept the old road. "
         "It is said that the bridge was built with stone from the hills. The market opens at dawn. "
         "Children walk to the school by the mill and the fields. ")
# Repetition rules that Gopher checks first are off, so repetitive documents reach repeated_ngram_frac.
SETTINGS = {"spark.partitions": 2, "thresholds": {f"gopher_{kind}": None for kind in (
    *(f"dup_{n}gram_char_frac" for n in range(5, 11)), *(f"top_{n}gram_char_frac" for n in (2, 3, 4)))}}


def _curate(spark, corpus, out, overrides=None) -> dict:
    cfg = load_config(CurateConfig, None, {**copy.deepcopy(SETTINGS), **(overrides or {})})  # the loader edits dicts
    return json.loads(run_curate(spark, [str(corpus)], str(out), cfg, validate=False).to_json())


@pytest.fixture(scope="module")
def curated(spark, tmp_path_factory):
    corpus = tmp_path_factory.mktemp("inspect-corpus")
    write_sample(str(corpus), 200)
    hostile = [
        {"id": "spam-1", "text": PROSE + SPAM * 5 + "End."},
        {"id": "spam-2", "text": PROSE.upper() + SPAM * 6 + "Done."},
        {"id": "spam-3", "text": SPAM * 4 + PROSE + SPAM * 3 + "Fin."},
        {"id": "hostile", "text": "<script>alert(1)</script> </textarea><b>bold</b> too short",
         "source": "src\x07<i>x</i>"},
    ]
    lines = [json.dumps(r) for r in hostile] + ['{"id": "broken<script>alert(2)</script>\x01', ""]
    (corpus / "hostile.jsonl").write_text("\n".join(lines), encoding="utf-8")
    out = tmp_path_factory.mktemp("inspect") / "curated"
    return corpus, out, _curate(spark, corpus, out)


def _dom(report_html: str, tmp_path) -> str:
    """The DOM of the report as headless Chromium builds it (no network)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (.ci/run installs it)")
    page = tmp_path / "report.html"
    page.write_text(report_html, encoding="utf-8")
    result = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                             "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert "</html>" in result.stdout, result.stderr[-2000:]
    return result.stdout


def _samples(dom: str) -> dict[str, list[str]]:
    """reason -> the sample blocks' inner HTML."""
    found: dict[str, list[str]] = {}
    for reason, body in re.findall(r'<div class="sample" data-reason="([^"]+)">(.*?)</div></div>', dom, re.S):
        found.setdefault(reason, []).append(body)
    return found


def test_report_renders_with_every_section_histogram_and_example(curated, tmp_path):
    _, out, report = curated
    dom = _dom(build_report(str(out), samples=2, seed=3), tmp_path)
    for section in ("funnel", "removals", "histograms", "whatif", "samples", "quarantine"):
        assert f'<section id="{section}">' in dom
    figures = re.findall(r'<figure class="hist" data-score="([^"]+)">(.*?)</figure>', dom, re.S)
    assert {name for name, _ in figures} == set(CurateView.open(str(out)).order)
    assert all('<rect class="kept"' in body or '<rect class="rejected"' in body for _, body in figures)
    samples = _samples(dom)
    assert {reason: len(blocks) for reason, blocks in samples.items()} == {
        reason: min(2, count) for reason, count in report["removed"].items()}
    assert dom.count("<tr>", dom.index('<table class="quarantine">')) == 1 + sum(report["quarantined"].values())
    assert "repeated_ngram_frac" in samples


def test_repetition_highlights_are_the_repeated_ngrams_of_quality_repetition(curated, tmp_path):
    _, out, _ = curated
    dom = _dom(build_report(str(out), samples=5), tmp_path)
    texts = dict(pl.read_parquet(str(out / "rejected" / "*.parquet")).select("id", "text").iter_rows())
    blocks = _samples(dom)["repeated_ngram_frac"]
    assert len(blocks) == 3
    for block in blocks:
        text = texts[html.unescape(re.search(r"id <code>(.*?)</code>", block).group(1))]
        marked = [html.unescape(m) for m in re.findall(r'<mark class="repeat">(.*?)</mark>', block, re.S)]
        mask = repeated_ngram_mask(DocumentView(text).token_ids[0], 10)
        assert mask.any()
        assert marked == [text[s.start:s.end] for s in mask_spans(text, mask, "repeat")]
        assert " ".join(marked).split() == [t for t, m in zip(text.split(), mask) if m]


@pytest.mark.parametrize("looser", [True, False])
def test_whatif_and_set_equal_a_curate_rerun(spark, curated, tmp_path, looser):
    """The first bound whose ±25% changes what is kept (more kept when looser, fewer when stricter): the
    sample's docstrings depend on what the process imported, so the rule is found, not named."""
    corpus, out, _ = curated
    view = CurateView.open(str(out))
    rows = list(whatif(view))
    assert all(kept[FACTORS.index(1.0)] == view.report["output"] for *_, kept in rows)
    factor_of = {("max", True): 1.25, ("max", False): 0.75, ("min", True): 0.75, ("min", False): 1.25}
    rule, side, bound, kept = next(
        (rule, side, bound, kept) for rule, side, bound, kept in rows
        if (kept[FACTORS.index(factor_of[side, looser])] > view.report["output"]) == looser
        and kept[FACTORS.index(factor_of[side, looser])] != view.report["output"])
    factor = factor_of[side, looser]
    setting = f"thresholds.{rule}.{side}"
    rerun = _curate(spark, corpus, tmp_path / "rerun", {setting: bound * factor})
    assert kept[FACTORS.index(factor)] == rerun["output"]
    counts = funnel_counts(view, apply_sets(view.thresholds, [f"{setting}={bound * factor}"], view.order))
    assert counts.pop(None) == rerun["output"]
    assert counts == rerun["removed"]


def test_set_accepts_only_thresholds():
    known = ["gopher_word_count"]
    with pytest.raises(ConfigError, match="re-run"):
        apply_sets({}, ["signals.repeated_ngram_n=5"], known)
    with pytest.raises(ConfigError, match="known score"):
        apply_sets({}, ["thresholds.nope.max=1"], known)
    assert apply_sets({}, ["thresholds.gopher_word_count.max=10"], known)["gopher_word_count"].max == 10.0


def test_hostile_documents_stay_text(curated, tmp_path):
    _, out, _ = curated
    report_html = build_report(str(out), samples=50)
    assert "<script" not in report_html.lower().replace("&lt;script", "")
    assert "</textarea>" not in report_html and "\x07" not in report_html and "\x01" not in report_html
    dom = _dom(report_html, tmp_path)
    assert "<script" not in dom and "<textarea" not in dom and "<i>x</i>" not in dom
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom and "&lt;/textarea&gt;" in dom
    assert esc("a\x00b\x9f</textarea>") == 'a<span class="ctl">\\x00</span>b<span class="ctl">\\x9f</span>&lt;/textarea&gt;'


def test_cli_writes_one_offline_file(curated, tmp_path):
    _, out, _ = curated
    target = tmp_path / "r.html"
    assert main([str(out), "--out", str(target), "--samples", "1"]) == 0
    text = target.read_text(encoding="utf-8")
    assert not re.search(r"(src|href)=\"(https?:)?//", text)
    assert main([str(out), "--out", str(target), "--set", "signals.c4.min_words_per_line=3"]) == 2


def test_evidence_marks_missing_stop_word_rule_tokens():
    spans = evidence("12 34 the 56 and", "gopher_alpha_word_frac", 10, load_config(CurateConfig).signals.c4)
    assert [(s.start, s.end, s.kind) for s in spans] == [(0, 5, "fail"), (10, 12, "fail")]
