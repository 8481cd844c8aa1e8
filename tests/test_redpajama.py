"""signals.preset=redpajama: RedPajama-V2's rps_* definitions, hand-computed on small texts where they differ
from clover's (and fineweb's), its thresholds, the config path, and the curate stage on Spark."""

import json
import math

import pyarrow.parquet as pq
import pytest

from dataprep.curate import CurateConfig, run_curate
from dataprep.stages import discover
from jobs.stage_cli import parse_stage
from quality.c4 import C4Config, c4_document
from quality.document import DocumentView
from quality.gopher import gopher_quality, gopher_repetition
from quality.presets import fineweb_gopher_repetition
from quality.redpajama import RedPajamaDocument, redpajama_line_pass, redpajama_scores, rp_normalize
from quality.signals import (
    SCORE_RANGES,
    DocumentScorer,
    SignalConfig,
    first_failing_rule,
    paper_thresholds,
    redpajama_thresholds,
)
from quality.text import normalize_text
from schemas.config import build_config, load_config, to_dict
from schemas.sample import stdlib_docstrings


def _rp(text, bad_words=frozenset()):
    return redpajama_scores(RedPajamaDocument(text), bad_words)


def test_normalization_deletes_ascii_punctuation_lowercases_and_decomposes():
    # em dash is not ASCII punctuation; NFD makes "é" two characters
    assert rp_normalize("  Don't STOP\u2014now,\n\n café! ") == "dont stop\u2014now cafe\u0301"
    scores = _rp("Don't STOP, naïve café!")
    assert scores["gopher_word_count"] == 4
    assert scores["gopher_mean_word_length"] == 4.75  # dont 4, stop 4, naïve 6, café 5
    assert gopher_quality(DocumentView("Don't STOP, naïve café!"))["gopher_mean_word_length"] == 4.5  # 5 4 5 4


def test_duplicate_ngrams_count_the_first_occurrence_on_normalized_words():
    text = "A b, c d e. a B c d e!"
    assert _rp(text)["gopher_dup_5gram_char_frac"] == 1.0  # "a b c d e" twice: every word covered
    assert gopher_repetition(DocumentView(text))["gopher_dup_5gram_char_frac"] == 0.0  # tokens keep case and marks
    words = "a b c d e a b c d e"
    assert fineweb_gopher_repetition(words, words.split())["gopher_dup_5gram_char_frac"] == pytest.approx(5 / 19)


def test_top_ngram_needs_a_repeat_and_counts_overlapping_occurrences():
    assert _rp("x y z")["gopher_top_2gram_char_frac"] == 0.0          # fineweb: 3/5
    assert _rp("a a a a")["gopher_top_2gram_char_frac"] == 1.5        # (a, a) 3 times x 2 chars / 4
    assert gopher_repetition(DocumentView("a a a a"))["gopher_top_2gram_char_frac"] == 1.0  # coverage
    # (b, c), (c, aa), (aa, b) occur twice each: the tie goes to the first seen, 2 characters x 2 over 9
    assert _rp("b c aa b c aa b")["gopher_top_2gram_char_frac"] == pytest.approx(round(4 / 9, 8))


def test_symbol_ratio_and_alphabetic_words_use_wordpunct_tokens():
    # tokens: Hello # world ... and … more (7); symbols: # ... …
    scores = _rp("Hello #world... and … more")
    assert scores["gopher_hash_word_ratio"] == pytest.approx(round(3 / 7, 8))  # rps_doc_symbol_to_word_ratio
    assert scores["gopher_ellipsis_word_ratio"] == pytest.approx(round(2 / 7, 8))
    # tokens: Hello , 123 world é — only ASCII letters count, so "é" has none
    assert _rp("Hello, 123 world é")["gopher_alpha_word_frac"] == pytest.approx(0.4)
    assert gopher_quality(DocumentView("Hello, 123 world é"))["gopher_alpha_word_frac"] == pytest.approx(3 / 4)


def test_stop_word_fraction_is_case_sensitive_over_wordpunct_tokens():
    # tokens: The cat and the dog . — "and", "the" are stop words, "The" is not
    assert _rp("The cat and the dog.")["gopher_stop_words"] == pytest.approx(round(2 / 6, 8))
    # "don't" is don ' t and "t" is in the list; nothing counts without a normalized word
    assert _rp("don't")["gopher_stop_words"] == pytest.approx(round(1 / 3, 8))
    assert _rp("!!! ...")["gopher_stop_words"] == 0.0


def test_line_signals_count_every_line_blank_ones_included():
    # lines: "• one", "- two", "– three", "", "  ▪ four": bullets •, – (en dash), ▪; "-" is none
    assert _rp("• one\n- two\n– three\n\n  ▪ four")["gopher_bullet_line_frac"] == pytest.approx(3 / 5)
    assert _rp("a...\nb…  \n\nc")["gopher_ellipsis_line_frac"] == 0.5
    # terminal marks . ! ? ” only: the ASCII quote is none
    assert _rp('One.\nTwo\n“Three”\nFour"\nFive?')["fineweb_line_punct_frac"] == pytest.approx(3 / 5)


def test_content_signals_sentences_lorem_ipsum_curly_brackets_and_bad_words():
    text = "Version 3.5 is out. Really?! yes"
    assert _rp(text)["c4_sentence_count"] == 4  # "Version 3." "5 is out." "Really?!" "yes"
    assert c4_document(DocumentView(text), 0.0, frozenset())["c4_sentence_count"] == 3
    assert _rp("Lorem, Ipsum dolor")["c4_lorem_ipsum"] == pytest.approx(round(1 / 17, 8))  # "lorem ipsum dolor"
    assert c4_document(DocumentView("Lorem, Ipsum dolor"), 0.0, frozenset())["c4_lorem_ipsum"] == 0.0
    assert _rp("lorem-ipsum")["c4_lorem_ipsum"] == 0.0  # normalized to "loremipsum"
    assert _rp("a{b}c")["c4_curly_bracket"] == pytest.approx(0.4)  # { and } over 5 characters
    # n-grams of normalized words: "bad" twice, "very bad" once
    assert _rp("Very BAD, bad!", frozenset({"bad", "very bad"}))["c4_bad_word_count"] == 3
    assert _rp("Very BAD, bad!")["c4_bad_word_count"] == 0


def test_line_pass_uses_rps_line_signals():
    text = "Keep this line please.\nEnable JavaScript.\nok\n\njavascript-enabled site here\nAnother good line here."
    kept, removed = redpajama_line_pass(RedPajamaDocument(text), require_terminal_punct=False, min_words=3)
    # "Enable JavaScript." has the word javascript, "ok" one word, the blank line none (not counted);
    # "javascript-enabled" normalizes to "javascriptenabled", which is not the word
    assert kept == "Keep this line please.\njavascript-enabled site here\nAnother good line here."
    assert removed == pytest.approx(2 / 5)
    kept, _ = redpajama_line_pass(RedPajamaDocument('Ends well.\nNo mark here\n“Quoted end”\nAscii "end"'),
                                  require_terminal_punct=True, min_words=0)
    assert kept == "Ends well.\n“Quoted end”"  # . ! ? ” end a line; the ASCII quote does not


def test_scorer_fills_every_column_in_range_and_keeps_the_cleaned_text():
    scorer = DocumentScorer(SignalConfig(preset="redpajama"))
    for text in ("", "a a a a", "!!! ...", "• x\n\n{}", "The cat sat on the mat. " * 20):
        _, scores = scorer(text)
        assert list(scores) == list(SCORE_RANGES)
        for name, value in scores.items():
            low, high = SCORE_RANGES[name]
            assert not math.isnan(value) and low <= value <= high, (text, name, value)
    kept, scores = scorer("A line with enough words.\nShort\nUse javascript here now.")
    assert kept == "A line with enough words." and scores["c4_removed_line_frac"] == pytest.approx(2 / 3)
    assert scores["c4_sentence_count"] == 2  # the text as it arrived: "...words." and "Short\nUse ... now."
    assert scores["fineweb_short_line_frac"] == 1.0  # Clover's definition, on the text kept
    cfg = SignalConfig(preset="redpajama", c4=C4Config(apply_line_cleaning=False))
    assert DocumentScorer(cfg)("Short\nline")[0] == "Short\nline"


def test_thresholds_are_the_readme_gopher_rules_and_c4():
    t = redpajama_thresholds()
    assert (t["gopher_word_count"].min, t["gopher_word_count"].max) == (50, 100_000)
    assert (t["gopher_mean_word_length"].min, t["gopher_mean_word_length"].max) == (3, 10)
    assert t["gopher_hash_word_ratio"].max == 0.1 and t["gopher_bullet_line_frac"].max == 0.9
    assert [t[f"gopher_top_{n}gram_char_frac"].max for n in (2, 3, 4)] == [0.20, 0.18, 0.16]
    assert [t[f"gopher_dup_{n}gram_char_frac"].max for n in range(5, 11)] == [0.15, 0.14, 0.13, 0.12, 0.11, 0.10]
    assert t["gopher_ellipsis_line_frac"].max == 0.3 and t["gopher_alpha_word_frac"].min == 0.8
    assert t["c4_sentence_count"].min == 5
    assert all(t[name].max == 0 for name in ("c4_lorem_ipsum", "c4_curly_bracket", "c4_bad_word_count"))
    no_rule = {"gopher_dup_line_frac", "gopher_dup_para_frac", "gopher_dup_line_char_frac", "gopher_dup_para_char_frac",
               "gopher_ellipsis_word_ratio", "gopher_stop_words", "fineweb_line_punct_frac", "fineweb_short_line_frac",
               "fineweb_dup_line_char_frac", "fineweb_newline_word_ratio", "repeated_ngram_frac"}
    assert set(t) == set(paper_thresholds()) - no_rule


def test_clover_curate_set_preset_resolves_the_thresholds():
    _, cfg = parse_stage(discover()["curate"], ["in.jsonl", "--out", "out", "--set", "signals.preset=redpajama"],
                         "clover curate")
    assert cfg.signals.preset == "redpajama" and cfg.thresholds == redpajama_thresholds()
    cfg = load_config(CurateConfig, None, {"signals.preset": "redpajama", "thresholds.gopher_stop_words.min": 0.3})
    assert cfg.thresholds["gopher_stop_words"].min == 0.3  # a rule the preset lacks, set by the user
    assert "repeated_ngram_frac" not in build_config(CurateConfig, to_dict(cfg)).thresholds


def test_curate_stage_with_the_preset_matches_the_scorer(spark, tmp_path):
    """Five documents the preset keeps and two it rejects: the stage's reasons, texts and scores are the
    scorer's, and validation (kept scores within SCORE_RANGES and the thresholds) passes."""
    cfg = load_config(CurateConfig, None, {"signals.preset": "redpajama", "spark.partitions": 1})
    scorer = DocumentScorer(cfg.signals)
    passing = [d for d in stdlib_docstrings() if first_failing_rule(scorer(normalize_text(d))[1], cfg.thresholds) is None]
    curly = next(d + "\nSee {x} for the details." for d in passing[5:]
                 if first_failing_rule(scorer(normalize_text(d + "\nSee {x} for the details."))[1], cfg.thresholds)
                 == "c4_curly_bracket")
    docs = passing[:5] + ["Short text. Not enough words.", curly]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"id": f"d{i}", "text": d}) + "\n" for i, d in enumerate(docs)))
    run_curate(spark, [str(tmp_path / "in.jsonl")], str(tmp_path / "out"), cfg)  # raises when validation fails
    rows = [row for part in ("documents", "rejected") for row in pq.read_table(tmp_path / "out" / part).to_pylist()]
    assert len(rows) == len(docs)
    for row in rows:
        kept, scores = scorer(normalize_text(docs[int(row["id"][1:])]))
        assert (row.get("reason"), row["text"]) == (first_failing_rule(scores, cfg.thresholds), kept)
        assert all(row[name] == pytest.approx(value) for name, value in scores.items())
    assert sorted(str(row.get("reason")) for row in rows) == ["None"] * 5 + ["c4_curly_bracket", "gopher_word_count"]
