"""Agreement of `signals.preset=fineweb` with datatrove's own filters, rule by rule, on real text.

    python benchmarks/agreement.py --fetch            # once, with network: the sdists below
    python benchmarks/agreement.py --curate           # offline from then on

The corpus is real technical English built offline: the docstrings of Python's standard library
(`schemas.sample.stdlib_docstrings(min_words=10)`) and every .rst/.txt/.md file under 300 kB inside the
pinned source distributions of `real_text.DOC_SDISTS` (fetched once with `pip download --no-deps --no-binary :all:`).
Each text is normalized as `clover curate` does, exact duplicates dropped, then handed to both sides.

datatrove lives only in the benchmark's environment (`--datatrove-python`, default /tmp/venv-dt):

    python -m venv /tmp/venv-dt && /tmp/venv-dt/bin/pip install datatrove==0.10.1 spacy==3.8.18 \
        flit_core hatchling hatch-vcs hatch-fancy-pypi-readme setuptools_scm poetry-core pdm-backend

(the build backends let `pip download` read the sdists' metadata; datatrove's English word tokenizer is
spaCy's blank English tokenizer, which needs no model download, so everything runs offline after
this). For each rule, datatrove's decision is its filter run with only that rule switched on, and its
value is the filter's own expression over datatrove's helpers; Clover's are `DocumentScorer` with
preset fineweb and the thresholds `clover curate --set signals.preset=fineweb` resolves. With --curate
the Spark stage also runs on the same documents and its reasons are checked against the pure scorer.

--write-tables regenerates quality/fineweb_tables.py from the benchmark environment's spaCy and datatrove.
"""

from __future__ import annotations

import os
import sys

sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import argparse
import json
import platform
import subprocess
import tempfile
import time

from benchmarks.real_text import DOC_SDISTS, archive_members, fetch_sdists

TEXT_SUFFIXES = (".rst", ".txt", ".md")
SHARED_SWITCH = {name: ("gopher_hash_word_ratio", "gopher_ellipsis_word_ratio")
                 for name in ("gopher_hash_word_ratio", "gopher_ellipsis_word_ratio")}
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs under the datatrove interpreter: one JSON line per document, {rule: [kept, value]}.
DATATROVE_SCRIPT = r'''
import json, sys
import numpy as np
from datatrove.data import Document
from datatrove.pipeline.filters import C4QualityFilter, FineWebQualityFilter, GopherQualityFilter, GopherRepetitionFilter
from datatrove.pipeline.filters.gopher_repetition_filter import find_all_duplicate, find_duplicates, find_top_duplicate, get_n_grams
from datatrove.utils.text import PUNCTUATION_SET, TERMINAL_PUNCTUATION, split_into_sentences, split_into_words

OFF_Q = dict(min_doc_words=None, max_doc_words=None, min_avg_word_length=None, max_avg_word_length=None,
             max_symbol_word_ratio=None, max_bullet_lines_ratio=None, max_ellipsis_lines_ratio=None,
             max_non_alpha_words_ratio=None, min_stop_words=None)
OFF_R = dict(dup_line_frac=None, dup_para_frac=None, dup_line_char_frac=None, dup_para_char_frac=None, top_n_grams=(), dup_n_grams=())
C4_OFF = dict(filter_no_terminal_punct=False, min_num_sentences=-1, filter_lorem_ipsum=False, filter_curly_bracket=False)
OFF_F = dict(line_punct_thr=0.0, short_line_thr=1.0, char_duplicates_ratio=1.0, new_line_ratio=float("inf"))
D = GopherRepetitionFilter()
rep = {"gopher_dup_line_frac": dict(dup_line_frac=D.dup_line_frac), "gopher_dup_para_frac": dict(dup_para_frac=D.dup_para_frac),
       "gopher_dup_line_char_frac": dict(dup_line_char_frac=D.dup_line_char_frac),
       "gopher_dup_para_char_frac": dict(dup_para_char_frac=D.dup_para_char_frac)}
rep |= {f"gopher_top_{n}gram_char_frac": dict(top_n_grams=((n, f),)) for n, f in D.top_n_grams}
rep |= {f"gopher_dup_{n}gram_char_frac": dict(dup_n_grams=((n, f),)) for n, f in D.dup_n_grams}
Q = GopherQualityFilter()
qual = {"gopher_word_count": dict(min_doc_words=Q.min_doc_words, max_doc_words=Q.max_doc_words),
        "gopher_mean_word_length": dict(min_avg_word_length=Q.min_avg_word_length, max_avg_word_length=Q.max_avg_word_length),
        "gopher_hash_word_ratio+gopher_ellipsis_word_ratio": dict(max_symbol_word_ratio=Q.max_symbol_word_ratio),
        "gopher_bullet_line_frac": dict(max_bullet_lines_ratio=Q.max_bullet_lines_ratio),
        "gopher_ellipsis_line_frac": dict(max_ellipsis_lines_ratio=Q.max_ellipsis_lines_ratio),
        "gopher_alpha_word_frac": dict(max_non_alpha_words_ratio=Q.max_non_alpha_words_ratio),
        "gopher_stop_words": dict(min_stop_words=Q.min_stop_words)}
FILTERS = [(name, GopherRepetitionFilter(**(OFF_R | kw))) for name, kw in rep.items()]
FILTERS += [(name, GopherQualityFilter(**(OFF_Q | kw))) for name, kw in qual.items()]
FILTERS += [("c4_sentence_count", C4QualityFilter(**(C4_OFF | dict(min_num_sentences=5)))),
            ("c4_lorem_ipsum", C4QualityFilter(**(C4_OFF | dict(filter_lorem_ipsum=True)))),
            ("c4_curly_bracket", C4QualityFilter(**(C4_OFF | dict(filter_curly_bracket=True))))]
F = FineWebQualityFilter()
FINEWEB = [("fineweb_line_punct_frac", FineWebQualityFilter(**(OFF_F | dict(line_punct_thr=F.line_punct_thr)))),
           ("fineweb_short_line_frac", FineWebQualityFilter(**(OFF_F | dict(short_line_thr=F.short_line_threshold)))),
           ("fineweb_dup_line_char_frac", FineWebQualityFilter(**(OFF_F | dict(char_duplicates_ratio=F.char_duplicates_ratio)))),
           ("fineweb_newline_word_ratio", FineWebQualityFilter(**(OFF_F | dict(new_line_ratio=F.new_line_ratio))))]
C4_CLEAN = C4QualityFilter(**C4_OFF)

def r(a, b):
    return a / b if b else 0.0

def values(text):
    """Each filter's own expression, with datatrove's helpers."""
    words = split_into_words(text)
    paragraphs = D.paragraph_exp.split(text.strip())
    lines = D._line_splitter.split(text)
    v = {"gopher_dup_para_frac": r(find_duplicates(paragraphs)[0], len(paragraphs)),
         "gopher_dup_para_char_frac": r(find_duplicates(paragraphs)[1], len(text)),
         "gopher_dup_line_frac": r(find_duplicates(lines)[0], len(lines)),
         "gopher_dup_line_char_frac": r(find_duplicates(lines)[1], len(text))}
    for n, _ in D.top_n_grams:
        grams = get_n_grams(words, n)
        v[f"gopher_top_{n}gram_char_frac"] = r(find_top_duplicate(grams), len(text)) if grams else 0.0
    for n, _ in D.dup_n_grams:
        v[f"gopher_dup_{n}gram_char_frac"] = r(find_all_duplicate(words, n), len(text))
    non_symbol = [w for w in words if any(ch not in PUNCTUATION_SET for ch in w)]
    all_lines = text.splitlines()
    v |= {"gopher_word_count": len(non_symbol),
          "gopher_mean_word_length": float(np.mean([len(w) for w in non_symbol])) if non_symbol else 0.0,
          "gopher_hash_word_ratio": r(text.count("#"), len(words)),
          "gopher_ellipsis_word_ratio": r(text.count("...") + text.count("…"), len(words)),
          "gopher_bullet_line_frac": r(sum(s.lstrip().startswith("•") or s.lstrip().startswith("-") for s in all_lines), len(all_lines)),
          "gopher_ellipsis_line_frac": r(sum(s.rstrip().endswith("...") or s.rstrip().endswith("…") for s in all_lines), len(all_lines)),
          "gopher_alpha_word_frac": r(sum(any(c.isalpha() for c in w) for w in words), len(words)),
          "gopher_stop_words": len(Q.stop_words.intersection(set(words)))}
    return v

for line in open(sys.argv[1]):
    text = json.loads(line)["text"]
    out = {}
    vals = values(text)
    for name, f in FILTERS:
        kept = f.filter(Document(text=text, id="x")) is True
        for part in name.split("+"):
            out[part] = [kept, vals.get(part)]
    doc = Document(text=text, id="x")
    C4_CLEAN.filter(doc)
    cleaned = doc.text
    lines = [l for l in cleaned.split("\n") if l.strip()]
    fw = {}
    if lines:
        fw = {"fineweb_line_punct_frac": r(sum(1 for l in lines if l.endswith(tuple(TERMINAL_PUNCTUATION))), len(lines)),
              "fineweb_short_line_frac": r(sum(1 for l in lines if len(l) <= 30), len(lines)),
              "fineweb_dup_line_char_frac": r(find_duplicates(lines)[1], len(cleaned.replace("\n", ""))),
              "fineweb_newline_word_ratio": r(cleaned.count("\n"), len(split_into_words(cleaned)))}
    for name, f in FINEWEB:
        out[name] = [f.filter(Document(text=cleaned, id="x")) is True, fw.get(name)]
    out["c4_sentence_count"][1] = sum(len(split_into_sentences(l)) for l in cleaned.split("\n")) if cleaned else 0
    out["_cleaned_empty"] = [not lines, None]
    print(json.dumps(out))
'''

WRITE_TABLES = r'''
import importlib.metadata, sys
import spacy
from datatrove.utils.text import PUNCTUATION_SET, TERMINAL_PUNCTUATION
from spacy.pipeline import Sentencizer
from spacy.symbols import ORTH
tok = spacy.blank("en").tokenizer
rules = {k: tuple(item[ORTH] for item in v) for k, v in sorted(tok.rules.items())
         if k.strip() and not any(c.isspace() for c in k)}  # whitespace never reaches the affix stage
out = [
    f'"""Tables of the fineweb preset: spaCy {spacy.__version__}\'s blank English tokenizer rules (MIT licence, Explosion',
    f"AI), which datatrove {importlib.metadata.version('datatrove')} uses as its English word tokenizer, and datatrove's punctuation sets (Apache-2.0,",
    "Hugging Face). GENERATED by `benchmarks/agreement.py --write-tables` in the benchmark's environment; do not",
    'edit by hand. `quality.text.spacy_words` is the algorithm that reads the spaCy tables."""',
    "",
    "# ruff: noqa: E501",
    f"SPACY_VERSION = {spacy.__version__!r}",
    f"PREFIX = {tok.prefix_search.__self__.pattern!r}",
    f"SUFFIX = {tok.suffix_search.__self__.pattern!r}",
    f"INFIX = {tok.infix_finditer.__self__.pattern!r}",
    f"URL = {tok.url_match.__self__.pattern!r}",
    f"SENTENCE_PUNCT = {''.join(sorted(Sentencizer.default_punct_chars))!r}",
    "# datatrove/utils/text.py: PUNCTUATION_SET (a word made only of these is a symbol) and TERMINAL_PUNCTUATION",
    f"DATATROVE_PUNCTUATION = {''.join(sorted(PUNCTUATION_SET))!r}",
    f"DATATROVE_TERMINAL_PUNCTUATION = {''.join(sorted(TERMINAL_PUNCTUATION))!r}",
    "# special case -> its tokens",
    "EXCEPTIONS = {",
]
out += [f"    {k!r}: {v!r}," for k, v in rules.items()] + ["}", ""]
open(sys.argv[1], "w", encoding="utf-8").write("\n".join(out))
'''


def corpus(folder: str) -> list[dict]:
    """(id, source, normalized text) of every distinct document, in a fixed order."""
    from quality.text import normalize_text
    from schemas.sample import stdlib_docstrings

    raw = [("stdlib docstring", d) for d in stdlib_docstrings(min_words=10)]
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        if not name.endswith(".tar.gz"):
            continue
        for member, data in archive_members(os.path.join(folder, name), TEXT_SUFFIXES, 300_000):
            try:
                raw.append((member, data.decode("utf-8")))
            except UnicodeDecodeError:
                continue
    seen, docs = set(), []
    for source, text in raw:
        text = normalize_text(text)
        if text and text not in seen and len(text.split()) >= 5:
            seen.add(text)
            docs.append({"id": f"d{len(docs) + 1}", "source": source, "text": text})
    return docs


def curate_check(docs: list[dict], scores: dict[str, tuple], cfg_overrides: dict, master: str) -> tuple[int, int]:
    """Run the Spark stage with the preset on the same documents; (documents, reasons that differ)."""
    import pyarrow.parquet as pq

    from dataprep.curate import CurateConfig, run_curate
    from dataprep.spark import spark_session
    from schemas.config import load_config

    cfg = load_config(CurateConfig, None, {**cfg_overrides, "spark.master": master})
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "in.jsonl")
        with open(path, "w", encoding="utf-8") as handle:
            for d in docs:
                handle.write(json.dumps({"id": d["id"], "text": d["text"]}) + "\n")
        spark = spark_session(cfg.spark, "agreement")
        try:
            run_curate(spark, [path], os.path.join(tmp, "out"), cfg, validate=False)
        finally:
            spark.stop()
        got = {}
        for part in ("documents", "rejected"):
            table = pq.read_table(os.path.join(tmp, "out", part), columns=["id"] + (["reason"] if part == "rejected" else []))
            for row in table.to_pylist():
                got[row["id"]] = row.get("reason")
    differ = sum(got.get(d["id"], "missing") != scores[d["id"]][2] for d in docs)
    return len(got), differ


def compare(docs: list[dict], theirs: list[dict], ours: dict, cfg) -> tuple[list[tuple], list[tuple]]:
    """(per rule: name, decision agreement, max abs value difference, datatrove rejections; disagreements)."""
    rules = [name for name in theirs[0] if not name.startswith("_")]
    rows, listed = [], []
    for name in rules:
        agree = max_diff = 0.0
        for d, t in zip(docs, theirs):
            kept_text, scores, _ = ours[d["id"]]
            # datatrove's max_symbol_word_ratio is one switch for both symbol rules: compare both at once
            mine = all(cfg.thresholds[part].holds(scores[part]) for part in SHARED_SWITCH.get(name, (name,)))
            if name.startswith("fineweb_") and not kept_text:
                mine = False  # Clover removes the document as `empty`, datatrove's FineWeb filter too
            same = mine == t[name][0]
            agree += same
            if t[name][1] is not None and not (name.startswith("fineweb_") and not kept_text):
                max_diff = max(max_diff, abs(scores[name] - t[name][1]))
            if not same:
                listed.append((name, d["id"], d["source"], scores[name], t[name][1], t[name][0]))
        rejected = sum(not t[name][0] for t in theirs)
        rows.append((name, agree / len(docs), max_diff, rejected))

    return rows, listed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sdists", default="/tmp/agreement-sdists")
    parser.add_argument("--datatrove-python", default="/tmp/venv-dt/bin/python")
    parser.add_argument("--fetch", action="store_true", help="pip download the sdists first (network)")
    parser.add_argument("--curate", action="store_true", help="also run the Spark stage on the same documents")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--write-tables", action="store_true", help="regenerate quality/fineweb_tables.py and exit")
    parser.add_argument("--show", type=int, default=20, help="disagreements listed per rule")
    args = parser.parse_args()
    if args.write_tables:
        subprocess.run([args.datatrove_python, "-c", WRITE_TABLES, os.path.join(REPO, "quality", "fineweb_tables.py")],
                       check=True)
        return
    if args.fetch:
        fetch_sdists(list(DOC_SDISTS), args.sdists, args.datatrove_python)

    from dataprep.curate import CurateConfig
    from quality.signals import DocumentScorer, first_failing_rule
    from schemas.config import load_config

    docs = corpus(args.sdists)
    overrides = {"signals.preset": "fineweb"}
    cfg = load_config(CurateConfig, None, overrides)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "corpus.jsonl")
        with open(path, "w", encoding="utf-8") as handle:
            for d in docs:
                handle.write(json.dumps({"text": d["text"]}) + "\n")
        started = time.time()
        out = subprocess.run([args.datatrove_python, "-c", DATATROVE_SCRIPT, path], check=True,
                             capture_output=True, text=True).stdout
        datatrove_s = time.time() - started
    theirs = [json.loads(line) for line in out.splitlines()]
    scorer = DocumentScorer(cfg.signals)
    started = time.time()
    ours = {}
    for d in docs:
        kept_text, scores = scorer(d["text"])
        reason = "empty" if not kept_text else first_failing_rule(scores, cfg.thresholds)
        ours[d["id"]] = (kept_text, scores, reason)
    clover_s = time.time() - started

    rows, listed = compare(docs, theirs, ours, cfg)
    print(f"# Agreement of signals.preset=fineweb with datatrove ({time.strftime('%Y-%m-%d')})\n")
    print(f"{len(docs)} documents; machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"datatrove {datatrove_s:.0f} s (single rule runs, many per document), Clover scorer {clover_s:.0f} s\n")
    print("The hash and ellipsis rules share one datatrove switch (max_symbol_word_ratio), so their decision rows "
          "compare that switch with both Clover rules together.\n")
    print("| rule | decisions agree | max abs value difference | datatrove rejects |")
    print("|---|---|---|---|")
    for name, share, diff, rejected in rows:
        print(f"| `{name}` | {100 * share:.2f}% | {diff:.3g} | {rejected} ({100 * rejected / len(docs):.1f}%) |")
    print(f"\nDisagreements: {len(listed)}")
    for name, doc_id, source, mine, their_value, their_kept in listed[: args.show * len(rows)]:
        print(f"- `{name}` {doc_id} ({source}): Clover {mine:.6g}, datatrove {their_value}, datatrove keeps: {their_kept}")
    if args.curate:
        seen, differ = curate_check(docs, ours, overrides, args.master)
        print(f"\nclover curate --set signals.preset=fineweb: {seen} documents out, {differ} whose reason differs "
              "from the pure scorer's")


if __name__ == "__main__":
    main()
