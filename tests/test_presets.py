"""Signal presets: the same documents score differently exactly where the definitions differ, and the
curate thresholds follow the preset (docs/quality.md, "Presets")."""

import pytest

from dataprep.curate import CurateConfig
from quality.document import DocumentView
from quality.gopher import gopher_quality, gopher_repetition
from quality.presets import (
    PRESETS,
    fineweb_c4,
    fineweb_gopher_quality,
    fineweb_gopher_repetition,
    fineweb_quality,
)
from quality.signals import (
    SCORE_RANGES,
    Bounds,
    DocumentScorer,
    SignalConfig,
    fineweb_thresholds,
    first_failing_rule,
    paper_thresholds,
    settles,
)
from quality.text import _spacy_rules, normalize_text, spacy_words, spacy_words_and_sentences
from schemas.config import ConfigError, build_config, load_config, to_dict
from schemas.sample import stdlib_docstrings


def test_spacy_words_split_punctuation_contractions_and_keep_abbreviations_and_urls():
    text = "Don't use e.g. well-known (see https://x.org/a?b=1), it's 3.5x... done."
    assert spacy_words(text) == ["Do", "n't", "use", "e.g.", "well", "-", "known", "(", "see", "https://x.org/a?b=1",
                                 ")", ",", "it", "'s", "3.5x", "...", "done", "."]
    assert spacy_words("x = (:param") == ["x", "=", "(", ":", "param"]  # "=(" emoticon match blocks "(:"
    assert spacy_words("a[:]") == ["a", "[:", "]"]


def test_spacy_sentence_count():
    def sentences(text):
        return spacy_words_and_sentences(text)[1]

    assert sentences("One. Two! Three") == 3
    assert sentences("Version 3.5 is out, e.g. today.") == 1
    assert sentences("Right?  :)") == 2  # a whitespace token after '?' starts a sentence


def test_spacy_lines_of_single_spaces_match_spacys_whole_algorithm():
    """Chunks joined by single spaces are tokenized chunk by chunk unless a special case could span two
    of them; expected tokens from spaCy 3.8 itself."""
    assert spacy_words_and_sentences("x (:param") == (["x", "(:", "param"], 1)  # "(:" inside its chunk
    assert spacy_words_and_sentences("= (:param") == (["=", "(", ":", "param"], 1)  # "=(" across the space blocks it
    assert spacy_words_and_sentences("=  (:param") == (["=", "(:", "param"], 1)  # not across two spaces
    assert spacy_words_and_sentences("=\t(:param") == (["=", "(:", "param"], 1)
    assert spacy_words_and_sentences("I dont know, 10km away") == (["I", "do", "nt", "know", ",", "10", "km", "away"], 1)
    assert spacy_words_and_sentences("Right? :)") == (["Right", "?", ":)"], 1)  # punctuation continues it
    assert spacy_words_and_sentences("Right?\t:)") == (["Right", "?", ":)"], 2)  # a tab token does not
    assert spacy_words_and_sentences("Hi.There now, e.g. this") == (["Hi", ".", "There", "now", ",", "e.g.", "this"], 2)
    assert spacy_words_and_sentences("") == ([], 1)
    # a chunk's tokens are words as they stand: special-case pieces spell their key, none blank
    from quality.fineweb_tables import EXCEPTIONS

    assert all("".join(pieces) == key and all(p.strip() == p != "" for p in pieces) for key, pieces in EXCEPTIONS.items())
    # other whitespace: its tokens are no words, and only count as sentence starts after a mark
    assert spacy_words_and_sentences("  a\tdont  (b)\t") == (["a", "do", "nt", "(", "b", ")"], 1)
    assert spacy_words_and_sentences("Hi.\tThere  now") == (["Hi", ".", "There", "now"], 2)


def test_suffix_search_near_the_end_finds_the_leftmost_suffix():
    """Suffix patterns are searched only as far back as the widest that can end with the chunk's last
    character reaches: `..+` from the start."""
    suffix_length = _spacy_rules()[1]
    assert suffix_length("abc") == 0
    assert suffix_length("ab.......") == 7  # the whole dot run
    assert suffix_length("x" * 40 + "'s") == 2
    assert suffix_length("x" * 10 + "5اكواب") == 5  # the widest unit: its lookbehind sees the digit before it
    assert suffix_length("x" * 10 + "aاكواب") == 0
    assert suffix_length("a)") == 1


def test_matching_by_edge_character_finds_what_the_whole_alternation_finds():
    """spaCy's affix alternations are tried only where an alternative can start (end): the
    same alternative must win (its end decides an infix token), lookbehinds must see before the start,
    and an unbounded suffix must still be found from the chunk's start."""
    import itertools
    import re

    from quality import fineweb_tables
    from quality.text import _infix_finder, _prefix_length, _suffix_length

    infixes = "(?<=[0-9])ab|a|abc|(?:x|yz)+|[b-c]c|\\.\\.+"
    suffixes = "(?<=[0-9])ab$|b$|abc$|(?:x|yz)+$|[b-c]c$|\\.\\.+$"
    prefixes = "^a|^ab|^(?:b|bc)c|^x(?!y)|^\\.\\.+"
    find_infixes, suffix_length, prefix_length = _infix_finder(infixes), _suffix_length(suffixes), _prefix_length(prefixes)
    for text in map("".join, itertools.product("1abcxyz.", repeat=4)):
        assert [m.span() for m in find_infixes(text)] == [m.span() for m in re.finditer(infixes, text)], text
        match = re.search(suffixes, text)
        assert suffix_length(text) == (len(text) - match.start() if match else 0), text
        match = re.search(prefixes, text)
        assert prefix_length(text) == (match.end() if match else 0), text
    assert suffix_length("a" + "." * 30) == 30
    find_infixes = _spacy_rules()[2]
    for chunk in ["a.B,c", "x=1", "3-4+5", "a--b...c", "foo.bar(baz)", "a…b", "plain"]:
        assert [m.span() for m in find_infixes(chunk)] == [m.span() for m in re.finditer(fineweb_tables.INFIX, chunk)]
    with pytest.raises(ValueError, match="no first characters"):
        _infix_finder(r"\d+")
    with pytest.raises(ValueError, match="does not end with"):
        _suffix_length("a$|b")
    with pytest.raises(ValueError, match="does not start with"):
        _prefix_length("^a|b")


def test_first_occurrence_counts_in_clover_not_in_fineweb():
    text = "a b\na b\nc"
    clover = gopher_repetition(DocumentView(text))
    fineweb = fineweb_gopher_repetition(text, spacy_words(text))
    assert clover["gopher_dup_line_frac"] == pytest.approx(2 / 3)   # both copies
    assert fineweb["gopher_dup_line_frac"] == pytest.approx(1 / 3)  # only the later copy
    assert fineweb["gopher_dup_line_char_frac"] == pytest.approx(3 / 9)  # over len(text), newlines included
    words = "a b c d e a b c d e"
    assert gopher_repetition(DocumentView(words))["gopher_dup_5gram_char_frac"] == 1.0
    # datatrove's greedy scan: the repeat at word 5 adds "abcde" (5 characters), over len(text) = 19
    assert fineweb_gopher_repetition(words, words.split())["gopher_dup_5gram_char_frac"] == pytest.approx(5 / 19)
    # top n-gram: a single occurrence counts, joined with spaces
    assert fineweb_gopher_repetition("x y z", ["x", "y", "z"])["gopher_top_2gram_char_frac"] == pytest.approx(3 / 5)
    assert gopher_repetition(DocumentView("x y z"))["gopher_top_2gram_char_frac"] == 0.0


def test_punctuation_tokens_are_words_in_fineweb_only():
    text = "Hello, the world! And #tags."
    clover = gopher_quality(DocumentView(text))
    fineweb = fineweb_gopher_quality(text, spacy_words(text))
    # clover words: Hello the world And tags (punctuation stripped); fineweb tokens add , ! # .
    assert clover["gopher_word_count"] == 5 and clover["gopher_alpha_word_frac"] == 1.0
    assert fineweb["gopher_word_count"] == 5                   # symbol-only tokens are not counted here...
    assert fineweb["gopher_alpha_word_frac"] == pytest.approx(5 / 9)  # ...but are words in every ratio
    assert fineweb["gopher_hash_word_ratio"] == pytest.approx(1 / 9)
    assert clover["gopher_stop_words"] == 2 and fineweb["gopher_stop_words"] == 1  # "And" is not "and"


def test_fineweb_c4_line_pass_and_fineweb_filter():
    text = "  A line with words.\nok\nUse javascript { here now\nA { curly line here.\nLast line of text!"
    kept, scores, kept_words = fineweb_c4(text, require_terminal_punct=False, min_words=3, max_word_length=1000)
    assert kept_words == spacy_words(kept)
    assert kept == "A line with words.\nA { curly line here.\nLast line of text!"  # stripped, short and js gone
    assert scores["c4_curly_bracket"] == 1.0 and scores["c4_sentence_count"] == 3
    fw = fineweb_quality(kept, kept_words)
    assert fw["fineweb_line_punct_frac"] == 1.0
    assert fw["fineweb_newline_word_ratio"] == pytest.approx(2 / 16)


def test_scorer_presets_fill_the_same_columns():
    text = "The cat sat on the mat. " * 20
    for preset in ("clover", "fineweb", "redpajama"):
        _, scores = DocumentScorer(SignalConfig(preset=preset))(text)
        assert list(scores) == list(SCORE_RANGES)


def test_an_early_exit_settles_only_when_every_rule_checked_before_the_failing_one_passes():
    settled = settles({"gopher_dup_line_frac": Bounds(max=0.3), "c4_bad_word_count": Bounds(max=0),
                       "fineweb_line_punct_frac": Bounds(min=0.12)}, SCORE_RANGES)
    assert not settled({"fineweb_line_punct_frac": 0.0})  # an earlier rule is unscored: it could fail first
    assert not settled({"gopher_dup_line_frac": 0.0, "fineweb_line_punct_frac": 0.0})  # c4_bad_word_count too
    assert settled({"gopher_dup_line_frac": 0.0, "c4_bad_word_count": 0, "fineweb_line_punct_frac": 0.0})
    assert settled({"gopher_dup_line_frac": 0.9})
    assert not settled({"gopher_dup_line_frac": 0.0, "c4_bad_word_count": 0, "fineweb_line_punct_frac": 0.5})


# fineweb with a rule on a score its last step computes but that is checked before FineWeb's own rules
EARLY_EXIT_CONFIGS = [{"signals.preset": p} for p in PRESETS] + [
    {"signals.preset": "fineweb", "thresholds.c4_bad_word_count.max": 0}]


@pytest.mark.parametrize("overrides", EARLY_EXIT_CONFIGS, ids=lambda o: "-".join(map(str, o.values())))
def test_an_early_exit_changes_no_decision_and_no_score_it_computes(overrides):
    """Each document keeps its fate and reason, and each score the early exit computes is the full run's; kept
    documents are scored in full, and a rejected one stops before the last step (redpajama scores in one)."""
    cfg = load_config(CurateConfig, None, overrides)
    scorer, settled = DocumentScorer(cfg.signals), settles(cfg.thresholds, SCORE_RANGES)
    texts = [normalize_text(t) for t in stdlib_docstrings()[:120]]
    texts += ["buy cheap pills now " * 60, "Menu\nHome\n" * 30, "A darn fine day. " * 3 + "Words here!\n" * 40]
    stopped = 0
    for text in texts:
        kept, scores = scorer(text)
        early_kept, early = scorer(text, settled)
        reason = first_failing_rule(scores, cfg.thresholds)
        assert first_failing_rule(early, cfg.thresholds) == reason
        assert early == {name: scores[name] for name in early}
        if reason is None:
            assert (early_kept, list(early)) == (kept, list(scores))
        stopped += len(early) < len(scores)
    assert (stopped > 10) == (cfg.signals.preset != "redpajama")


def test_unknown_preset_is_refused():
    with pytest.raises(ConfigError, match="unknown preset 'signals.preset: redpajamas'"):
        SignalConfig(preset="redpajamas")
    with pytest.raises(ConfigError, match="known: clover, fineweb, redpajama"):
        load_config(CurateConfig, None, {"signals.preset": "nope"})


def test_curate_thresholds_follow_the_preset_unless_set():
    assert load_config(CurateConfig, None, {}).thresholds == paper_thresholds()
    cfg = load_config(CurateConfig, None, {"signals.preset": "fineweb"})
    assert cfg.thresholds == fineweb_thresholds()
    assert cfg.thresholds["fineweb_dup_line_char_frac"].max == 0.01 and "repeated_ngram_frac" not in cfg.thresholds
    cfg = load_config(CurateConfig, None, {"signals.preset": "fineweb", "thresholds.gopher_word_count.min": 20,
                                           "thresholds.fineweb_dup_line_char_frac.min": 0.0,
                                           "thresholds.c4_curly_bracket": None})
    assert (cfg.thresholds["gopher_word_count"].min, cfg.thresholds["gopher_word_count"].max) == (20, 100_000)
    assert (cfg.thresholds["fineweb_dup_line_char_frac"].min, cfg.thresholds["fineweb_dup_line_char_frac"].max) == (0, 0.01)
    assert "c4_curly_bracket" not in cfg.thresholds
    rebuilt = build_config(CurateConfig, to_dict(cfg))  # validation rebuilds the recorded config
    assert rebuilt.thresholds["fineweb_dup_line_char_frac"] == cfg.thresholds["fineweb_dup_line_char_frac"]
    assert "repeated_ngram_frac" not in rebuilt.thresholds


def test_hashed_duplicate_ngram_scan_matches_the_scan_over_strings():
    """The hashed scan visits fewer positions; the plain scan over the joined strings is datatrove's
    find_all_duplicate (checked against datatrove itself in benchmarks/agreement.py)."""
    import itertools
    import random

    from quality.presets import _greedy_duplicate_chars, _scan_strings, _word_offsets

    def plain(words, n):
        offsets = list(itertools.accumulate(map(len, words), initial=0))
        grams = max(len(words) - n + 1, 0)
        return _scan_strings("".join(words), offsets[:grams], offsets[n:n + grams], n)

    equal_joins = ["ab", "c", "d", "e", "f", "a", "bc", "d", "e", "f", "x"] * 3  # the same string from other words
    assert _greedy_duplicate_chars(equal_joins, _word_offsets(equal_joins), range(5, 11)) == {5: 30, 6: 22, 7: 25, 8: 19, 9: 22, 10: 24}
    rng = random.Random(0)
    cases = [[], ["a"] * 3] + [[rng.choice(["a", "b", "ab", "ba", "é", "x"]) for _ in range(rng.randint(0, 80))]
                               for _ in range(300)]
    for words in cases:
        assert _greedy_duplicate_chars(words, _word_offsets(words), range(5, 11)) == {n: plain(words, n) for n in range(5, 11)}


def test_top_ngram_ids_count_word_tuples_with_ties_to_the_first_seen():
    from quality.presets import _top_ngram_chars, _word_offsets, most_common_ngram

    def top_ngram_chars(words):
        return _top_ngram_chars(words, _word_offsets(words), range(2, 5))

    # "a b" and "c c" both twice: the first seen wins; 3-grams all once: the first, "a b a"
    assert top_ngram_chars(["a", "b", "a", "b", "c", "c", "c"]) == {2: 6, 3: 5, 4: 7}
    assert top_ngram_chars(["ab", "c", "a", "bc"]) == {2: 4, 3: 6, 4: 9}  # "abc" twice, other words
    assert top_ngram_chars(["a"]) == {2: 0, 3: 0, 4: 0}
    words = "the cat the cat sat on the mat the cat sat".split()
    assert top_ngram_chars(words) == {
        n: len(" ".join(most_common_ngram(words, n)[0])) * most_common_ngram(words, n)[1] for n in (2, 3, 4)}
