"""Golden tests: every rule on examples whose values were computed by hand (see docs/quality.md)."""

import numpy as np
import pytest

from quality.c4 import C4Config, c4_clean, c4_document, count_sentences
from quality.document import DocumentView, duplicate_fractions
from quality.fineweb import fineweb
from quality.gopher import gopher_quality, gopher_repetition
from quality.repetition import (
    duplicate_ngram_weight_fraction,
    repeated_ngram_fraction,
    repeated_ngram_mask,
    top_ngram_weight_fraction,
    word_ids,
)
from quality.signals import (
    SCORE_RANGES,
    Bounds,
    DocumentScorer,
    SignalConfig,
    first_failing_rule,
    paper_thresholds,
)
from quality.text import normalize_text


@pytest.mark.parametrize(("raw", "expected"), [
    ("e\u0301te\u0301", "été"),                 # NFC composes
    ("a\r\nb\rc\u2028d", "a\nb\nc\nd"),          # line endings unified
    ("a\x07b\x1bc\x7f\td", "abc\td"),           # control characters removed, tab kept
    ("line  \t\nnext\u00a0\n", "line\nnext"),   # trailing whitespace trimmed, per line and at the end
    ("\n\n  \n", ""),                           # whitespace-only becomes empty
    ("  indented\n\n\npara", "  indented\n\n\npara"),  # leading indentation and blank lines kept
])
def test_normalize_text(raw, expected):
    assert normalize_text(raw) == expected


def test_gopher_quality_hand_computed():
    doc = DocumentView("The cat sat.\n- a dog ran...\n# ok")
    # words (punctuation stripped, '-' and '#' vanish): The cat sat a dog ran ok
    scores = gopher_quality(doc)
    assert scores["gopher_word_count"] == 7
    assert scores["gopher_mean_word_length"] == pytest.approx(18 / 7)
    assert scores["gopher_hash_word_ratio"] == pytest.approx(1 / 7)
    assert scores["gopher_ellipsis_word_ratio"] == pytest.approx(1 / 7)
    assert scores["gopher_bullet_line_frac"] == pytest.approx(1 / 3)
    assert scores["gopher_ellipsis_line_frac"] == pytest.approx(1 / 3)
    assert scores["gopher_alpha_word_frac"] == 1.0
    assert scores["gopher_stop_words"] == 1  # only "the"; "a" is not on the list


def test_gopher_quality_alpha_and_distinct_stop_words():
    scores = gopher_quality(DocumentView("1999 2000 the and of the … end"))
    assert scores["gopher_alpha_word_frac"] == pytest.approx(5 / 7)
    assert scores["gopher_stop_words"] == 3  # distinct: the, and, of
    assert scores["gopher_ellipsis_word_ratio"] == pytest.approx(1 / 7)  # the unicode ellipsis counts


def test_gopher_repetition_lines_and_paragraphs():
    scores = gopher_repetition(DocumentView("a b\na b\nc\n\nx y z\n\nx y z"))
    # lines a b, a b, c, x y z, x y z: every occurrence of a repeated line counts
    assert scores["gopher_dup_line_frac"] == pytest.approx(4 / 5)
    assert scores["gopher_dup_line_char_frac"] == pytest.approx(16 / 17)
    # paragraphs "a b\na b\nc" (9 chars), "x y z" (5), "x y z" (5)
    assert scores["gopher_dup_para_frac"] == pytest.approx(2 / 3)
    assert scores["gopher_dup_para_char_frac"] == pytest.approx(10 / 19)
    # 2-grams "a b", "x y", "y z" each occur twice; one of them covers 4 of the 11 characters
    assert scores["gopher_top_2gram_char_frac"] == pytest.approx(4 / 11)


def test_gopher_duplicate_ngrams_count_first_occurrence_and_overlap_once():
    text = "the quick brown fox jumps the quick brown fox jumps over"
    scores = gopher_repetition(DocumentView(text))
    assert scores["gopher_dup_5gram_char_frac"] == pytest.approx(42 / 46)
    assert scores["gopher_dup_6gram_char_frac"] == 0.0
    ids, lengths = word_ids("a a a a a a".split())
    assert duplicate_ngram_weight_fraction(ids, lengths, 5) == 1.0  # two overlapping 5-grams, counted once


def test_top_ngram_tie_goes_to_longer_ngram_and_no_repeat_is_zero():
    ids, lengths = word_ids("aaaa bb aaaa bb c d c d".split())
    # "aaaa bb" (6 chars) and "c d" (2 chars) both occur twice; the longer one wins: 12 of 16 chars
    assert top_ngram_weight_fraction(ids, lengths, 2) == pytest.approx(12 / 16)
    ids, lengths = word_ids("all words differ here".split())
    assert top_ngram_weight_fraction(ids, lengths, 2) == 0.0


def test_repeated_ngram_fraction_excludes_first_occurrence():
    assert repeated_ngram_fraction(np.array([1, 2, 3, 1, 2, 3]), 3) == 0.5
    assert repeated_ngram_fraction(np.array([1, 2, 3, 4]), 2) == 0.0
    assert repeated_ngram_fraction(np.array([], dtype=np.int64), 3) == 0.0
    assert repeated_ngram_fraction(np.array([7, 7]), 3) == 0.0  # shorter than n


def test_repeated_ngram_mask_keeps_batch_rows_apart():
    batch = np.array([[1, 2, 1, 2], [1, 2, 3, 4]])
    mask = repeated_ngram_mask(batch, 2)
    assert mask.tolist() == [[False, False, True, True], [False, False, False, False]]
    assert repeated_ngram_fraction(batch, 2) == 2 / 8


def test_duplicate_fractions_first_occurrence_choice():
    assert duplicate_fractions(["ab", "ab", "c"], count_first=True) == (2 / 3, 4 / 5)
    assert duplicate_fractions(["ab", "ab", "c"], count_first=False) == (1 / 3, 2 / 5)
    assert duplicate_fractions([], count_first=True) == (0.0, 0.0)


def test_c4_line_cleaning_default_rules():
    text = "Good line one.\nPlease enable JavaScript to view.\nRead our privacy policy.\nFact [1] here. [citation needed]"
    cleaned, removed = c4_clean(text, C4Config())
    assert cleaned == "Good line one.\nFact  here."
    assert removed == 0.5


def test_c4_line_cleaning_paper_options():
    strict = C4Config(require_terminal_punct=True, min_words_per_line=3)
    cleaned, removed = c4_clean("Title\nA proper sentence here.\ntwo words.\nOk\n\nAnother full sentence!", strict)
    assert cleaned == "A proper sentence here.\n\nAnother full sentence!"
    assert removed == pytest.approx(3 / 5)
    long_word = "x" * 1001
    assert c4_clean(f"keep this.\n{long_word} drop", C4Config())[0] == "keep this."


@pytest.mark.parametrize(("text", "sentences"), [
    ("Hi. How are you? Fine!", 3),
    ("One. Two", 2),
    ("Version 3.5 is out.", 1),
    ('He said "stop." Then left', 2),
    ("", 0),
])
def test_c4_sentence_count(text, sentences):
    assert count_sentences(text) == sentences


def test_c4_document_rules():
    doc = DocumentView("Lorem Ipsum dolor. {code} Damn.")
    scores = c4_document(doc, 0.25, frozenset({"damn"}))
    assert scores == {"c4_removed_line_frac": 0.25, "c4_sentence_count": 2.0, "c4_lorem_ipsum": 1.0,
                      "c4_curly_bracket": 1.0, "c4_bad_word_count": 1.0}


def test_fineweb_hand_computed():
    text = "Short line.\nThis line is definitely longer than thirty characters\nShort line.\nno punct"
    scores = fineweb(DocumentView(text))
    assert scores["fineweb_line_punct_frac"] == 0.5
    assert scores["fineweb_short_line_frac"] == 0.75
    assert scores["fineweb_dup_line_char_frac"] == pytest.approx(11 / 83)  # first copy not counted
    assert scores["fineweb_newline_word_ratio"] == pytest.approx(3 / 14)


def test_paper_thresholds_are_table_a1():
    t = paper_thresholds()
    assert (t["gopher_dup_line_frac"].max, t["gopher_dup_para_frac"].max) == (0.3, 0.3)
    assert (t["gopher_dup_line_char_frac"].max, t["gopher_dup_para_char_frac"].max) == (0.2, 0.2)
    assert [t[f"gopher_top_{n}gram_char_frac"].max for n in (2, 3, 4)] == [0.20, 0.18, 0.16]
    assert [t[f"gopher_dup_{n}gram_char_frac"].max for n in range(5, 11)] == [0.15, 0.14, 0.13, 0.12, 0.11, 0.10]
    assert t["repeated_ngram_frac"].max == 0.15
    assert set(t) <= set(SCORE_RANGES)


def test_bounds_and_first_failing_rule_order():
    assert Bounds(min=1, max=2).holds(1) and Bounds(min=1, max=2).holds(2)
    assert not Bounds(max=0.1).holds(0.11)
    scores = {"a": 5.0, "b": 0.0, "c": 0.0}
    thresholds = {"c": Bounds(min=1), "b": Bounds(min=1), "a": Bounds(max=10)}
    assert first_failing_rule(scores, thresholds) == "b"  # score order, not threshold order
    assert first_failing_rule({"a": 5.0}, thresholds) is None


def test_scorer_covers_every_score_and_each_in_range():
    scorer = DocumentScorer(SignalConfig())
    text, scores = scorer("Some text here. It is short.\nAnother line, with javascript in it.")
    assert text == "Some text here. It is short."  # C4 line cleaning applied by default
    assert list(scores) == list(SCORE_RANGES)
    for name, value in scores.items():
        low, high = SCORE_RANGES[name]
        assert low <= value <= high, name


def test_scorer_without_line_cleaning_keeps_text():
    cfg = SignalConfig(c4=C4Config(apply_line_cleaning=False))
    text, scores = DocumentScorer(cfg)("keep javascript line.")
    assert text == "keep javascript line." and scores["c4_removed_line_frac"] == 1.0
