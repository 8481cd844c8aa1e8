"""`clover inspect`: the report renders in headless Chromium, its evidence is the scoring code's, its
what-if counts equal a curate re-run, and hostile documents stay text; dedup, token-shard and training-run
pages and a whole directory's index are built from small real outputs."""

import copy
import html
import json
import random
import re
import shutil
import subprocess

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dataprep.curate import CurateConfig, run_curate
from jobs.inspection import (
    FACTORS,
    UNSCORED,
    CurateView,
    _sample_html,
    apply_sets,
    build_report,
    c4_section,
    funnel_counts,
    main,
    read_before_cleaning,
    scored_before_cleaning_ids,
    unscored_rows,
    whatif,
)
from jobs.report_html import esc
from quality import presets
from quality.document import DocumentView
from quality.evidence import evidence, has_highlight, line_pass, mask_spans, missing_stop_words
from quality.minhash import ShingleHasher, jaccard
from quality.presets import PRESETS
from quality.repetition import repeated_ngram_mask
from quality.signals import SCORE_RANGES, DocumentScorer, SignalConfig
from quality.text import normalize_text, spacy_words
from schemas.config import ConfigError, load_config
from schemas.sample import edit_words, stdlib_docstrings, write_sample
from tests.token_shards import docstring_tokenizer

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
        # fails only gopher_word_count.min (42 words): a looser bound keeps it, whatever the sample holds
        {"id": "short-prose", "text": "The river runs to the sea. People of the valley have kept the old road. It "
         "is said that the bridge was built with stone. The market opens at dawn. Children walk to the school by "
         "the mill and the fields."},
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


def test_early_exit_keeps_the_same_documents_and_inspect_says_what_it_cannot_re_threshold(spark, curated, tmp_path):
    """curate's early_exit: the same kept documents and reasons, rejected rows scored up to their reason only;
    inspect's funnel is exact under the thresholds curate ran, and a proposal over a score it did not compute
    counts those rows apart (`short-prose` fails only gopher_word_count.min, before C4's rules)."""
    corpus, out, report = curated
    early = _curate(spark, corpus, tmp_path / "early", {"early_exit": True})
    assert (early["output"], early["removed"]) == (report["output"], report["removed"])
    full_view, view = CurateView.open(str(out)), CurateView.open(str(tmp_path / "early"))
    full, partial = (v.rows.sort("id").collect() for v in (full_view, view))
    assert partial["reason"].to_list() == full["reason"].to_list()
    assert partial.filter(pl.col("reason").is_null()).equals(full.filter(pl.col("reason").is_null()))
    for row, scored in zip(full.iter_rows(named=True), partial.iter_rows(named=True)):
        assert all(scored[name] in (None, row[name]) for name in view.order)
    assert unscored_rows(full_view) == 0 and 0 < unscored_rows(view) <= sum(report["removed"].values())
    assert funnel_counts(view, view.thresholds) == funnel_counts(full_view, full_view.thresholds)
    proposal = apply_sets(view.thresholds, ["thresholds.gopher_word_count.min=40"], view.order)
    counts, truth = funnel_counts(view, proposal), funnel_counts(full_view, proposal)
    assert counts[UNSCORED] >= 1 and counts[None] <= truth[None] <= counts[None] + counts[UNSCORED]
    page = build_report(str(tmp_path / "early"), samples=1, sets=["thresholds.gopher_word_count.min=40"])
    assert f"{counts[UNSCORED]:,} documents that curate's <code>early_exit</code> stopped scoring" in page
    assert f"{unscored_rows(view):,} rejected documents were scored only up to their reason" in page


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
    spans = evidence("12 34 the 56 and", "gopher_alpha_word_frac", load_config(CurateConfig).signals)
    assert [(s.start, s.end, s.kind) for s in spans] == [(0, 5, "fail"), (10, 12, "fail")]


# ---- evidence under the fineweb and redpajama presets: each text is one where Clover's definition disagrees

def _marks(text: str, reason: str, preset: str, kind: str | None = None) -> list[str]:
    """The marked (not struck) substrings `evidence` finds for `reason` under `preset`."""
    spans = evidence(text, reason, SignalConfig(preset=preset))
    return [text[s.start:s.end] for s in spans if s.kind != "removed" and kind in (None, s.kind)]


def _score(text: str, reason: str, preset: str) -> float:
    return DocumentScorer(SignalConfig(preset=preset))(normalize_text(text))[1][reason]


def test_fineweb_duplicate_ngrams_are_the_later_copies_datatrove_counts_on_spacy_words():
    text = "one two three four five. one two three four five! six"  # whitespace tokens: "five." vs "five!"
    assert _marks(text, "gopher_dup_5gram_char_frac", "clover") == []
    marked = _marks(text, "gopher_dup_5gram_char_frac", "fineweb")
    assert marked == ["one two three four five"]
    assert evidence(text, "gopher_dup_5gram_char_frac", SignalConfig(preset="fineweb"))[0].start == 25  # the copy
    chars = sum(len(m.replace(" ", "")) for m in marked)  # datatrove joins an n-gram's words without separator
    assert _score(text, "gopher_dup_5gram_char_frac", "fineweb") == pytest.approx(chars / len(text))


def test_fineweb_top_ngram_counts_punctuation_words_and_every_occurrence():
    text = "go, go, go and on"  # whitespace 2-grams ("go,", "go,") and ("go,", "go") each occur once
    assert _marks(text, "gopher_top_2gram_char_frac", "clover") == []
    assert _marks(text, "gopher_top_2gram_char_frac", "fineweb") == ["go, go,"]  # ("go", ","), seen first, twice
    starts = presets.fineweb_top_ngram_starts(spacy_words(text), 2)
    assert list(starts) == [0, 2]
    assert _score(text, "gopher_top_2gram_char_frac", "fineweb") == pytest.approx(len(starts) * len("go ,") / len(text))


def test_fineweb_duplicate_lines_and_paragraphs_are_later_copies_split_as_datatrove_splits():
    text = "alpha line here\nbeta line here\nalpha line here\n\ngamma"
    assert _marks(text, "gopher_dup_line_char_frac", "clover") == ["alpha line here"] * 2  # every occurrence
    assert _marks(text, "gopher_dup_line_char_frac", "fineweb") == ["alpha line here"]
    assert evidence(text, "gopher_dup_line_char_frac", SignalConfig(preset="fineweb"))[0].start == 31
    assert _score(text, "gopher_dup_line_char_frac", "fineweb") == pytest.approx(15 / len(text))
    paragraphs = "one more line\ntwo more line\n\nthree\n\none more line\ntwo more line"
    assert _marks(paragraphs, "gopher_dup_para_char_frac", "fineweb") == ["one more line\ntwo more line"]
    assert _marks(paragraphs, "gopher_dup_para_char_frac", "clover") == ["one more line", "two more line"] * 2
    assert _score(paragraphs, "gopher_dup_para_char_frac", "fineweb") == pytest.approx(27 / len(paragraphs))


def test_fineweb_word_rules_use_spacy_words_and_case_sensitive_stop_words():
    text = "hello!! world and more words"  # whitespace: "hello!!" is alphabetic once punctuation is stripped
    assert _marks(text, "gopher_alpha_word_frac", "clover") == []
    assert _marks(text, "gopher_alpha_word_frac", "fineweb") == ["!!"]
    assert _score(text, "gopher_alpha_word_frac", "fineweb") == pytest.approx(1 - 2 / 7)  # 7 spaCy words
    text = "The cat and the dog sat"
    assert _marks(text, "gopher_stop_words", "clover") == ["The", "and the"]
    assert _marks(text, "gopher_stop_words", "fineweb") == ["and the"]
    assert _score(text, "gopher_stop_words", "fineweb") == 2
    assert missing_stop_words("The cat", "fineweb") == sorted(presets.STOP_WORDS)
    assert "the" not in missing_stop_words("The cat", "clover")


def test_c4_lines_struck_are_the_presets_line_pass():
    text = "A full sentence is here.\nShort line.\nRead our privacy policy now please.\nThe end of it all."
    struck = {preset: [text[s.start:s.end] for s in evidence(text, "c4_sentence_count", SignalConfig(preset=preset))]
              for preset in ("clover", "fineweb", "redpajama")}
    assert struck == {"clover": ["Read our privacy policy now please."],  # no min words, a policy phrase
                      "fineweb": ["Short line.", "Read our privacy policy now please."],  # 3 words at least
                      "redpajama": ["Short line."]}  # RPv2 has no policy-phrase signal
    for preset in ("fineweb", "redpajama"):  # a line struck is a line the preset's cleaning removes
        assert _score(text, "c4_removed_line_frac", preset) == pytest.approx(len(struck[preset]) / 4)


def test_redpajama_repetition_marks_its_normalized_words():
    text = "One two three four five. x one two three four five!"  # punctuation deleted, lowercased
    assert _marks(text, "gopher_dup_5gram_char_frac", "clover") == []
    assert _marks(text, "gopher_dup_5gram_char_frac", "redpajama") == ["One two three four five.",
                                                                        "one two three four five!"]  # first included
    assert _score(text, "gopher_dup_5gram_char_frac", "redpajama") == pytest.approx(38 / 39)
    text = "Go, go. GO! stop"
    assert _marks(text, "gopher_top_2gram_char_frac", "clover") == []
    assert _marks(text, "gopher_top_2gram_char_frac", "redpajama") == ["Go, go. GO!"]  # ("go", "go") at 0 and 1
    assert _score(text, "gopher_top_2gram_char_frac", "redpajama") == pytest.approx(2 * 4 / 10)


def test_redpajama_word_rules_use_wordpunct_words():
    text = "ñ ok 42 don't"  # raw words: ñ ok 42 don ' t; a letter is an ASCII letter
    assert _marks(text, "gopher_alpha_word_frac", "clover") == ["42"]
    assert _marks(text, "gopher_alpha_word_frac", "redpajama") == ["ñ", "42", "'"]
    assert _score(text, "gopher_alpha_word_frac", "redpajama") == pytest.approx(3 / 6)
    text = "The cat is here"  # stopwords-json matched case-sensitively among raw words
    assert _marks(text, "gopher_stop_words", "clover") == ["The"]
    assert _marks(text, "gopher_stop_words", "redpajama") == ["is here"]
    assert _score(text, "gopher_stop_words", "redpajama") == pytest.approx(2 / 4)


def test_reasons_without_a_span_mark_nothing():
    text = "one two three four five. one two three four five! six"
    assert not has_highlight("gopher_word_count") and has_highlight("gopher_dup_5gram_char_frac")
    for preset in PRESETS:
        assert _marks(text, "gopher_word_count", preset) == []


def _fineweb_view(path, inputs: list[str]) -> CurateView:
    """A curate output's view as inspect opens it, recorded with the fineweb preset (no Spark run)."""
    report = {"config": {"signals": {"preset": "fineweb"}, "thresholds": {}}, "inputs": inputs}
    return CurateView(str(path), report, list(SCORE_RANGES), {}, pl.LazyFrame())


def _read_scored(view: CurateView, row: dict):
    return read_before_cleaning(view, scored_before_cleaning_ids(view, pl.DataFrame([row])), 0)


def test_a_rule_scored_before_cleaning_is_marked_on_the_input_text(tmp_path):
    """fineweb scores Gopher's rules before C4 line cleaning: the report marks the input text (read again),
    only when the preset's line pass cleans it to the stored text, and says so when it cannot."""
    original = "Menu\nalpha line is here.\nbeta line is here.\nalpha line is here."  # "Menu": under 3 words
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"id": "d", "text": original}) + "\n", encoding="utf-8")
    view = _fineweb_view(tmp_path, [str(source)])
    stored = line_pass(normalize_text(original), view.signal_config)[0]
    assert "Menu" not in stored
    row = {"id": "d", "source": "s", "text": stored, "reason": "gopher_dup_line_char_frac", "c4_removed_line_frac": 0.25}
    block = _sample_html(view, row, None, _read_scored(view, row))
    assert '<del class="removed">Menu</del>' in block and block.count('<mark class="repeat">') == 1
    assert block.index('<mark class="repeat">') > block.index("beta line")  # the later copy
    assert "on the text before C4 line cleaning: that text is shown" in block
    source.write_text(json.dumps({"id": "d", "text": original + "\na line added to the input since"}) + "\n", encoding="utf-8")
    block = _sample_html(view, row, None, _read_scored(view, row))
    assert "<mark" not in block and "nothing is marked" in block
    counted = {**row, "reason": "gopher_word_count"}
    assert "No span stands for <code>gopher_word_count</code>" in _sample_html(view, counted, None, None)
    stopped = {**row, "text": normalize_text(original), "c4_removed_line_frac": None}  # early exit before C4
    assert not scored_before_cleaning_ids(view, pl.DataFrame([stopped]))
    block = _sample_html(view, stopped, None, None)
    assert '<del class="removed">Menu</del>' in block and block.count('<mark class="repeat">') == 1
    assert "nothing is marked" not in block and "read again" not in block


def test_lines_c4_cleaning_removed_follow_the_presets_line_pass(tmp_path):
    """Under fineweb the section strikes the lines datatrove's C4 pass drops (here a line of two words, which
    clover's c4_clean keeps: its min_words_per_line is unset), on the input text read again."""
    original = "Two words\nA full sentence of several words here.\nAnother full sentence of words here."
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"id": "d", "text": original}) + "\n", encoding="utf-8")
    view = _fineweb_view(tmp_path, [str(source)])
    stored, removed = line_pass(normalize_text(original), view.signal_config)
    assert removed == 1 / 3 and line_pass(original, SignalConfig())[1] == 0.0
    (tmp_path / "documents").mkdir()
    pq.write_table(pa.table({"id": ["d"], "source": ["s"], "text": [stored], "c4_removed_line_frac": [removed]}),
                   tmp_path / "documents" / "part-00000.parquet")
    html = c4_section(view, 1, 0, read_before_cleaning(view, set(), 10))
    assert "quality.presets.fineweb_c4" in html and '<del class="removed">Two words</del>' in html
    assert html.count("<del") == 1 and 'data-same="true"' in html


def test_long_series_are_thinned_keeping_spikes_and_every_mark():
    from jobs.report_html import MAX_POINTS, Series, lines_svg, thin

    steps = list(range(1, 100_001))
    values = [1.0 + (50.0 if s == 77_777 else 0.0) + (s % 7) / 100 for s in steps]
    points = thin(list(zip(steps, values)))
    assert len(points) <= MAX_POINTS and (77_777, 51.0) in points and points == sorted(points)
    svg = lines_svg([Series("loss", steps, values, marks=[10, 77_777])], [(2.0, "clip", "clip 2")])
    path = re.search(r'<path class="series" data-label="loss" d="([^"]+)"', svg).group(1)
    assert path.count("L") == len(points) - 1 and svg.count('<circle class="mark"') == 2
    assert len(svg) < 60_000


# ---- C4 line cleaning: the removed lines, struck through

# (the line, whether C4 line cleaning with the paper's line rules drops it)
C4_LINES = [
    ("The river runs to the sea and the town grew with it over the years.", False),
    ("Please enable JavaScript to view the comments on this page.", True),  # "javascript"
    ("People of the valley have kept the old road for many long years.", False),
    ("Home | About | Contact", True),  # no terminal punctuation
    ("It is said that the bridge was built with stone from the hills.", False),
    ("Share", True),  # fewer than 3 words
    ("The market opens at dawn and it closes when the bell rings.", False),
    ("This site uses cookies to give you the best experience.", True),  # a policy phrase
    ("", None),
    ("The bridge was rebuilt in the year 1890 by the town.[1]", False),  # ends with "." once [1] is deleted
    ("History [edit]", True),  # one word once [edit] is deleted
    ("Children walk to the school by the mill and the fields each day.", False),
    ("Old maps show the road running north of the church and the inn.", False),
]
C4_SETTINGS = {"signals.c4.require_terminal_punct": True, "signals.c4.min_words_per_line": 3}


@pytest.fixture(scope="module")
def c4_corpus(tmp_path_factory):
    """Documents C4 line cleaning changes (kept, and rejected for its word count once cleaned), one it leaves
    alone, and one rejected whole by the lorem-ipsum rule."""
    corpus = tmp_path_factory.mktemp("inspect-c4-corpus")
    plain = [line for line, dropped in C4_LINES if dropped is False]
    docs = [
        {"id": "c4-changed", "text": "\n".join(line for line, _ in C4_LINES)},
        {"id": "c4-changed-too", "text": "Read our privacy policy before you go on\n" + "\n".join(plain[::-1])},
        {"id": "c4-short", "text": "Please enable JavaScript.\nThe river runs to the sea.[2]\nThe town is old."},
        {"id": "c4-plain", "text": "\n".join(plain)},
        {"id": "c4-lorem", "text": "\n".join([*plain, "Lorem ipsum dolor sit amet, consectetur adipiscing elit."])},
    ]
    (corpus / "c4.jsonl").write_text("\n".join(json.dumps(d) for d in docs) + "\n", encoding="utf-8")
    return corpus, {d["id"]: d["text"] for d in docs}


def _c4_blocks(dom: str) -> dict[str, tuple[str, list[str], str]]:
    """id -> (the text shown before cleaning, its struck lines, the block's HTML) of the C4 section."""
    found = {}
    for doc_id, body in re.findall(r'<div class="sample c4" data-id="([^"]+)">(.*?)</div></div>', dom, re.S):
        shown = body[body.index('<div class="doc">'):]
        struck = [html.unescape(m) for m in re.findall(r'<del class="removed">(.*?)</del>', shown, re.S)]
        found[html.unescape(doc_id)] = (html.unescape(re.sub(r"<[^>]+>", "", shown)), struck, body)
    return found


@pytest.mark.parametrize("cleaning", [True, False])
def test_lines_c4_cleaning_removed_are_struck_through(spark, c4_corpus, tmp_path, cleaning):
    """With cleaning on (curate stores the cleaned text) the text before cleaning is read again from the input; with
    it off the stored text is that text. Either way the struck lines are the ones quality.c4.c4_clean drops."""
    from quality.text import normalize_text

    corpus, texts = c4_corpus
    out = tmp_path / "curated"
    report = _curate(spark, corpus, out, {**C4_SETTINGS, "signals.c4.apply_line_cleaning": cleaning})
    assert report["removed"] == {"gopher_word_count": 1, "c4_lorem_ipsum": 1}
    stored = {r["id"]: r for r in pl.concat([pl.read_parquet(str(out / "documents" / "*.parquet")),
                                             pl.read_parquet(str(out / "rejected" / "*.parquet"))],
                                            how="diagonal_relaxed").iter_rows(named=True)}
    changed = {i for i, r in stored.items() if r["c4_removed_line_frac"] > 0}
    assert changed == {"c4-changed", "c4-changed-too", "c4-short"}
    dom = _dom(build_report(str(out), samples=5), tmp_path)
    assert '<section id="c4-lines">' in dom
    blocks = _c4_blocks(dom)
    assert set(blocks) == changed
    expected = {"c4-changed": [line for line, dropped in C4_LINES if dropped],
                "c4-changed-too": ["Read our privacy policy before you go on"],
                "c4-short": ["Please enable JavaScript."]}
    for doc_id, (shown, struck, body) in blocks.items():
        assert shown == normalize_text(texts[doc_id]) and struck == expected[doc_id]
        nonblank = sum(1 for line in shown.split("\n") if line.strip())  # no line here is only a citation marker
        assert len(struck) / nonblank == pytest.approx(stored[doc_id]["c4_removed_line_frac"])
        assert f'data-removed="{len(struck)}" data-same="true"' in body
        if cleaning:  # the unstruck lines, as curate cleans them, are the stored text
            assert stored[doc_id]["text"] != shown and "This input text does not clean" not in body
    assert "The bridge was rebuilt in the year 1890 by the town.[1]" not in blocks["c4-changed"][1]
    short = _samples(dom)["gopher_word_count"]
    assert len(short) == 1 and '<del class="removed">Please enable JavaScript.</del>' in short[0]
    assert "sea.[2]</del>" not in short[0]  # quality.c4.drop_line alone would strike it: c4_clean deletes [2] first
    assert ("Before C4 line cleaning" in short[0]) == cleaning  # else the stored text is the text before cleaning
    assert "<del" not in _samples(dom)["c4_lorem_ipsum"][0]
    if cleaning:  # the inputs moved: the report says so instead of guessing
        record = json.loads((out / "report.json").read_text())
        (out / "report.json").write_text(json.dumps({**record, "inputs": [str(tmp_path / "moved.jsonl")]}))
        report_html = build_report(str(out), samples=5)
        assert "Not shown: the inputs could not be read again (FileNotFoundError" in report_html
        assert "its text before cleaning is not among the first 0 input records read again" in report_html


# ---- dedup, tokens, runs, a directory of outputs

@pytest.fixture(scope="module")
def deduped(spark, tmp_path_factory):
    """Docstrings with exact copies and near copies (one cluster of five), deduplicated by the real stage."""
    from dataprep.dedup import DedupConfig, run_dedup

    root = tmp_path_factory.mktemp("inspect-dedup")
    rng = random.Random(7)
    base = [d for d in stdlib_docstrings() if len(d.split()) > 120][:10]
    rows = [(f"doc{i:02d}", t) for i, t in enumerate(base)]
    rows += [("exact-of-00", base[0] + "\n"), ("exact-of-01", base[1].upper())]
    rows += [(f"near-{k}-of-02", edit_words(base[2], 0.02, rng)) for k in range(4)]
    rows += [("near-of-03", edit_words(base[3], 0.03, rng))]
    pq.write_table(pa.table({"id": [r[0] for r in rows], "text": [r[1] for r in rows]}), root / "docs.parquet")
    out = root / "deduped"
    report = run_dedup(spark, str(root / "docs.parquet"), str(out), DedupConfig(), validate=False,
                       allow_unvalidated=True)
    return out, json.loads(report.to_json())


def _table(dom: str, cls: str) -> str:
    start = dom.index(f'<table class="{cls}">')
    return dom[start:dom.index("</table>", start)]


def _sections(dom: str) -> set[str]:
    return set(re.findall(r'<section id="([^"]+)"', dom))


def test_dedup_page_counts_clusters_and_pairs_with_the_dedup_jaccard(deduped, tmp_path):
    out, report = deduped
    dom = _dom(build_report(str(out), samples=10), tmp_path)
    assert {"counts", "clusters", "pairs", "quarantine"} <= _sections(dom)
    counts = dict(re.findall(r'<tr><td class="l">([^<]+)</td><td class="">([\d,]+)</td></tr>',
                             _table(dom, "dedup-counts")))
    assert int(counts["exact duplicates removed"]) == report["removed"]["exact_duplicate"]
    assert int(counts["near duplicates removed"]) == report["removed"]["near_duplicate"]
    assert '<rect class="kept"' in dom[dom.index('<figure class="cluster-sizes">'):]
    duplicates = pl.read_parquet(str(out / "duplicates" / "*.parquet"))
    assert _table(dom, "largest-clusters").count("<tr>") == 1 + duplicates["cluster_id"].n_unique()
    pairs = re.findall(r'<div class="pair-block" data-jaccard="([\d.]+)"><p>removed <code>([^<]+)</code>', dom)
    assert len(pairs) == report["removed"]["near_duplicate"] > 0
    texts = dict(pl.read_parquet(report["source"]).select("id", "text").iter_rows())
    kept = dict(duplicates.select("id", "kept_id").iter_rows())
    hasher = ShingleHasher(report["config"]["shingle_n"])
    for similarity, removed in pairs:
        expected = jaccard(hasher(texts[removed]), hasher(texts[kept[removed]]))
        assert float(similarity) == pytest.approx(expected, abs=1e-4) and expected >= report["config"]["threshold"]
    assert "<del>" in dom and "<ins>" in dom


SPAM_DOC = "call now to win a free prize and claim your reward today " * 40


@pytest.fixture(scope="module")
def tokens(spark, tmp_path_factory):
    """Docstrings and a few spam documents, tokenized into 64-token rows by the real stages."""
    from dataprep.tokenize_stage import TokenizeConfig, run_tokenize

    root = tmp_path_factory.mktemp("inspect-tokens")
    tokenizer = docstring_tokenizer(spark, root, vocab_size=600, docs=120)
    texts = stdlib_docstrings()[:120] + [SPAM_DOC] * 6
    pq.write_table(pa.table({"id": [f"t{i:03d}" for i in range(len(texts))], "text": texts}), root / "in.parquet")
    cfg = TokenizeConfig(seq_len=64, shard_bytes=20_000, row_group_rows=16)
    run_tokenize(spark, str(root / "in.parquet"), str(tokenizer), str(root / "tokens"), cfg, validate=False,
                 allow_unvalidated=True)
    return root / "tokens"


def test_tokens_page_documents_padding_top_tokens_and_gate(tokens, tmp_path):
    from training.trainer.data import MicroBatch
    from training.trainer.gate import batch_fraction

    dom = _dom(build_report(str(tokens), samples=3), tmp_path)
    assert {"tokens", "top-tokens", "gate", "quarantine"} <= _sections(dom)
    rows = pl.read_parquet(str(tokens / "shards" / "*.parquet"))
    manifest = json.loads((tokens / "manifest.json").read_text())
    summary = dict(re.findall(r'<tr><td class="l">([^<]+)</td><td class="">([^<]+)</td></tr>',
                              _table(dom, "token-summary")))
    assert int(summary["documents"].replace(",", "")) == manifest["documents"]
    padding = 1 - rows["num_tokens"].sum() / (rows.height * 65)
    assert float(summary["padding fraction"]) == pytest.approx(padding, rel=1e-3)
    top = _table(dom, "top-tokens")
    assert top.count("<tr>") == 41 and "<td class=\"l\">'" in top  # pieces decoded (shown with repr quotes)
    fractions = [batch_fraction(MicroBatch(0, np.asarray(t, dtype=np.int64)[None], np.array([n])), 13)
                 for t, n in zip(rows["tokens"].to_list(), rows["num_tokens"].to_list())]
    rejected = sum(f > 0.15 for f in fractions)
    gate = re.search(r'data-score="repeated_ngram_fraction"><figcaption>.*?passes ([\d,]+), rejected ([\d,]+)', dom)
    assert (int(gate.group(1)), int(gate.group(2))) == (rows.height - rejected, rejected) and rejected > 0
    assert '<line class="threshold"' in dom[gate.start():]
    shown = re.findall(r'<div class="sample" data-fraction="([\d.]+)">(.*?)</div></div>', dom, re.S)
    assert len(shown) == 3 and all(float(f) > 0.15 for f, _ in shown)
    assert all('<mark class="repeat">' in body and "prize" in body for _, body in shown)


@pytest.fixture(scope="module")
def pretrain_run(tokens, tmp_path_factory):
    """Four steps of clover-tiny on the token shards, the spam rows rejected by a strict gate; one of the three
    shards held out, evaluated every 2 steps."""
    from tests.test_training import tiny_config
    from training.trainer.pretrain import train

    cfg = tiny_config(4)
    cfg.data.allow_unvalidated, cfg.gate.max_fraction = True, 0.05
    cfg.eval.holdout_fraction, cfg.eval.every, cfg.eval.sequences = 0.34, 2, 8
    out = tmp_path_factory.mktemp("inspect-run") / "pretrain"
    train(cfg, str(tokens), str(out))
    return out


def test_run_page_curves_clip_line_and_decoded_rejections(pretrain_run, tmp_path):
    dom = _dom(build_report(str(pretrain_run)), tmp_path)
    assert {"run", "curves", "rejections"} <= _sections(dom)
    metrics = [json.loads(line) for line in (pretrain_run / "metrics.jsonl").read_text().splitlines()]
    curves = dict(re.findall(r'<figure class="curve" data-series="([^"]+)">(.*?)</figure>', dom, re.S))
    assert set(curves) == {"loss", "lr", "grad_norm", "tokens_per_s"}
    assert all('<path class="series"' in body for body in curves.values())
    assert '<line class="clip"' in curves["grad_norm"]
    rejected_steps = [m["step"] for m in metrics if m["gate_rejections"]]
    assert curves["loss"].count('<circle class="mark"') == len(rejected_steps)
    held_out = [m for m in metrics if "eval_loss" in m]
    assert [m["step"] for m in held_out] == [2, 4]  # held-out loss drawn beside the training loss
    assert _dots(curves["loss"], "held") == [(f"{m['step']}", f"{m['eval_loss']:.6g}") for m in held_out]
    assert "held-out loss" in dom and f"{len(held_out)} evaluations" in dom
    log = (pretrain_run / "gate_rejections.jsonl").read_text().splitlines()
    assert log and _table(dom, "gate-rejections").count("<tr>") == 1 + min(len(log), 50)
    decoded = re.findall(r'<div class="sample rejected-batch" data-micro-batch="(\d+)">', dom)
    assert decoded == [str(json.loads(line)["micro_batch"]) for line in log[:3]]
    assert dom.count('<table class="checkpoints">') == 1 and "complete" in dom


def _dots(figure: str, cls: str) -> list[tuple[str, str]]:
    """(step, value) of the dots of a chart's `cls` series (their tooltips)."""
    return re.findall(rf'<circle class="dot {cls}"[^>]*><title>[^<]* at step ([\d.]+): ([^<]+)</title>', figure)


@pytest.fixture(scope="module")
def dpo_run(tmp_path_factory):
    """A real DPO run of clover-tiny (tests/test_dpo.py's pairs and schedule): 6 steps from a 2-step pretraining
    run, a quarter of the pairs held out and evaluated every 2 steps."""
    from tests.test_dpo import dpo_config, write_pairs
    from tests.token_shards import write_token_shards
    from training.trainer.dpo import run_dpo
    from training.trainer.pretrain import TrainConfig, train

    root = tmp_path_factory.mktemp("inspect-dpo")
    train(TrainConfig(model="clover-tiny", micro_batch=2, grad_accum=1, max_steps=2, tensorboard=False),
          str(write_token_shards(root / "tok")), str(root / "pre"))
    cfg = dpo_config(6)
    cfg.eval.every, cfg.eval.pairs, cfg.eval.holdout_fraction = 2, 8, 0.25
    run_dpo(cfg, str(write_pairs(root / "pairs")), str(root / "pre"), str(root / "dpo"))
    return root / "dpo"


def test_real_dpo_run_page_shows_reward_accuracy_margin_and_held_out_metrics(dpo_run, tmp_path):
    dom = _dom(build_report(str(dpo_run)), tmp_path)
    assert {"run", "curves"} <= _sections(dom) and "rejections" not in _sections(dom)
    metrics = [json.loads(line) for line in (dpo_run / "metrics.jsonl").read_text().splitlines()]
    curves = dict(re.findall(r'<figure class="curve" data-series="([^"]+)">(.*?)</figure>', dom, re.S))
    assert set(curves) == {"loss", "lr", "grad_norm", "tokens_per_s", "reward_accuracy", "reward_margin"}
    evaluated = [m for m in metrics if "eval_loss" in m]
    assert [m["step"] for m in evaluated] == [2, 4, 6]
    for key in ("loss", "reward_accuracy", "reward_margin"):
        assert '<path class="series" data-label="training' in curves[key]  # the training micro-batches' figure
        assert _dots(curves[key], "held") == [(f"{m['step']}", f"{m[f'eval_{key}']:.6g}") for m in evaluated]
    last = evaluated[-1]
    config = json.loads((dpo_run / "config.json").read_text())
    assert (f"held-out reward accuracy {last['eval_reward_accuracy']:.3f}, margin {last['eval_reward_margin']:.4g}, "
            f"DPO loss {last['eval_loss']:.4g} on {last['eval_pairs']} pairs at step 6") in dom
    assert f"{config['eval']['held_out_pairs']} pairs held out of the training pairs" in dom


def test_dpo_run_page_shows_reward_accuracy_and_margin(tmp_path):
    run = tmp_path / "dpo"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"kind": "dpo", "model": "clover-tiny",
                                                 "engine": {"optimizer": {"grad_clip": 0.5}}}))
    (run / "metrics.jsonl").write_text("".join(json.dumps(
        {"step": s, "loss": 0.7 - s / 100, "lr": 1e-3, "grad_norm": 0.4 + s / 10, "tokens_per_s": 100.0,
         "reward_accuracy": s / 10, "reward_margin": s / 5}) + "\n" for s in range(1, 9)) + '{"step": 9, "lo')
    dom = _dom(build_report(str(run)), tmp_path)
    curves = dict(re.findall(r'<figure class="curve" data-series="([^"]+)">(.*?)</figure>', dom, re.S))
    assert {"reward_accuracy", "reward_margin", "grad_norm"} <= set(curves) and "rejections" not in _sections(dom)
    assert "7 of 8 logged steps above it" in curves["grad_norm"]


@pytest.fixture(scope="module")
def gate_story(tokens, pretrain_run, tmp_path_factory):
    """The demo's gate story, for real and small: looping rows mixed into the token shards, both arms 6 steps from
    the pretraining run's newest checkpoint (jobs/gate_story.py), under DIR/gate-story."""
    from jobs.gate_story import GateStoryConfig, run_gate_story
    from tests.test_training import tiny_config

    demo = tmp_path_factory.mktemp("inspect-gate-story")
    run_gate_story(demo / "gate-story", GateStoryConfig(steps=6, looping_share=0.25), tiny_config(6), pretrain_run,
                   tokens)
    return demo


def test_gate_story_page_draws_both_arms_clips_and_rejections(gate_story, tmp_path):
    from jobs.summary import gate_story as summary

    numbers = summary(gate_story)
    dom = _dom(build_report(str(gate_story / "gate-story")), tmp_path)
    assert {"arms", "curves"} <= _sections(dom)
    arms = dict((html.unescape(k), v) for k, *v in re.findall(
        r'<tr><td class="l">([^<]+)</td><td class="">([^<]+)</td><td class="">([^<]+)</td></tr>',
        _table(dom, "gate-story-arms")))
    assert arms["batch gate"] == ["off", "on"] and arms["optimizer.grad_clip"] == ["1", "0.5"]
    for i, name in enumerate(("ungated", "gated")):  # the demo summary's numbers
        arm = numbers["arms"][name]
        assert int(arms["rejected micro-batches"][i].replace(",", "")) == arm["rejected_micro_batches"]
        assert arms["rejection rate"][i] == f"{arm['rejection_rate']:.2%}"
        assert float(arms["max gradient norm"][i]) == pytest.approx(arm["max_grad_norm"], rel=1e-3)
    gated = numbers["arms"]["gated"]
    assert gated["rejected_micro_batches"] > 0 and numbers["arms"]["ungated"]["rejected_micro_batches"] == 0
    curves = dict(re.findall(r'<figure class="curve" data-series="([^"]+)">(.*?)</figure>', dom, re.S))
    for key in ("gate-story-loss", "gate-story-grad-norm"):
        assert re.findall(r'<path class="(\w+)" data-label="(\w+)', curves[key]) == [("alt", "ungated"), ("series", "gated")]
        assert curves[key].count('<circle class="mark"') == len(gated["rejected_at_steps"])
    clips = re.findall(r'<line class="clip (\w+)"[^>]*><title>([^<]+)</title>', curves["gate-story-grad-norm"])
    assert clips == [("alt", "ungated clip 1"), ("series", "gated clip 0.5")]
    assert f"{numbers['looping_rows']:,} looping rows" in dom and "both arms start from" in dom


def test_a_directory_of_outputs_gets_one_page_each_with_an_index(curated, deduped, tokens, pretrain_run, gate_story,
                                                                   tmp_path):
    demo = tmp_path / "demo"
    (demo / "runs").mkdir(parents=True)
    (demo / "sample").mkdir()
    for name, target in (("curated", curated[1]), ("deduped", deduped[0]), ("tokens", tokens),
                         ("gate-story", gate_story / "gate-story")):
        (demo / name).symlink_to(target, target_is_directory=True)
    (demo / "runs" / "pretrain").symlink_to(pretrain_run, target_is_directory=True)
    target = tmp_path / "index.html"
    assert main([str(demo), "--out", str(target), "--samples", "1", "--set", "gate.max_fraction=0.3"]) == 0
    dom = _dom(target.read_text(encoding="utf-8"), tmp_path)
    pages = re.findall(r'<article id="(page-\d+)" data-page="([^"]+)">', dom)
    assert [title for _, title in pages] == [
        "curate curated", "dedup deduped", "tokenize gate-story/data", "tokenize tokens", "run gate-story/gated",
        "run gate-story/ungated", "run runs/pretrain", "gate-story gate-story"]
    index = dom[dom.index('<ul class="index">'):dom.index("</ul>")]
    assert all(f'href="#{pid}"' in index for pid, _ in pages)
    for pid, section in (("page-0", "funnel"), ("page-1", "pairs"), ("page-3", "gate"), ("page-6", "curves"),
                         ("page-7", "arms")):
        assert f'<section id="{pid}-{section}" data-section="{section}">' in dom
    assert "gate.max_fraction 0.3" in dom and "Error" not in re.sub(r"<[^>]+>", "", dom).split("Index")[0]
