"""Text normalization and the word/line views every quality signal shares."""

from __future__ import annotations

import functools
import itertools
import operator
import re
import unicodedata
from collections.abc import Callable
from typing import NamedTuple, TypeVar

# C0/C1 control characters except tab and newline; carriage returns are unified before this runs.
_CONTROL_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f]")
_LINE_BREAKS = re.compile("\r\n?|\x85|\u2028|\u2029")  # single characters, not a class: a faster search
_PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~…«»“”‘’„‚‹›—–·•¡¿"


def ratio(part: float, whole: float) -> float:
    """part / whole, 0 for an empty whole: every signal's ratio, so an empty document scores 0, not NaN."""
    return part / whole if whole else 0.0


def normalize_text(text: str) -> str:
    """NFC, unified line endings, control characters removed, trailing whitespace trimmed.

    Leading and trailing blank lines are dropped too, so an all-whitespace document becomes empty.
    """
    text = unicodedata.normalize("NFC", text)
    text = _LINE_BREAKS.sub("\n", text)
    text = _CONTROL_CHARS.sub("", text)
    text = "\n".join(line.rstrip() for line in text.split("\n"))  # whitespace before a newline or the end
    return text.strip("\n")


def split_tokens(text: str) -> list[str]:
    """Whitespace-separated tokens: the unit of every word n-gram signal."""
    return text.split()


def strip_punctuation(token: str) -> str:
    """A token without surrounding punctuation; empty when the token is punctuation only."""
    return token.strip(_PUNCTUATION)


def nonblank_lines(text: str) -> list[str]:
    """Lines with content; blank lines separate paragraphs but are not lines of their own."""
    return [line for line in text.split("\n") if line.strip()]


def paragraphs(text: str) -> list[str]:
    """Blocks separated by one or more blank lines."""
    return [p for p in re.split(r"\n\s*\n", text) if p.strip()]


# --- datatrove's English word tokenizer (spaCy's blank English tokenizer), for the fineweb preset ---

try:
    from re import _parser as _regex_parser  # Python 3.11+
except ImportError:  # Python 3.10
    import sre_parse as _regex_parser

_NEVER = "(?!)"  # a regex that matches nowhere
_T = TypeVar("_T")


def _alternatives(pattern: str) -> list[str]:
    """A regex's top-level alternatives, as source: split at each `|` outside groups, classes and escapes."""
    if _regex_parser.parse(pattern).state.flags & ~re.UNICODE:
        raise ValueError(f"flags would apply to the first alternative only: {pattern[:40]}")
    parts, depth, start, i, in_class = [], 0, 0, 0, False
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            i += 1
        elif in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            i += 2 if pattern.startswith("^]", i + 1) else 1 if pattern.startswith("]", i + 1) else 0
        elif char in "()":
            depth += 1 if char == "(" else -1
        elif char == "|" and depth == 0:
            parts.append(pattern[start:i])
            start = i + 1
        i += 1
    return parts + [pattern[start:]]


def _edge_chars(items: list, last: bool) -> frozenset[str] | None:
    """The characters a match of parsed regex items can start (or end) with, lookarounds and anchors
    skipped (they consume nothing); None unless the first (last) consuming item surely consumes a
    listed character."""
    for op, value in reversed(items) if last else items:
        if op in (_regex_parser.AT, _regex_parser.ASSERT, _regex_parser.ASSERT_NOT):
            continue
        if op is _regex_parser.LITERAL:
            return frozenset(chr(value))
        if op is _regex_parser.IN and all(kind in (_regex_parser.LITERAL, _regex_parser.RANGE) for kind, _ in value):
            return frozenset(chr(code) for kind, v in value for code in ([v] if kind is _regex_parser.LITERAL
                                                                          else range(v[0], v[1] + 1)))
        if op is _regex_parser.BRANCH:
            edges = [_edge_chars(branch.data, last) for branch in value[1]]
            return None if None in edges else frozenset().union(*edges)
        if op is _regex_parser.SUBPATTERN and not value[1] & re.IGNORECASE:  # (group, flags on, off, items)
            return _edge_chars(value[-1].data, last)
        if op in (_regex_parser.MAX_REPEAT, _regex_parser.MIN_REPEAT) and value[0] >= 1:
            return _edge_chars(value[2].data, last)
        return None
    return None


def _by_edge_char(alternatives: list[str], last: bool, compile_group: Callable[[tuple[str, ...]], _T]) -> dict[str, _T]:
    """For each character some alternative's match can start (or end) with, `compile_group` of the
    alternatives that can, in their order, so that where an alternative matches the same one wins as in
    the whole alternation; compiled once per distinct group."""
    groups: dict[str, list[str]] = {}
    for alternative in alternatives:
        chars = _edge_chars(_regex_parser.parse(alternative).data, last)
        if chars is None:
            raise ValueError(f"no {'last' if last else 'first'} characters for the spaCy pattern {alternative[:40]}")
        for char in chars:
            groups.setdefault(char, []).append(alternative)
    compiled = {group: compile_group(group) for group in set(map(tuple, groups.values()))}
    return {char: compiled[tuple(group)] for char, group in groups.items()}


def _prefix_length(pattern: str) -> Callable[[str], int]:
    """The characters spaCy's prefix search (an alternation of `^...` patterns) strips from a chunk:
    the end of the first alternative that matches at its start, 0 without one. Only the alternatives
    that can start with its first character are tried."""
    alternatives = _alternatives(pattern)
    if any(_regex_parser.parse(a).data[0] != (_regex_parser.AT, _regex_parser.AT_BEGINNING) for a in alternatives):
        raise ValueError("a spaCy prefix pattern that does not start with `^`")
    matchers = _by_edge_char(alternatives, False, lambda group: re.compile("|".join(group)).match)

    def prefix_length(chunk: str) -> int:
        match = matchers.get(chunk[:1])
        found = match(chunk) if match else None
        return found.end() if found else 0

    return prefix_length


def _suffix_length(pattern: str) -> Callable[[str], int]:
    """The characters spaCy's suffix search (`re.search` of an alternation of `...$` patterns) strips
    from a chunk: from the leftmost start of any alternative's match to the end, 0 without one. A chunk
    holds no newline, so every match ends at its end: only the alternatives that can end with its last
    character are searched, and only as far back as the widest of them reaches."""
    alternatives = _alternatives(pattern)
    if any(_regex_parser.parse(a).data[-1] != (_regex_parser.AT, _regex_parser.AT_END) for a in alternatives):
        raise ValueError("a spaCy suffix pattern that does not end with `$`")
    searches = _by_edge_char(alternatives, True, lambda group: (
        re.compile("|".join(group)).search, max(_regex_parser.parse(a).getwidth()[1] for a in group)))
    nothing = (re.compile(_NEVER).search, 0)

    def suffix_length(chunk: str) -> int:
        search, width = searches.get(chunk[-1:], nothing)
        match = search(chunk, max(len(chunk) - width, 0))  # a lookbehind sees the characters before
        return len(chunk) - match.start() if match else 0

    return suffix_length


def _infix_finder(pattern: str) -> Callable[[str], list[re.Match[str]]]:
    """`re.finditer` for spaCy's infixes, trying at each position only the alternatives that can start
    with its character (most chunks have no such character, or one or two). Every match consumes a
    character, so the next starts at its end; a lookbehind sees the characters before."""
    matchers = _by_edge_char(_alternatives(pattern), False, lambda group: re.compile("|".join(group)).match)

    def finditer(chunk: str) -> list[re.Match[str]]:
        found: list[re.Match[str]] = []
        if matchers.keys().isdisjoint(chunk):
            return found
        position = 0
        while position < len(chunk):
            match = matchers.get(chunk[position])
            if match and (m := match(chunk, position)):
                found.append(m)
                position = m.end()
            else:
                position += 1
        return found

    return finditer


@functools.lru_cache(maxsize=1)
def _spacy_rules():
    from quality import fineweb_tables as t

    return (_prefix_length(t.PREFIX), _suffix_length(t.SUFFIX), _infix_finder(t.INFIX),
            re.compile(t.URL).match, t.EXCEPTIONS, frozenset(t.SENTENCE_PUNCT))


_NO_SPECIALS: dict[str, tuple[str, ...]] = {}


def _split_affixes(chunk: str, specials: dict[str, tuple[str, ...]]) -> list[str]:
    """spaCy's Tokenizer._split_affixes + _attach_tokens for one whitespace-free chunk (spacy/tokenizer.pyx):
    strip prefixes and suffixes until a special case or nothing is left, then a special case, a URL, or
    infix splits."""
    prefix_length, suffix_length, _, url, _, _ = _spacy_rules()
    if chunk in specials:
        return list(specials[chunk])
    tokens: list[str] = []
    suffixes: list[str] = []
    last = -1
    while chunk and len(chunk) != last:  # the chunk is no special case here: checked before and at each end
        last = len(chunk)
        pre = prefix_length(chunk)
        if pre and chunk[pre:] in specials:
            tokens.append(chunk[:pre])
            chunk = chunk[pre:]
            break
        suf = suffix_length(chunk[pre:])
        if suf and chunk[:-suf] in specials:
            suffixes.append(chunk[-suf:])
            chunk = chunk[:-suf]
            break
        if pre and suf and pre + suf <= len(chunk):
            tokens.append(chunk[:pre])
            suffixes.append(chunk[-suf:])
            chunk = chunk[pre:-suf]
        elif pre:
            tokens.append(chunk[:pre])
            chunk = chunk[pre:]
        elif suf:
            suffixes.append(chunk[-suf:])
            chunk = chunk[:-suf]
        if chunk in specials:
            break
    if chunk in specials:
        tokens.extend(specials[chunk])
    elif chunk:
        pieces = _infix_split(chunk)  # pieces spell the chunk: one piece is the URL's token too
        tokens.extend(pieces if len(pieces) == 1 or not url(chunk) else [chunk])
    tokens.extend(reversed(suffixes))
    return tokens


def _infix_split(chunk: str) -> list[str]:
    """A chunk split at its infixes, a match at its start ignored (the rest of _attach_tokens)."""
    pieces, start = [], 0
    for m in _spacy_rules()[2](chunk):
        if m.start() == 0:
            continue
        if m.start() != start:
            pieces.append(chunk[start:m.start()])
        if m.start() != m.end():
            pieces.append(chunk[m.start():m.end()])
        start = m.end()
    if chunk[start:]:
        pieces.append(chunk[start:])
    return pieces


@functools.lru_cache(maxsize=1)
def _special_patterns() -> tuple[dict[tuple[str, ...], str], dict[str, tuple[int, ...]], frozenset[tuple[str, str]]]:
    """spaCy's special-case matcher: special cases holding an affix, as the tokens they split into
    without special cases (Tokenizer.add_special_case with faster_heuristics); for each first token
    the pattern lengths that start with it, so that a scan tries only those; and the pairs of tokens
    adjacent in a pattern, since a match across two chunks holds the pair at their boundary."""
    prefix_length, suffix_length, infixes, _, specials, _ = _spacy_rules()
    patterns = {}
    for key in specials:
        if prefix_length(key) or suffix_length(key) or infixes(key):
            patterns[tuple(_split_affixes(key, _NO_SPECIALS))] = key
    lengths: dict[str, set[int]] = {}
    for pattern in patterns:
        lengths.setdefault(pattern[0], set()).add(len(pattern))
    adjacent = frozenset(pair for pattern in patterns for pair in zip(pattern, pattern[1:]))
    if any(len(pattern) == 1 and specials[key] != pattern for pattern, key in patterns.items()):
        raise ValueError("a one-token spaCy special case that changes its token: tokens without two adjacent "
                         "ones of a pattern would need the matcher")
    return patterns, {first: tuple(sorted(n)) for first, n in lengths.items()}, adjacent


def _apply_special_cases(tokens: list[str], chunk_of: list[int]) -> list[str]:
    """Re-split runs of adjacent tokens that spell a special case (Tokenizer._apply_special_cases):
    longest matches first, of equal length the earliest; a match touching a token of any earlier
    one (taken or not) is dropped. A match across a
    single space takes its tokens but changes nothing (its text, space included, is no special case)."""
    patterns, lengths_from, adjacent = _special_patterns()
    if lengths_from.keys().isdisjoint(tokens) or adjacent.isdisjoint(zip(tokens, tokens[1:])):
        return tokens  # no token starts a pattern (most runs), or no two tokens that are adjacent in one
    specials = _spacy_rules()[4]
    matches = [(-n, start, start + n) for start, token in enumerate(tokens) if token in lengths_from
               for n in lengths_from[token]
               if start + n <= len(tokens) and tuple(tokens[start:start + n]) in patterns]
    if not matches:
        return tokens
    seen: set[int] = set()
    chosen = []
    for _, start, end in sorted(matches):
        if start not in seen and end - 1 not in seen and chunk_of[start] == chunk_of[end - 1]:
            chosen.append((start, end))
        seen.update(range(start, end))  # as spaCy's _filter_special_spans: a refused match blocks too
    out, i = [], 0
    for start, end in sorted(chosen):
        out.extend(tokens[i:start])
        out.extend(specials[patterns[tuple(tokens[start:end])]])
        i = end
    return out + tokens[i:]


class _Chunk(NamedTuple):
    """One whitespace-free chunk as spaCy tokenizes it. Its tokens are substrings of the chunk or
    special-case pieces, which spell their key: never empty, never whitespace, so they are words too."""

    pieces: tuple[str, ...]  # affixes and infixes split off: what the special-case matcher sees
    tokens: tuple[str, ...]  # the pieces after the special cases that lie inside the chunk
    has_mark: bool  # a sentence-final mark among the tokens
    first: str  # the first piece
    last: str  # the last piece


# ~100 MB full. A miss costs ~8 us and code has many distinct chunks: a worker scoring 5,000 documents of
# the curate benchmark's corpus meets ~650k, and misses 571k times at this size, 653k at half of it.
@functools.lru_cache(maxsize=1 << 18)
def _chunk(chunk: str) -> _Chunk:
    pieces = tuple(_split_affixes(chunk, _spacy_rules()[4]))
    # a one-token special case spells its token (_special_patterns checks): one piece is its own token
    tokens = pieces if len(pieces) == 1 else tuple(_apply_special_cases(list(pieces), [0] * len(pieces)))
    return _Chunk(pieces, pieces if tokens == pieces else tokens, not _spacy_rules()[5].isdisjoint(tokens),
                  pieces[0], pieces[-1])


_TOKENS, _HAS_MARK = operator.attrgetter("tokens"), operator.attrgetter("has_mark")
_FIRST, _LAST = operator.attrgetter("first"), operator.attrgetter("last")


def _special_case_may_span(chunks: list[_Chunk]) -> bool:
    """Whether two adjacent chunks end and start with a pair adjacent in a special-case pattern, as a
    match across them must (it can then block one inside a chunk)."""
    return len(chunks) > 1 and not _special_patterns()[2].isdisjoint(zip(map(_LAST, chunks), map(_FIRST, chunks[1:])))


_CHUNKS = re.compile(r"(\S+)(\s*)")


def _spacy_tokens(text: str) -> list[str]:
    """spaCy's tokens with its whitespace tokens: a lone space after a chunk is no token, any other
    whitespace run is one. The special-case matcher sees chunks joined by one space as adjacent."""
    tokens: list[str] = []
    lead = len(text) - len(text.lstrip())
    if lead:
        tokens.append(text[:lead])
    group: list[str] = []
    chunk_of: list[int] = []
    for i, m in enumerate(_CHUNKS.finditer(text, lead)):
        pieces = _chunk(m.group(1)).pieces
        group.extend(pieces)
        chunk_of.extend([i] * len(pieces))
        if m.group(2) != " ":
            tokens.extend(_apply_special_cases(group, chunk_of))
            group, chunk_of = [], []
            if m.group(2):
                tokens.append(m.group(2))
    tokens.extend(_apply_special_cases(group, chunk_of))
    return tokens


def spacy_words(text: str) -> list[str]:
    """datatrove's `split_into_words` for English: spaCy's blank English tokenizer, whitespace tokens
    dropped (datatrove/utils/word_tokenizers.py, SpaCyTokenizer + strip_strings). Punctuation marks are
    tokens of their own, so they count as words in every signal that uses this view."""
    return spacy_words_and_sentences(text)[0]


def spacy_words_and_sentences(text: str) -> tuple[list[str], int]:
    """`spacy_words` and the sentence count of datatrove's `split_into_sentences` (spaCy's Sentencizer):
    a sentence ends after a sentence-final mark, at the next token that is not punctuation; at least 1.
    One tokenization serves both.

    Unless a special case could span two chunks, the words are the concatenation of the chunks' tokens
    (whitespace tokens are no words), and without a sentence-final mark the text is one sentence; text
    of chunks joined by single spaces has no whitespace tokens to count. Any other text takes spaCy's
    whole algorithm."""
    chunks = text.split()
    records = list(map(_chunk, chunks))
    if not _special_case_may_span(records):
        words = list(itertools.chain.from_iterable(map(_TOKENS, records)))
        if not any(map(_HAS_MARK, records)):
            return words, 1
        if " ".join(chunks) == text:
            return words, _sentences(words)
    tokens = _spacy_tokens(text)
    return _words(tokens), _sentences(tokens)


def _words(tokens: list[str]) -> list[str]:
    return [t for t in (tok.strip() for tok in tokens) if t]


def _is_punct(token: str) -> bool:
    return all(unicodedata.category(c).startswith("P") for c in token)


def _sentences(tokens: list[str]) -> int:
    *_, punct_chars = _spacy_rules()
    count, seen_end = 1, False
    for token in tokens:  # whitespace tokens (not a lone space) start sentences too
        in_punct = token in punct_chars
        if seen_end and not in_punct and not _is_punct(token):
            count, seen_end = count + 1, False
        elif in_punct:
            seen_end = True
    return count
