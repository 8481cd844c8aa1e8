"""`clover inspect PATH`: one self-contained HTML report of what a stage kept, removed and why, of a training run, or of a whole demo directory.

The curate page is here; dedup, tokens, training runs and the demo's gate story are in jobs/inspect_dedup.py,
inspect_tokens.py and inspect_run.py; a directory of outputs gets one page per output with a shared index.
Aggregates come from lazy polars scans of the stored Parquet (scores of every document, kept or rejected), so
inspecting needs no Spark and no re-scoring. The evidence in examples is found by the scoring code itself
(`quality.evidence`); the lines C4 cleaning removed by the preset's line pass (`quality.evidence.line_pass`), on
the text before cleaning read again from the curate inputs (curate stores only the cleaned text).
"""

from __future__ import annotations

import posixpath
import sys
from dataclasses import dataclass, field

import polars as pl

from jobs.common import exit_on_config_error
from jobs.flags import Command, Option
from jobs.inspect_data import Section, data_docs_index, exists, href, join, read_json, scan
from jobs.inspect_run import is_gate_story
from jobs.report_html import book, esc, histogram_svg, marked_text, page, table
from quality.c4 import C4Config
from quality.evidence import (
    evidence,
    has_highlight,
    line_outcomes,
    line_pass,
    missing_stop_words,
    removed_line_spans,
    scored_before_cleaning,
)
from quality.signals import SCORE_RANGES, Bounds, SignalConfig, preset_min_words
from quality.text import normalize_text
from schemas import storage
from schemas.config import ConfigError, parse_set_option
from schemas.ingest import IngestConfig, input_format, parquet_units, read_unit
from training.trainer.gate import GateConfig

FACTORS = (0.75, 0.9, 1.0, 1.1, 1.25)
BINS = 40
EMPTY = "empty"
UNSCORED = "not scored (early exit)"  # what-if: a rule over a score curate's early exit did not compute



@dataclass
class CurateView:
    """A curate output: its report, thresholds in check order, and the rows (kept and rejected) as one scan."""

    path: str
    report: dict
    order: list[str]
    thresholds: dict[str, Bounds]
    rows: pl.LazyFrame  # id, source, every score, fastText labels, reason (null when kept)

    @classmethod
    def open(cls, path: str) -> CurateView:
        report = read_json(join(path, "report.json"))
        cfg = report["config"]
        fasttext = [step["name"] for step in cfg.get("fasttext", [])]
        order = [f"fasttext_{name}_score" for name in fasttext] + list(SCORE_RANGES)
        thresholds = {name: Bounds(**bounds) for name, bounds in cfg["thresholds"].items()}
        columns = ["id", "source", *order, *(f"fasttext_{name}_label" for name in fasttext)]
        return cls(path, report, order, thresholds, both_outputs(path, columns))

    @property
    def signals(self) -> dict:
        return self.report["config"].get("signals", {})

    @property
    def c4(self) -> C4Config:
        return C4Config(**self.signals.get("c4", {}))

    @property
    def signal_config(self) -> SignalConfig:
        """How curate scored: the preset, C4 settings and repeated n-gram size it recorded."""
        return SignalConfig(preset=self.signals.get("preset", "clover"), c4=self.c4,
                            repeated_ngram_n=self.signals.get("repeated_ngram_n", 10))


def both_outputs(path: str, columns: list[str]) -> pl.LazyFrame:
    """These columns of the kept (documents/) and rejected (rejected/) rows as one scan, with `reason` (null: kept)."""
    parts = [frame.with_columns(reason=pl.lit(None, pl.String)) if frame is not None and name == "documents"
             else frame for name in ("documents", "rejected")
             for frame in [scan(join(path, name), columns + (["reason"] if name == "rejected" else []))]]
    return pl.concat([p for p in parts if p is not None], how="vertical_relaxed")


def passes(name: str, bounds: Bounds) -> pl.Expr:
    """Bounds.holds on a score column; a missing score (an empty document) never passes."""
    value = pl.col(name).fill_nan(None)
    ok = pl.lit(True)
    if bounds.min is not None:
        ok = ok & (value >= bounds.min)
    if bounds.max is not None:
        ok = ok & (value <= bounds.max)
    return ok.fill_null(False)


def first_failing(order: list[str], thresholds: dict[str, Bounds]) -> pl.Expr:
    """quality.signals.first_failing_rule as a polars expression (null: kept). A document curate found empty
    stays so; one it stopped scoring early (`early_exit`) is UNSCORED where a rule before any failing one
    reads a score it did not compute."""
    failing = [pl.when(pl.col(name).is_null()).then(pl.lit(UNSCORED)).when(~passes(name, thresholds[name]))
               .then(pl.lit(name)) for name in order if name in thresholds]
    empty = pl.when(pl.col("reason") == EMPTY).then(pl.lit(EMPTY))
    return pl.coalesce([empty, *failing, pl.lit(None, pl.String)])


def unscored_rows(view: CurateView) -> int:
    """Rejected rows that curate's early exit stopped scoring at their reason (a later score is null)."""
    partial = pl.any_horizontal(pl.col(view.order).is_null()) & (pl.col("reason") != EMPTY)
    return int(view.rows.select(partial.sum()).collect().item())


def apply_sets(thresholds: dict[str, Bounds], sets: list[str], known: list[str]) -> dict[str, Bounds]:
    """thresholds with `thresholds.NAME.min|max=V` or `thresholds.NAME=null` applied (nothing else needs no re-scoring)."""
    proposed = {name: Bounds(b.min, b.max) for name, b in thresholds.items()}
    for assignment in sets:
        key, value = parse_set_option(assignment)
        parts = key.split(".")
        if parts[0] != "thresholds" or len(parts) not in (2, 3) or parts[1] not in known:
            raise ConfigError(f"--set {key}: inspect can only change thresholds.SCORE[.min|.max] of a known score "
                              "(other settings change the scores and need a curate re-run)")
        if len(parts) == 2:
            if value is not None:
                raise ConfigError(f"--set {key}: only null (disable the rule) is allowed without .min or .max")
            proposed.pop(parts[1], None)
            continue
        if parts[2] not in ("min", "max") or not (value is None or isinstance(value, int | float)):
            raise ConfigError(f"--set {key}={value!r}: expected .min or .max and a number or null")
        bounds = proposed.setdefault(parts[1], Bounds())
        setattr(bounds, parts[2], None if value is None else float(value))
    return proposed


def funnel_counts(view: CurateView, thresholds: dict[str, Bounds]) -> dict[str | None, int]:
    """Documents per first failing rule (None: kept) under `thresholds`, from the stored scores."""
    counts = (view.rows.select(first_failing(view.order, thresholds).alias("r"))
              .group_by("r").len().collect())
    return dict(zip(counts["r"].to_list(), counts["len"].to_list()))


def funnel_section(view: CurateView, sets: list[str]) -> str:
    """The funnel: input, quarantined, then what each rule removes in check order, and what stays."""
    report = view.report
    configs = [funnel_counts(view, view.thresholds)]
    if sets:
        configs.append(funnel_counts(view, apply_sets(view.thresholds, sets, view.order)))
    blank = [""] * len(configs)
    quarantined = sum(report["quarantined"].values())
    left = [report["input"] - quarantined] * len(configs)
    rows = [["input", *blank, *[report["input"]] * len(configs)], ["quarantined", *[quarantined] * len(configs), *left]]
    for reason in [EMPTY, *view.order, UNSCORED]:
        removed = [counts.get(reason, 0) for counts in configs]
        if any(removed):
            left = [n - r for n, r in zip(left, removed)]
            rows.append([reason, *removed, *left])
    rows.append(["kept", *blank, *(counts.get(None, 0) for counts in configs)])
    headers = ["step", "removed", "remaining"]
    if sets:
        headers = ["step", "removed", "removed (proposed)", "remaining", "remaining (proposed)"]
    note = f"<p>Proposed: <code>{esc(' '.join(sets))}</code>, from the stored scores (no re-scoring).</p>" if sets else ""
    if sets and (unknown := configs[-1].get(UNSCORED, 0)):
        note += (f"<p>{unknown:,} documents that curate's <code>early_exit</code> stopped scoring at their reason meet "
                 "a proposed rule over a score it did not compute: they count as removed, so up to "
                 f"{unknown:,} more could be kept.</p>")
    kept = configs[0].get(None, 0)
    check = "" if kept == report["output"] else (
        f"<p><b>Note:</b> the stored scores give {kept:,} kept; report.json says {report['output']:,}.</p>")
    return note + table(headers, rows, "funnel") + check


def sources_section(view: CurateView, top: int = 20) -> str:
    """Removals per reason and per source (the sources that lost most documents first)."""
    counts = (view.rows.group_by("source", "reason").len().collect()
              .with_columns(pl.col("source").fill_null("(none)"), pl.col("reason").fill_null("kept")))
    reasons = sorted(set(counts["reason"]) - {"kept"}, key=lambda r: ([EMPTY, *view.order] + [r]).index(r))
    per_source: dict[str, dict[str, int]] = {}
    for source, reason, n in counts.iter_rows():
        per_source.setdefault(source, {})[reason] = n
    ranked = sorted(per_source.items(), key=lambda item: (-sum(n for r, n in item[1].items() if r != "kept"), item[0]))
    rows = [[source, by.get("kept", 0), sum(n for r, n in by.items() if r != "kept"), *(by.get(r, 0) for r in reasons)]
            for source, by in ranked[:top]]
    totals = counts.group_by("reason").agg(pl.col("len").sum()).sort("len", descending=True)
    more = f"<p>{len(ranked) - top:,} more sources not shown.</p>" if len(ranked) > top else ""
    return (table(["reason", "documents"], [r for r in totals.iter_rows() if r[0] != "kept"], "reasons")
            + table(["source", "kept", "removed", *reasons], rows, "sources") + more)


def _ranges(view: CurateView) -> dict[str, tuple[float, float]]:
    """Histogram range per score: its valid range where bounded, else min to the 99.5th percentile."""
    unbounded = [n for n in view.order if SCORE_RANGES.get(n, (0.0, 1.0))[1] > 1.0]
    stats = view.rows.select(
        *(pl.col(n).fill_nan(None).min().alias(f"{n}:lo") for n in unbounded),
        *(pl.col(n).fill_nan(None).quantile(0.995).alias(f"{n}:hi") for n in unbounded),
    ).collect().row(0, named=True) if unbounded else {}
    ranges = {}
    for name in view.order:
        lo, hi = SCORE_RANGES.get(name, (0.0, 1.0))
        if name in unbounded:
            lo, hi = stats[f"{name}:lo"] or 0.0, stats[f"{name}:hi"] or 1.0
            bounds = view.thresholds.get(name)
            limits = [v for v in (bounds.min, bounds.max) if v is not None] if bounds else []
            hi = max([hi, *(v * 1.1 for v in limits if v <= 10 * max(hi, 1.0))])
        ranges[name] = (lo, hi if hi > lo else lo + 1.0)
    return ranges


def histograms(view: CurateView) -> dict[str, tuple[list[float], list[int], list[int]]]:
    """Per score: bin edges and kept and rejected counts per bin (values outside the range go to the end bins)."""
    ranges = _ranges(view)
    rejected = pl.col("reason").is_not_null().cast(pl.Int32)

    def binned(name: str) -> pl.Expr:
        lo, hi = ranges[name]
        index = ((pl.col(name).fill_nan(None) - lo) / (hi - lo) * BINS).floor().clip(0, BINS - 1).cast(pl.Int32)
        return (index * 2 + rejected).drop_nulls().value_counts().implode().alias(name)

    row = view.rows.select(*(binned(n) for n in view.order)).collect().row(0, named=True)
    result = {}
    for name in view.order:
        kept, rej = [0] * BINS, [0] * BINS
        for entry in row[name]:
            key, count = entry[name], entry["count"]
            (rej if key % 2 else kept)[key // 2] += count
        lo, hi = ranges[name]
        result[name] = ([lo + (hi - lo) * i / BINS for i in range(BINS + 1)], kept, rej)
    return result


def histograms_section(view: CurateView) -> str:
    figures = []
    for name, (edges, kept, rejected) in histograms(view).items():
        bounds = view.thresholds.get(name)
        limits = [v for v in (bounds.min, bounds.max) if v is not None] if bounds else []
        rule = " ".join(f"{side} {v:g}" for side, v in zip(("min", "max"), (bounds.min, bounds.max))
                        if v is not None) if bounds else "no rule"
        figures.append(f'<figure class="hist" data-score="{esc(name)}"><figcaption><b>{esc(name)}</b> ({esc(rule)}); '
                       f'kept {sum(kept):,}, rejected {sum(rejected):,}</figcaption>'
                       f"{histogram_svg(edges, kept, rejected, limits)}</figure>")
    legend = ('<p>Green: kept, red: rejected (by any rule); bar heights on a log scale; dashed blue: the '
              "threshold. Values past the range are counted in the end bins.</p>")
    return legend + f'<div class="hists">{"".join(figures)}</div>'


def whatif(view: CurateView) -> list[tuple[str, str, float, list[int]]]:
    """(score, side, bound, documents kept at bound × each of FACTORS) for every bound, the others unchanged."""
    active = {n: b for n, b in view.thresholds.items() if n in view.order}
    rules = [(n, side, getattr(b, side)) for n, b in active.items() for side in ("min", "max")
             if getattr(b, side) is not None]
    fails = pl.sum_horizontal(*((~passes(n, b)).cast(pl.Int32) for n, b in active.items())) if active else pl.lit(0)
    exprs = []
    for i, (name, side, bound) in enumerate(rules):
        others_pass = (pl.col("_fails") - (~passes(name, active[name])).cast(pl.Int32)) == 0
        for j, factor in enumerate(FACTORS):
            scaled = Bounds(**{"min": active[name].min, "max": active[name].max, side: bound * factor})
            exprs.append((others_pass & passes(name, scaled)).sum().alias(f"{i}:{j}"))
    if not exprs:
        return []
    row = view.rows.with_columns(_fails=fails).select(exprs).collect().row(0)
    return [(name, side, bound, list(row[i * len(FACTORS):(i + 1) * len(FACTORS)]))
            for i, (name, side, bound) in enumerate(rules)]


def whatif_section(view: CurateView) -> str:
    headers = ["rule", "bound", *(f"×{f:g}" if f != 1.0 else "current" for f in FACTORS)]
    rows = [[f"{name}.{side}", bound, *kept] for name, side, bound, kept in whatif(view)]
    unknown = unscored_rows(view)
    partial = (f"<p>{unknown:,} rejected documents were scored only up to their reason (curate's "
               "<code>early_exit</code>): every column counts them as rejected, so a loosened bound could keep "
               f"up to {unknown:,} more than it shows.</p>") if unknown else ""
    return ("<p>Documents kept by the whole config when one bound is scaled (others unchanged), from the stored "
            "scores. Try a change with <code>clover inspect PATH --set thresholds.NAME.max=V</code>.</p>"
            + partial + table(headers, rows, "whatif"))


def pick_samples(view: CurateView, k: int, seed: int) -> pl.DataFrame:
    """Up to k rejected documents per reason: those with the smallest hash of (id, seed)."""
    rejected = scan(join(view.path, "rejected"))
    if rejected is None or k <= 0:
        return pl.DataFrame()
    key = pl.col("id").hash(seed)
    ids = (rejected.select("id", "reason").filter(key.rank("ordinal").over("reason") <= k)
           .collect()["id"])
    return rejected.filter(pl.col("id").is_in(ids.implode())).with_columns(_key=key).sort("reason", "_key").collect()


# ---- C4 line cleaning: the lines it removed, struck through

INPUT_RECORDS = 20_000  # input records read again, at most, for the text before C4 line cleaning
CANDIDATES_PER_EXAMPLE = 10  # changed documents collected per example shown, before the pick by hash


@dataclass
class BeforeCleaning:
    """Texts as curate scored them before C4 line cleaning (normalized), read again from the curate inputs."""

    texts: dict[str, str] = field(default_factory=dict)  # id -> normalized input text
    changed: list[str] = field(default_factory=list)  # ids whose cleaning removes lines, in input order
    read: int = 0  # input records read
    note: str = ""  # why none could be read, when none could


def _input_records(view: CurateView):
    """(id, text) of the curate inputs' well-formed records, in curate's order (report.json `inputs`, sorted by
    URI; lines or rows in order), read with the recorded ingest settings by `schemas.ingest` (no Spark); a
    repeated id only the first time, the one curate scored (the others went to quarantine)."""
    cfg = IngestConfig(**view.report["config"].get("ingest", {}))
    seen: set[str] = set()
    for uri in view.report.get("inputs") or []:
        for unit in (parquet_units(uri) if input_format(uri) == "parquet" else [0]):
            for batch in read_unit(uri, unit, cfg):
                for record_id, text, error in zip(*(batch.column(n).to_pylist() for n in ("id", "text", "error"))):
                    if error is None and record_id not in seen:
                        seen.add(record_id)
                        yield record_id, text


def read_before_cleaning(view: CurateView, wanted: set[str], changed: int, budget: int = INPUT_RECORDS) -> BeforeCleaning:
    """The pre-cleaning text of the `wanted` ids and of the first `changed` documents whose C4 cleaning removes
    lines, from the first `budget` input records at most. Curate stores only the cleaned text."""
    found = BeforeCleaning()
    if not view.report.get("inputs"):
        found.note = "report.json names no inputs"
        return found
    try:
        for record_id, raw in _input_records(view):
            found.read += 1
            more = len(found.changed) < changed
            if record_id in wanted or more:
                text = normalize_text(raw)
                removes = line_pass(text, view.signal_config)[1] > 0
                if record_id in wanted or (more and removes):
                    found.texts[record_id] = text
                if more and removes:
                    found.changed.append(record_id)
            if found.read >= budget or (len(found.changed) >= changed and wanted <= found.texts.keys()):
                break
    except (OSError, ValueError) as err:
        found.note = f"the inputs could not be read again ({type(err).__name__}: {err})"
    return found


def stored_text_cleaned(view: CurateView, row: dict) -> bool:
    """Whether a row's stored text is C4-cleaned: line cleaning is on and C4's line pass ran (curate's
    early exit, stopping before it, stores the text as it arrived)."""
    return view.c4.apply_line_cleaning and row.get("c4_removed_line_frac") is not None


def scored_before_cleaning_ids(view: CurateView, picked: pl.DataFrame) -> set[str]:
    """The picked samples whose rule a preset scores before C4 line cleaning (fineweb, redpajama) while the
    stored text is the cleaned one: their input text, read again, is the text that rule saw, to mark."""
    preset = view.signal_config.preset
    if not picked.height:
        return set()
    return {row["id"] for row in picked.select("id", "reason", "c4_removed_line_frac").iter_rows(named=True)
            if stored_text_cleaned(view, row) and has_highlight(row["reason"])
            and scored_before_cleaning(row["reason"], preset)}


def _cleaning_block(text: str, stored: str | None, signals: SignalConfig, frac: float | None) -> str:
    """The text before cleaning, the removed lines struck; with the cleaned text curate stored, a check that
    the text cleans to it (else the input changed since)."""
    outcomes = line_outcomes(text, signals)
    removed = sum(1 for dropped in outcomes if dropped)
    nonblank = sum(1 for dropped in outcomes if dropped is not None)
    same = stored is None or line_pass(text, signals)[0] == stored
    check = ("" if same else " <b>This input text does not clean to the stored text: the input changed since "
             "curate ran.</b>")
    stored_frac = f"; stored c4_removed_line_frac {frac:.4g}" if frac is not None else ""
    return (f'<p class="c4-lines" data-removed="{removed}" data-same="{str(same).lower()}">C4 line cleaning '
            f"removed {removed} of {nonblank} non-blank lines (struck through){stored_frac}.{check}</p>"
            + marked_text(text, removed_line_spans(text, outcomes)))


def _scored_text(view: CurateView, row: dict, scored: BeforeCleaning | None) -> tuple[str | None, str]:
    """The text the rejecting rule scored, to mark (None: not available), and a note saying what is shown.
    The fineweb and redpajama presets score some rules on the text before C4 line cleaning, which curate
    does not store: it is read again (`scored`) and kept only if the preset's line pass cleans it to the
    stored text."""
    reason, preset = row["reason"], view.signal_config.preset
    if not has_highlight(reason):
        return row["text"], f"<p>No span stands for <code>{esc(reason)}</code>: nothing is marked for it.</p>"
    if not (stored_text_cleaned(view, row) and scored_before_cleaning(reason, preset)):
        return row["text"], ""
    text = scored.texts.get(row["id"]) if scored is not None else None
    if text is not None and line_pass(text, view.signal_config)[0] == row["text"]:
        return text, (f"<p><code>signals.preset: {esc(preset)}</code> scores <code>{esc(reason)}</code> on the "
                      "text before C4 line cleaning: that text is shown, read again from the curate input, with "
                      "the lines cleaning removed struck through.</p>")
    why = scored.note if scored is not None and scored.note else "it is not among the input records read again"
    return None, (f"<p><code>signals.preset: {esc(preset)}</code> scores <code>{esc(reason)}</code> on the text "
                  f"before C4 line cleaning, which curate does not store, and {esc(why)}: nothing is marked.</p>")


def _sample_html(view: CurateView, row: dict, before: BeforeCleaning | None = None,
                 scored: BeforeCleaning | None = None) -> str:
    reason = row["reason"]
    text, note = _scored_text(view, row, scored)
    shown = marked_text(row["text"] if text is None else text,
                        [] if text is None else evidence(text, reason, view.signal_config))
    bounds = view.thresholds.get(reason)
    facts = [f"id <code>{esc(row['id'])}</code>", f"source {esc(row['source'])}"]
    if reason in row and row[reason] is not None:
        facts.append(f"{esc(reason)} = {row[reason]:.4g} (min {bounds.min}, max {bounds.max})" if bounds
                     else f"{esc(reason)} = {row[reason]:.4g}")
    facts += [f"{esc(col)} {esc(row[col])} (p={row[col[:-6] + '_score'] or 0:.3f})"
              for col in row if col.startswith("fasttext_") and col.endswith("_label") and row[col]]
    if reason == "gopher_stop_words" and (missing := missing_stop_words(text or row["text"], view.signal_config.preset)):
        facts.append(f"missing stop words: {esc(', '.join(missing))}")
    cleaned = ""
    if before is not None and text == row["text"] and (row.get("c4_removed_line_frac") or 0) > 0:
        original = before.texts.get(row["id"])  # (a text scored before cleaning is shown so already)
        cleaned = ("<p>Before C4 line cleaning:</p>" + _cleaning_block(original, row["text"], view.signal_config,
                                                                        row["c4_removed_line_frac"])
                   if original is not None else
                   f"<p>C4 line cleaning removed {row['c4_removed_line_frac']:.1%} of its lines; its text before "
                   f"cleaning is not among the first {before.read:,} input records read again.</p>")
    return (f'<div class="sample" data-reason="{esc(reason)}"><p>{"; ".join(facts)}</p>'
            f"{note}{shown}{cleaned}</div>")


def samples_section(view: CurateView, picked: pl.DataFrame, before: BeforeCleaning | None,
                    scored: BeforeCleaning | None = None) -> str:
    intro = ("<p>Highlighted: repeated n-grams or lines (orange), failing words (red), stop words found (green), "
             f"lines C4 cleaning removes (struck through), each as <code>signals.preset: "
             f"{esc(view.signal_config.preset)}</code> defines it (its words, n-grams and line pass). "
             + ("The stored text is already C4-cleaned (<code>signals.c4.apply_line_cleaning</code>): for a document "
                "whose cleaning removed lines, its text before cleaning follows, read again from the curate input, "
                "with the removed lines struck through.</p>" if before is not None else "</p>"))
    parts = [intro]
    current = None
    for row in picked.iter_rows(named=True):
        if row["reason"] != current:
            current = row["reason"]
            parts.append(f'<h3 id="reason-{esc(current)}">{esc(current)}</h3>')
        parts.append(_sample_html(view, row, before, scored))
    return "".join(parts)


def c4_examples(view: CurateView, k: int, seed: int, before: BeforeCleaning | None) -> list[tuple[dict, str]]:
    """Up to k (stored row, text before cleaning) of documents, kept or rejected, whose C4 line cleaning removed
    lines: the smallest hash of (id, seed) among the first changed ones of the inputs (`before`), or among all
    with c4_removed_line_frac > 0 when the stored text is not cleaned (it is then the text before cleaning)."""
    rows = both_outputs(view.path, ["id", "source", "text", "c4_removed_line_frac"])
    key = pl.col("id").hash(seed)
    if before is None:
        picked = rows.filter(pl.col("c4_removed_line_frac") > 0).sort(key).head(k).collect()
        return [(row, row["text"]) for row in picked.iter_rows(named=True)]
    picked = rows.filter(pl.col("id").is_in(before.changed)).sort(key).head(k).collect()
    return [(row, before.texts[row["id"]]) for row in picked.iter_rows(named=True)]


# What each preset's line pass strikes, in the report's words.
_LINE_PASS_RULES = {
    "clover": "<code>quality.c4.c4_clean</code>, the function curate calls, drops it: a line with “javascript” or "
              "a policy phrase, or failing the line rules ({rules}). Citation markers ([1], [edit]) are deleted in "
              "place, not struck.",
    "fineweb": "<code>quality.presets.fineweb_c4</code> (datatrove's C4QualityFilter line pass), the function curate "
               "calls, drops it: a line with “javascript” or a policy phrase, or failing the line rules on its spaCy "
               "words ({rules}).",
    "redpajama": "<code>quality.redpajama.redpajama_line_pass</code> (C4's line rules on RPv2's line signals), the "
                 "function curate calls, drops it: “javascript” among its normalized words, or failing the line "
                 "rules ({rules}).",
}


def c4_section(view: CurateView, k: int, seed: int, before: BeforeCleaning | None) -> str:
    signals = view.signal_config
    cfg = signals.c4
    min_words = (cfg.min_words_per_line or 0) if signals.preset == "clover" else preset_min_words(cfg)
    rules = (f"require_terminal_punct {cfg.require_terminal_punct}, min_words_per_line {min_words}, "
             f"max_word_length {cfg.max_word_length}")
    if before is None:
        intro = ("<p><code>signals.c4.apply_line_cleaning</code> is off: the stored text is the text before "
                 "cleaning, and the lines cleaning would remove are struck through (they were scored, not removed).")
    else:
        intro = ("<p>Curate stores the cleaned text. The text before cleaning is read again from the curate inputs "
                 f"(report.json <code>inputs</code>, {before.read:,} records read, at most {INPUT_RECORDS:,}): of the "
                 f"first {CANDIDATES_PER_EXAMPLE * k:,} documents whose cleaning removes lines, the {k} with the "
                 "smallest hash of (id, --seed).")
        if before.note:
            return intro + f" Not shown: {esc(before.note)}.</p>"
    intro += f" Under <code>signals.preset: {esc(signals.preset)}</code> a line is struck when " \
             + _LINE_PASS_RULES[signals.preset].format(rules=esc(rules)) + "</p>"
    blocks = []
    for row, text in c4_examples(view, k, seed, before):
        outcome = f"rejected: {esc(row['reason'])}" if row["reason"] else "kept"
        stored = row["text"] if before is not None else None
        blocks.append(f'<div class="sample c4" data-id="{esc(row["id"])}"><p>id <code>{esc(row["id"])}</code>; '
                      f"source {esc(row['source'])}; {outcome}</p>"
                      f"{_cleaning_block(text, stored, signals, row['c4_removed_line_frac'])}</div>")
    return intro + ("".join(blocks) or "<p>No document had lines removed.</p>")


def quarantine_section(path: str, limit: int = 200) -> str:
    """Quarantined records by reason, then the first `limit` by file and line."""
    frame = scan(join(path, "quarantine"))
    if frame is None:
        return "<p>No quarantine.</p>"
    counts = frame.group_by("reason").len().sort("len", descending=True).collect()
    rows = frame.select("input_file", "line", "reason", "raw").sort("input_file", "line").head(limit).collect()
    shown = [[f, line, reason, (raw or "")[:300]] for f, line, reason, raw in rows.iter_rows()]
    total = int(counts["len"].sum()) if counts.height else 0
    more = f"<p>First {limit:,} of {total:,} shown.</p>" if total > limit else ""
    return (table(["reason", "records"], counts.iter_rows(), "quarantine-reasons")
            + table(["file", "line", "reason", "raw (first 300 characters)"], shown, "quarantine") + more)


def curate_sections(path: str, samples: int, seed: int, sets: list[str]) -> list[Section]:
    view = CurateView.open(path)
    picked = pick_samples(view, samples, seed)
    before = None
    if view.c4.apply_line_cleaning:  # the stored text is cleaned: read the text before again
        wanted = set(picked.filter(pl.col("c4_removed_line_frac") > 0)["id"]) if picked.height else set()
        before = read_before_cleaning(view, wanted | scored_before_cleaning_ids(view, picked),
                                      CANDIDATES_PER_EXAMPLE * samples)
    return [
        ("funnel", "Funnel", funnel_section(view, sets)),
        ("removals", "Removals per reason and source", sources_section(view)),
        ("histograms", "Scores: kept against rejected", histograms_section(view)),
        ("whatif", "What-if thresholds", whatif_section(view)),
        ("samples", "Examples per rejection reason", samples_section(view, picked, before, before)),
        ("c4-lines", "Lines C4 cleaning removed", c4_section(view, samples, seed, before)),
        ("quarantine", "Quarantine", quarantine_section(path)),
    ]


def _kind(path: str) -> str | None:
    """What PATH holds: "run" (a training run), "gate-story" (the demo's two gate-story arms), "tokenize" (token
    shards), a stage's name (its report.json), or None (not a Clover output: perhaps a directory of them)."""
    if exists(join(path, "metrics.jsonl")) or (exists(join(path, "config.json")) and exists(join(path, "checkpoints"))):
        return "run"
    if is_gate_story(path):
        return "gate-story"
    if exists(join(path, "manifest.json")) and read_json(join(path, "manifest.json")).get("kind") == "tokens":
        return "tokenize"
    if exists(join(path, "report.json")):
        return str(read_json(join(path, "report.json")).get("stage") or "stage")
    return None


def stage_summary(path: str) -> str:
    """Any other stage: its report.json counts."""
    report = read_json(join(path, "report.json"))
    rows = [["input", report.get("input")], ["output", report.get("output")],
            *([f"removed: {k}", v] for k, v in (report.get("removed") or {}).items()),
            *([f"quarantined: {k}", v] for k, v in (report.get("quarantined") or {}).items())]
    return table(["", "records"], rows, "stage-counts")


def stage_sections(path: str, kind: str, cfg: InspectConfig, sets: list[str]) -> list[Section]:
    """The sections of one stage output's page."""
    from jobs.inspect_dedup import dedup_sections
    from jobs.inspect_run import gate_story_sections, run_sections
    from jobs.inspect_tokens import tokens_sections

    if kind == "curate":
        return curate_sections(path, cfg.samples, cfg.seed, sets)
    if kind == "run":
        return run_sections(path)
    if kind == "gate-story":
        return gate_story_sections(path)
    if kind == "dedup":
        sections = dedup_sections(path, cfg.samples, cfg.seed)
    elif kind == "tokenize":
        sections = tokens_sections(path, cfg.samples, cfg.seed, cfg.gate, cfg.sample_rows)
    else:
        sections = [("counts", "Counts", stage_summary(path))]
    return sections + [("quarantine", "Quarantine", quarantine_section(path))]


def data_docs_section(path: str, out: str | None) -> list[Section]:
    """A link to the output's Data Docs site, when `clover validate` or the stage's gate built one; relative
    when the report (`out`) lies on the same filesystem, else absolute."""
    try:
        found = data_docs_index(path)
    except (OSError, ValueError):
        return []
    if found is None:
        return []
    index, validation = found
    failed, total = len(validation.get("failed") or []), validation.get("expectations")
    verdict = ("" if "success" not in validation else " (passed)" if validation["success"]
               else f" (failed: {failed} of {total} expectations)")
    return [("data-docs", "Data Docs", f'<p><a class="data-docs" href="{esc(href(index, out))}">Great Expectations '
             f"Data Docs</a> of this output's validation{esc(verdict)}: one page per suite and run, offline.</p>")]


def _subdirectories(path: str) -> list[str]:
    import pyarrow.fs as pafs

    fs, root = storage.resolve(path)
    infos = fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
    return sorted(join(path, i.base_name) for i in infos
                  if i.type == pafs.FileType.Directory and not i.base_name.startswith((".", "_")))


PAGE_ORDER = {"curate": 0, "dedup": 1, "tokenize": 3, "run": 4, "gate-story": 5}


def find_outputs(path: str) -> list[tuple[str, str]]:
    """(directory, kind) of every Clover output directly under PATH or one level deeper (runs/NAME), in
    pipeline order: what `clover demo --out DIR` leaves. The gate story gets its comparison page, and its arms
    and data their own pages."""
    found = []
    for child in _subdirectories(path):
        kind = _kind(child)
        if kind is not None:
            found.append((child, kind))
            if kind != "gate-story":
                continue
        found += [(grandchild, k) for grandchild in _subdirectories(child) if (k := _kind(grandchild))]
    return sorted(found, key=lambda item: (PAGE_ORDER.get(item[1], 2), item[0]))


def _page(path: str, kind: str, cfg: InspectConfig, sets: list[str]) -> list[Section]:
    """A page of the directory report; an output that cannot be read shows its error instead of stopping the rest."""
    try:
        return stage_sections(path, kind, cfg, sets)
    except Exception as err:  # noqa: BLE001 - one broken output must not hide the others
        return [("error", "Error", f"<p>{esc(type(err).__name__)}: {esc(err)}</p>")]


def build_report(path: str, samples: int = 5, seed: int = 0, sets: list[str] | None = None,
                 cfg: InspectConfig | None = None, out: str | None = None) -> str:
    """The report's HTML: one page for a stage output or run, one page per output with a shared index for a
    directory of them (a `clover demo` directory). `out`: where the report will be written, for relative links
    to each output's Data Docs (absolute when None)."""
    cfg = cfg or InspectConfig(samples=samples, seed=seed)
    path = path.rstrip("/") or "/"
    kind = _kind(path)
    if kind is not None:
        return page(f"clover inspect: {kind} {path}",
                    stage_sections(path, kind, cfg, sets or []) + data_docs_section(path, out))
    outputs = find_outputs(path) if exists(path) else []
    if not outputs:
        raise ConfigError(f"{path}: neither a Clover stage output, a training run, nor a directory holding them")
    pages = [(f"page-{i}", f"{kind} {posixpath.relpath(child, path)}",
              _page(child, kind, cfg, sets or []) + data_docs_section(child, out))
             for i, (child, kind) in enumerate(outputs)]
    return book(f"clover inspect: {path}", pages)


@dataclass
class GateSettings:
    """The trainer's batch gate as the tokens page applies it to single rows (defaults: training.trainer.gate)."""

    ngram: int = field(default=GateConfig.ngram, metadata={"help": "n of the repeated n-gram fraction, in tokens"})
    max_fraction: float = field(default=GateConfig.max_fraction, metadata={
        "help": "rows above this repeated n-gram fraction are shown as rejected (the trainer's gate.max_fraction)"})


@dataclass
class InspectConfig:
    samples: int = field(default=5, metadata={
        "help": "examples per section: rejected documents per reason, near-duplicate pairs, rejected token rows"})
    seed: int = field(default=0, metadata={"help": "seed of the example choice"})
    sample_rows: int = field(default=2000, metadata={
        "help": "token rows sampled for the top tokens and the batch gate's fractions"})
    gate: GateSettings = field(default_factory=GateSettings)


COMMAND = Command(
    description=__doc__.split("\n")[0],
    config=InspectConfig,
    options=(
        Option("path", help="a stage output, a training run, or a directory of them (clover demo --out DIR)",
               kwargs={"metavar": "PATH"}),
        Option("--out", help="HTML file to write", kwargs={"default": "report.html"}),
        Option("--samples", "samples"),
        Option("--seed", "seed"),
    ),
)
PROPOSAL = "thresholds."  # --set thresholds.NAME.max=V: a proposed curate threshold, not an inspect setting


@exit_on_config_error
def main(argv: list[str] | None = None, prog: str = "clover inspect") -> int:
    parser = COMMAND.parser(prog)
    parser.epilog = ("--set thresholds.NAME.min|max=V proposes a curate threshold: the funnel shows its effect "
                     "from the stored scores (repeatable).")
    args = parser.parse_args(argv)
    sets = [s for s in args.set if s.startswith(PROPOSAL)]
    args.set = [s for s in args.set if not s.startswith(PROPOSAL)]
    cfg = COMMAND.configure(args)
    report = build_report(args.path, sets=sets, cfg=cfg, out=args.out)
    storage.write_text(args.out, report)
    print(f"inspect: {args.path} -> {args.out} ({len(report.encode()) / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
