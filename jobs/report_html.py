"""HTML building blocks for `clover inspect`: escaping, tables, inline SVG charts, one self-contained page.

Nothing here loads from the network: CSS is inline and charts are SVG written by this code, so the
report opens from disk offline. Every string from data goes through `esc`.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from quality.evidence import Span

# C0 and C1 controls (except tab and newline) and DEL are shown as visible symbols, never raw.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:0 16px;color:#222}
nav{position:sticky;top:0;background:#fff;border-bottom:1px solid #ddd;padding:6px 0}
nav a{margin-right:12px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:2px 8px;text-align:right}
td.l,th.l{text-align:left}
.hists{display:flex;flex-wrap:wrap;gap:10px}figure.hist{margin:0;border:1px solid #eee;padding:4px}
figcaption{font-size:12px}svg text{font-size:10px}
rect.kept{fill:#4c9a2a}rect.rejected{fill:#c0392b}line.threshold{stroke:#1f4e9c;stroke-width:2;stroke-dasharray:4 2}
path.series{fill:none;stroke:#1f4e9c;stroke-width:1.5}circle.mark{fill:#c0392b}line.clip{stroke:#c0392b;stroke-dasharray:4 2}
path.alt,path.held{fill:none;stroke-width:1.5}path.alt{stroke:#d35400}path.held{stroke:#2a7a2a}circle.dot.series{fill:#1f4e9c}
circle.dot.alt{fill:#d35400}circle.dot.held{fill:#2a7a2a}text.key.clip{fill:#c0392b}text.key.series{fill:#1f4e9c}
text.key.alt{fill:#d35400}text.key.held{fill:#2a7a2a}line.clip.alt{stroke:#d35400}line.clip.series{stroke:#1f4e9c}
.sample{border:1px solid #ddd;margin:8px 0;padding:6px}
.doc{white-space:pre-wrap;font:12px/1.4 ui-monospace,monospace;max-height:320px;overflow:auto;background:#fafafa}
mark.repeat{background:#ffd27f}mark.fail{background:#f5a3a3}mark.found{background:#a8e0a8}del.removed{color:#999}
.ctl{color:#c0392b}.diff ins{background:#c8f0c8;text-decoration:none}.diff del{background:#f5c6c6}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:8px}
"""


def esc(value: object) -> str:
    """Text as HTML text: markup characters escaped, control characters shown as visible \\xNN."""
    escaped = html.escape(str(value), quote=True)
    return _CONTROL.sub(lambda m: f'<span class="ctl">\\x{ord(m.group()):02x}</span>', escaped)


def fmt(value: object) -> str:
    if isinstance(value, float):
        return "—" if math.isnan(value) else f"{value:,.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return esc(value)


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], cls: str = "") -> str:
    """A table; the first column is left-aligned (names), the rest right-aligned (numbers)."""
    head = "".join(f'<th class="{"l" if i == 0 else ""}">{esc(h)}</th>' for i, h in enumerate(headers))
    body = "".join(
        "<tr>" + "".join(f'<td class="{"l" if i == 0 else ""}">{fmt(v)}</td>' for i, v in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f'<table class="{esc(cls)}"><tr>{head}</tr>{body}</table>'


def marked_text(text: str, spans: Sequence[Span]) -> str:
    """The text escaped, with each span wrapped: <mark class=KIND> or, for removed lines, <del>."""
    out, pos = [], 0
    for span in spans:
        out.append(esc(text[pos:span.start]))
        inner = esc(text[span.start:span.end])
        tag = "del" if span.kind == "removed" else "mark"
        out.append(f'<{tag} class="{span.kind}">{inner}</{tag}>')
        pos = span.end
    out.append(esc(text[pos:]))
    return f'<div class="doc">{"".join(out)}</div>'


def histogram_svg(edges: Sequence[float], kept: Sequence[int], rejected: Sequence[int],
                  thresholds: Sequence[float], width: int = 300, height: int = 120) -> str:
    """Kept and rejected counts per bin side by side (log scale), with each threshold as a dashed line."""
    lo, hi = edges[0], edges[-1]
    span = (hi - lo) or 1.0
    top = math.log1p(max([*kept, *rejected, 1]))
    bar = width / len(kept)
    parts = []
    for i, (k, r) in enumerate(zip(kept, rejected)):
        for j, (count, cls) in enumerate(((k, "kept"), (r, "rejected"))):
            if count:
                h = (height - 14) * math.log1p(count) / top
                parts.append(f'<rect class="{cls}" x="{i * bar + j * bar / 2:.1f}" y="{height - 14 - h:.1f}" '
                             f'width="{bar / 2:.1f}" height="{h:.1f}"><title>{count:,}</title></rect>')
    for value in thresholds:
        x = min(max((value - lo) / span, 0.0), 1.0) * width
        parts.append(f'<line class="threshold" x1="{x:.1f}" x2="{x:.1f}" y1="0" y2="{height - 14}">'
                     f'<title>threshold {value:g}</title></line>')
    parts.append(f'<text x="0" y="{height - 2}">{lo:.4g}</text>'
                 f'<text x="{width}" y="{height - 2}" text-anchor="end">{hi:.4g}</text>')
    return f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}">{"".join(parts)}</svg>'


@dataclass(frozen=True)
class Series:
    """One line of a chart: `cls` colours it (series: blue, alt: orange, held: green), `marks` are x values
    marked with red dots on it, `dots` draws a dot (its step and value as a tooltip) at every point."""

    label: str
    xs: Sequence[float]
    ys: Sequence[float]
    cls: str = "series"
    marks: Sequence[float] = ()
    dots: bool = False


MAX_POINTS = 2000  # per series of a line chart: a chart is about 500 pixels wide


def thin(points: Sequence[tuple[float, float]], limit: int = MAX_POINTS) -> list[tuple[float, float]]:
    """At most `limit` points of a series in x order: per run of consecutive points, its lowest and its highest
    (in their order), so a spike of one step stays drawn however long the run."""
    if len(points) <= limit:
        return list(points)
    size = -(-len(points) // (limit // 2))
    out: list[tuple[float, float]] = []
    for start in range(0, len(points), size):
        chunk = points[start:start + size]
        low, high = min(range(len(chunk)), key=lambda i: chunk[i][1]), max(range(len(chunk)), key=lambda i: chunk[i][1])
        out += [chunk[i] for i in sorted({low, high})]
    return out


def lines_svg(series: Sequence[Series], hlines: Sequence[tuple[float, str, str]] = (), width: int = 520,
              height: int = 160) -> str:
    """Several lines on shared axes, each (value, class, label) of `hlines` a dashed horizontal line; a legend
    of the labelled series and lines at the top when there is more than one thing to tell apart. A long series
    is drawn through `thin`'s points; dots and marks are drawn at every point they name."""
    drawn = [(s, [(x, y) for x, y in zip(s.xs, s.ys) if y is not None and math.isfinite(y)]) for s in series]
    drawn = [(s, points) for s, points in drawn if points]
    if not drawn:
        return "<p>no data</p>"
    xs = [x for _, points in drawn for x, _ in points]
    values = [y for _, points in drawn for _, y in points] + [value for value, _, _ in hlines]
    x0, x1, y0, y1 = min(xs), max(xs), min(values), max(values)
    legend = [(s.cls, s.label) for s, _ in drawn if s.label] + [(cls, label) for _, cls, label in hlines if label]
    top = 24 if len(legend) > 1 else 10
    sx = lambda x: (x - x0) / ((x1 - x0) or 1) * (width - 40) + 35  # noqa: E731
    sy = lambda y: height - 14 - (y - y0) / ((y1 - y0) or 1) * (height - 14 - top)  # noqa: E731
    parts = []
    for s, points in drawn:
        path = "M" + " L".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in thin(points))
        parts.append(f'<path class="{esc(s.cls)}" data-label="{esc(s.label)}" d="{path}"/>')
        if s.dots:
            parts += [f'<circle class="dot {esc(s.cls)}" cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5">'
                      f"<title>{esc(s.label)} at step {x:g}: {y:.6g}</title></circle>" for x, y in points]
        lookup = dict(points)
        parts += [f'<circle class="mark" cx="{sx(x):.1f}" cy="{sy(lookup.get(x, y1)):.1f}" r="3"/>' for x in s.marks]
    for value, cls, label in hlines:
        parts.append(f'<line class="{esc(cls)}" x1="35" x2="{width - 5}" y1="{sy(value):.1f}" y2="{sy(value):.1f}">'
                     f"<title>{esc(label)}</title></line>")
    if len(legend) > 1:
        step = (width - 35) / len(legend)
        parts += [f'<text class="key {esc(cls)}" x="{35 + i * step:.1f}" y="10">{esc(label)}</text>'
                  for i, (cls, label) in enumerate(legend)]
    parts.append(f'<text x="0" y="{top + 2}">{y1:.4g}</text><text x="0" y="{height - 14}">{y0:.4g}</text>'
                 f'<text x="35" y="{height - 2}">{x0:g}</text>'
                 f'<text x="{width - 5}" y="{height - 2}" text-anchor="end">{x1:g}</text>')
    return f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}">{"".join(parts)}</svg>'


def line_svg(xs: Sequence[float], ys: Sequence[float], marks: Sequence[float] = (), hline: float | None = None,
             width: int = 520, height: int = 160) -> str:
    """A line chart of ys over xs; `marks` are x values marked with red dots, `hline` a dashed red line."""
    clip = [(hline, "clip", f"threshold {hline:g}")] if hline is not None else []
    return lines_svg([Series("", xs, ys, marks=marks)], clip, width, height)


def bar_svg(labels: Sequence[str], counts: Sequence[int], width: int = 520, height: int = 140,
            log: bool = True) -> str:
    """One bar per labelled bucket (heights on a log scale unless `log` is False), its count as a tooltip."""
    if not counts:
        return "<p>no data</p>"
    top = max(max(counts), 1)
    scale = (lambda c: math.log1p(c) / math.log1p(top)) if log else (lambda c: c / top)
    bar = width / len(counts)
    parts = []
    for i, (label, count) in enumerate(zip(labels, counts)):
        h = (height - 26) * scale(count)
        parts.append(f'<rect class="kept" x="{i * bar + 1:.1f}" y="{height - 26 - h:.1f}" width="{max(bar - 2, 1):.1f}" '
                     f'height="{h:.1f}"><title>{esc(label)}: {count:,}</title></rect>'
                     f'<text x="{i * bar + bar / 2:.1f}" y="{height - 14}" text-anchor="middle">{esc(label)}</text>')
    parts.append(f'<text x="0" y="{height - 2}">max {top:,}{" (log scale)" if log else ""}</text>')
    return f'<svg class="bars" width="{width}" height="{height}" viewBox="0 0 {width} {height}">{"".join(parts)}</svg>'


def word_diff(removed: str, kept: str) -> tuple[str, str]:
    """Both texts escaped, word by word (difflib): words only in the first in <del>, only in the second in <ins>."""
    import difflib

    a, b = re.split(r"(\s+)", removed), re.split(r"(\s+)", kept)
    left, right = [], []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        one, two = esc("".join(a[i1:i2])), esc("".join(b[j1:j2]))
        if op == "equal":
            left.append(one)
            right.append(two)
            continue
        if one:
            left.append(f"<del>{one}</del>")
        if two:
            right.append(f"<ins>{two}</ins>")
    return "".join(left), "".join(right)


def page(title: str, sections: Sequence[tuple[str, str, str]]) -> str:
    """One HTML document: a navigation bar, then each (id, heading, body) section."""
    nav = "".join(f'<a href="#{esc(sid)}">{esc(heading)}</a>' for sid, heading, _ in sections)
    body = "".join(f'<section id="{esc(sid)}"><h2>{esc(heading)}</h2>{content}</section>'
                   for sid, heading, content in sections)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f"<style>{CSS}</style></head><body><h1>{esc(title)}</h1><nav>{nav}</nav>{body}</body></html>\n")


def book(title: str, pages: Sequence[tuple[str, str, Sequence[tuple[str, str, str]]]]) -> str:
    """One HTML document of several pages (id, title, sections), with a shared index: each page is an
    <article> with its own navigation; section ids are prefixed with the page's id."""
    index = "".join(f'<li><a href="#{esc(pid)}">{esc(heading)}</a> ('
                    + ", ".join(f'<a href="#{esc(pid)}-{esc(sid)}">{esc(h)}</a>' for sid, h, _ in sections) + ")</li>"
                    for pid, heading, sections in pages)
    articles = []
    for pid, heading, sections in pages:
        nav = "".join(f'<a href="#{esc(pid)}-{esc(sid)}">{esc(h)}</a>' for sid, h, _ in sections)
        body = "".join(f'<section id="{esc(pid)}-{esc(sid)}" data-section="{esc(sid)}"><h3>{esc(h)}</h3>{content}</section>'
                       for sid, h, content in sections)
        articles.append(f'<article id="{esc(pid)}" data-page="{esc(heading)}"><h2>{esc(heading)}</h2>'
                        f'<nav><a href="#index">index</a>{nav}</nav>{body}</article>')
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f'<style>{CSS}</style></head><body><h1>{esc(title)}</h1><section id="index"><h2>Index</h2>'
            f'<ul class="index">{"".join(index)}</ul></section>{"".join(articles)}</body></html>\n')
