"""RedPajama-V2's quality signals, reimplemented from their definitions for `signals.preset: redpajama`.

Source: togethercomputer/RedPajama-Data, branch main (v2): app/src/core/document.py,
app/src/utilities/text/normalization.py and app/src/core/quality_signals/{content,natural_language,repetitions,
lines}.py. RPv2 computes every signal on the document as it is (its `raw_content`, here Clover's normalized
text before any line is removed), from three views (`RedPajamaDocument`):

- normalized text: ASCII punctuation (`string.punctuation`) deleted, lowercased, whitespace runs made one
  space, Unicode NFD; its words are that text split on spaces (`rps_doc_word_count` and the n-gram signals);
- raw words: nltk's WordPunctTokenizer, the regex `\\w+|[^\\w\\s]+` ("don't" is `don`, `'`, `t`; punctuation
  runs are words), for the stop-word, symbol and alphabetic-word signals. Matched with `re`, as nltk 3.8
  (RPv2's) did; nltk 3.10 matches with `regex`, whose `\\s` excludes \\x1c-\\x1f, which Clover's normalization removes;
- lines: every `\\n`-terminated piece and a final unterminated one, blank lines included.

Values RPv2 rounds (to 8 decimals) are rounded here too, so a threshold compares as on its published numbers.
"""

from __future__ import annotations

import functools
import re
import string
import unicodedata
from functools import cached_property

from quality.presets import most_common_ngram
from quality.repetition import duplicate_ngram_weight_fraction, word_ids
from quality.text import ratio

PRECISION = 8  # RPv2's core/constants.py
BULLETS = ("\u2022", "\u2023", "\u25b6", "\u25c0", "\u25e6", "\u25a0", "\u25a1", "\u25aa", "\u25ab", "\u2013")
TERMINAL_PUNCTUATION = (".", "!", "?", "\u201d")
ELLIPSES = ("...", "\u2026")
_DELETE_PUNCTUATION = str.maketrans("", "", string.punctuation)
_WHITESPACE = re.compile(r"\s+")
_TOKEN = re.compile(r"\S+")
_WORD_PUNCT = re.compile(r"\w+|[^\w\s]+")
_LINE = re.compile(r"[^\n]*\n|[^\n]+$")
_SENTENCE = re.compile(r"\b[^.!?]+[.!?]*")
_ASCII_LETTER = re.compile("[a-zA-Z]")
_LOREM = re.compile("lorem ipsum", re.IGNORECASE)

# score column -> the RPv2 signal it holds in this preset (the other columns: quality.signals.DocumentScorer)
RPS_SIGNALS = {
    **{f"gopher_top_{n}gram_char_frac": f"rps_doc_frac_chars_top_{n}gram" for n in (2, 3, 4)},
    **{f"gopher_dup_{n}gram_char_frac": f"rps_doc_frac_chars_dupe_{n}grams" for n in range(5, 11)},
    "gopher_word_count": "rps_doc_word_count",
    "gopher_mean_word_length": "rps_doc_mean_word_length",
    "gopher_hash_word_ratio": "rps_doc_symbol_to_word_ratio",
    "gopher_bullet_line_frac": "rps_lines_start_with_bulletpoint (sum / lines)",
    "gopher_ellipsis_line_frac": "rps_doc_frac_lines_end_with_ellipsis",
    "gopher_alpha_word_frac": "1 - rps_doc_frac_no_alph_words",
    "gopher_stop_words": "rps_doc_stop_word_fraction",
    "c4_sentence_count": "rps_doc_num_sentences",
    "c4_lorem_ipsum": "rps_doc_lorem_ipsum",
    "c4_curly_bracket": "rps_doc_curly_bracket",
    "c4_bad_word_count": "rps_doc_ldnoobw_words",
    "fineweb_line_punct_frac": "rps_lines_ending_with_terminal_punctution_mark (mean over lines)",
}


def rp_normalize(text: str) -> str:
    """RPv2's `normalize`: ASCII punctuation deleted, lowercased, stripped, whitespace runs made one space,
    then NFD (so an accented letter is two characters in every length)."""
    text = text.translate(_DELETE_PUNCTUATION).lower()
    return unicodedata.normalize("NFD", _WHITESPACE.sub(" ", text.strip()))


def _rounded(part: float, whole: float) -> float:
    return round(ratio(part, whole), PRECISION)


class RedPajamaDocument:
    """RPv2's views of one text, computed once (its core/document.py `Document`)."""

    def __init__(self, text: str) -> None:
        self.text = text

    @cached_property
    def normalized(self) -> str:
        return rp_normalize(self.text)

    @cached_property
    def words(self) -> list[str]:
        return self.normalized.split()

    @cached_property
    def raw_words(self) -> list[str]:
        return _WORD_PUNCT.findall(self.text)

    @cached_property
    def lines(self) -> list[str]:
        return _LINE.findall(self.text)


def _top_ngram_frac(words: list[str], n: int, total_chars: int) -> float:
    """rps_doc_frac_chars_top_{n}gram: characters of the most frequent n-gram's words (no separators)
    times its count, over all word characters; 0 unless it occurs twice. Overlapping occurrences each
    count, so "a a a a" scores 1.5 for n=2."""
    gram, count = _repeated_top_ngram(words, n)
    return _rounded(sum(map(len, gram)) * count, total_chars)


def word_spans(text: str) -> list[tuple[int, int]]:
    """Where each of `RedPajamaDocument.words` stands in the text as it is: the whitespace tokens left
    non-empty once ASCII punctuation is deleted (normalizing never makes nor removes a space)."""
    return [m.span() for m in _TOKEN.finditer(text) if m.group().translate(_DELETE_PUNCTUATION)]


def raw_word_spans(text: str) -> list[tuple[int, int]]:
    """Where each of `RedPajamaDocument.raw_words` stands in the text."""
    return [m.span() for m in _WORD_PUNCT.finditer(text)]


def has_ascii_letter(word: str) -> bool:
    """A raw word `rps_doc_frac_no_alph_words` does not count (the test its score makes inline)."""
    return _ASCII_LETTER.search(word) is not None


def top_ngram(words: list[str], n: int) -> tuple[str, ...]:
    """The n-gram rps_doc_frac_chars_top_{n}gram counts; () unless it occurs twice."""
    return _repeated_top_ngram(words, n)[0]


def _repeated_top_ngram(words: list[str], n: int) -> tuple[tuple[str, ...], int]:
    """The most frequent n-gram and its count, or ((), 0) unless it occurs twice."""
    gram, count = most_common_ngram(words, n)
    return (gram, count) if count > 1 else ((), 0)


def repetition_signals(doc: RedPajamaDocument) -> dict[str, float]:
    """RPv2's repetitions.py on the normalized words. Duplicate n-grams count every occurrence, the first
    included, each word once (Clover's `duplicate_ngram_weight_fraction`, the same definition)."""
    words = doc.words
    total_chars = sum(map(len, words))
    scores = {f"gopher_top_{n}gram_char_frac": _top_ngram_frac(words, n, total_chars) for n in (2, 3, 4)}
    ids, lengths = word_ids(words)
    for n in range(5, 11):
        scores[f"gopher_dup_{n}gram_char_frac"] = round(duplicate_ngram_weight_fraction(ids, lengths, n), PRECISION)
    return scores


def natural_language_signals(doc: RedPajamaDocument) -> dict[str, float]:
    """RPv2's natural_language.py word and line signals, the stop-word fraction (content.py) and the
    per-line bullet and terminal-mark flags (lines.py) averaged over all lines, as the RPv2 README's
    example does for bullets (sum over `ccnet_nlines`). An undefined signal (RPv2's None) is 0."""
    words, raw, lines, text = doc.words, doc.raw_words, doc.lines, doc.text
    n_raw = len(raw)
    no_letter = round(1.0 - sum(1 for w in raw if _ASCII_LETTER.search(w)) / n_raw, PRECISION) if n_raw else 1.0
    ellipses = text.count("...") + text.count("\u2026")
    return {
        "gopher_word_count": float(len(words)),
        "gopher_mean_word_length": _rounded(sum(map(len, words)), len(words)),
        "gopher_hash_word_ratio": _rounded(text.count("#") + ellipses, n_raw),
        "gopher_ellipsis_word_ratio": _rounded(ellipses, n_raw),
        "gopher_bullet_line_frac": ratio(sum(s.lstrip().startswith(BULLETS) for s in lines), len(lines)),
        "gopher_ellipsis_line_frac": _rounded(sum(s.rstrip().endswith(ELLIPSES) for s in lines), len(lines)),
        "gopher_alpha_word_frac": 1.0 - no_letter,
        "gopher_stop_words": _rounded(sum(w in STOP_WORDS_EN for w in raw), n_raw) if words else 0.0,
        "fineweb_line_punct_frac": ratio(sum(s.rstrip().endswith(TERMINAL_PUNCTUATION) for s in lines), len(lines)),
    }


@functools.lru_cache(maxsize=4)
def _gram_sizes(bad_words: frozenset[str]) -> frozenset[int]:
    """Words per block-list entry (1 + its spaces), as RPv2 caches them."""
    return frozenset(1 + w.count(" ") for w in bad_words)


def ldnoobw_words(words: list[str], bad_words: frozenset[str]) -> float:
    """rps_doc_ldnoobw_words: normalized word n-grams (joined by a space) found in the block list, for each
    entry length n; 0 without a list."""
    if not bad_words:
        return 0.0
    return float(sum(" ".join(words[i:i + n]) in bad_words
                     for n in _gram_sizes(bad_words) for i in range(len(words) - n + 1)))


def content_signals(doc: RedPajamaDocument, bad_words: frozenset[str]) -> dict[str, float]:
    """RPv2's content.py ratios and natural_language.py's sentence count. `lorem ipsum` is searched in
    the normalized text (punctuation gone, so "Lorem-ipsum" is not one; counted case-insensitively once
    found, as RPv2 does), `{` and `}` in the text as it is."""
    text, normalized = doc.text, doc.normalized
    lorem = len(_LOREM.findall(normalized)) if "lorem ipsum" in normalized else 0
    return {
        "c4_sentence_count": float(len(_SENTENCE.findall(text))),
        "c4_lorem_ipsum": _rounded(lorem, len(normalized)),
        "c4_curly_bracket": _rounded(text.count("{") + text.count("}"), len(text)),
        "c4_bad_word_count": ldnoobw_words(doc.words, bad_words),
    }


def redpajama_scores(doc: RedPajamaDocument, bad_words: frozenset[str]) -> dict[str, float]:
    """Every column that holds an RPv2 signal in this preset (`RPS_SIGNALS`), plus the ellipsis share of
    the symbol ratio (`gopher_ellipsis_word_ratio`)."""
    return {**repetition_signals(doc), **natural_language_signals(doc), **content_signals(doc, bad_words)}


def redpajama_line_pass(doc: RedPajamaDocument, require_terminal_punct: bool, min_words: int) -> tuple[str, float]:
    """C4's line rules on RPv2's line signals: (text kept, non-blank lines removed / non-blank lines). A
    line goes when its normalized words include `javascript` (rps_lines_javascript_counts > 0), has fewer
    than min_words normalized words (rps_lines_num_words; a blank line has 0), or, with
    require_terminal_punct, does not end in . ! ? or \u201d (rps_lines_ending_with_terminal_punctution_mark).
    RPv2 has no signal for C4's other line rules (policy phrases, long words, citations)."""
    kept: list[str] = []
    nonblank = removed = 0
    for line in doc.lines:
        words = rp_normalize(line).split()
        drop = ("javascript" in words or len(words) < min_words
                or (require_terminal_punct and not line.rstrip().endswith(TERMINAL_PUNCTUATION)))
        blank = not line.strip()
        nonblank += not blank
        removed += drop and not blank
        if not drop:
            kept.append(line)
    return "".join(kept).strip("\n"), ratio(removed, nonblank)


# The English stop words of RPv2's quality_signals/utils/stop_words.py: stopwords-json's en.json
# (github.com/6/stopwords-json, MIT licence). Entries with an apostrophe never match a WordPunct word.
STOP_WORDS_EN = frozenset("""
    a a's able about above according accordingly across actually after afterwards again against ain't all allow
    allows almost alone along already also although always am among amongst an and another any anybody anyhow anyone
    anything anyway anyways anywhere apart appear appreciate appropriate are aren't around as aside ask asking
    associated at available away awfully b be became because become becomes becoming been before beforehand behind
    being believe below beside besides best better between beyond both brief but by c c'mon c's came can can't
    cannot cant cause causes certain certainly changes clearly co com come comes concerning consequently consider
    considering contain containing contains corresponding could couldn't course currently d definitely described
    despite did didn't different do does doesn't doing don't done down downwards during e each edu eg eight either
    else elsewhere enough entirely especially et etc even ever every everybody everyone everything everywhere ex
    exactly example except f far few fifth first five followed following follows for former formerly forth four from
    further furthermore g get gets getting given gives go goes going gone got gotten greetings h had hadn't happens
    hardly has hasn't have haven't having he he's hello help hence her here here's hereafter hereby herein hereupon
    hers herself hi him himself his hither hopefully how howbeit however i i'd i'll i'm i've ie if ignored immediate
    in inasmuch inc indeed indicate indicated indicates inner insofar instead into inward is isn't it it'd it'll
    it's its itself j just k keep keeps kept know known knows l last lately later latter latterly least less lest
    let let's like liked likely little look looking looks ltd m mainly many may maybe me mean meanwhile merely might
    more moreover most mostly much must my myself n name namely nd near nearly necessary need needs neither never
    nevertheless new next nine no nobody non none noone nor normally not nothing novel now nowhere o obviously of
    off often oh ok okay old on once one ones only onto or other others otherwise ought our ours ourselves out
    outside over overall own p particular particularly per perhaps placed please plus possible presumably probably
    provides q que quite qv r rather rd re really reasonably regarding regardless regards relatively respectively
    right s said same saw say saying says second secondly see seeing seem seemed seeming seems seen self selves
    sensible sent serious seriously seven several shall she should shouldn't since six so some somebody somehow
    someone something sometime sometimes somewhat somewhere soon sorry specified specify specifying still sub such
    sup sure t t's take taken tell tends th than thank thanks thanx that that's thats the their theirs them
    themselves then thence there there's thereafter thereby therefore therein theres thereupon these they they'd
    they'll they're they've think third this thorough thoroughly those though three through throughout thru thus to
    together too took toward towards tried tries truly try trying twice two u un under unfortunately unless unlikely
    until unto up upon us use used useful uses using usually uucp v value various very via viz vs w want wants was
    wasn't way we we'd we'll we're we've welcome well went were weren't what what's whatever when whence whenever
    where where's whereafter whereas whereby wherein whereupon wherever whether which while whither who who's
    whoever whole whom whose why will willing wish with within without won't wonder would wouldn't x y yes yet you
    you'd you'll you're you've your yours yourself yourselves z zero
""".split())
