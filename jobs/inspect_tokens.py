"""The `clover inspect` page of token shards (a `clover tokenize` output, or any directory with a tokens
manifest): tokens per document, padding, the top tokens, and each row's repeated n-gram fraction as the
trainer's batch gate computes it (`training.trainer.gate.batch_fraction` on a one-row micro-batch), with
the gate's threshold drawn and the rows it would reject, decoded with the manifest's tokenizer.

Documents and padding come from every row (the small `doc_starts` and `num_tokens` columns); top tokens
and fractions from a deterministic sample of rows (`sample_rows`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from jobs.inspect_data import Section, join, read_json, scan, sentencepiece
from jobs.report_html import esc, histogram_svg, table
from quality.repetition import repeated_ngram_mask
from training.trainer.data import MicroBatch
from training.trainer.gate import batch_fraction

if TYPE_CHECKING:
    from jobs.inspection import GateSettings

BINS = 40


class TokensView:
    def __init__(self, path: str, sample_rows: int, seed: int):
        self.path = path
        self.manifest = read_json(join(path, "manifest.json"))
        self.seq_len = int(self.manifest["seq_len"])
        self.rows = scan(join(path, "shards"))
        if self.rows is None:
            raise FileNotFoundError(f"{path}/shards: no token shards")
        self.processor = sentencepiece((self.manifest.get("tokenizer") or {}).get("path"))
        total = int(self.manifest.get("sequences") or 0) or 1
        keep = self.rows.select("tokens", "num_tokens", "pack_partition", "pack_index")
        if sample_rows < total:  # the rows whose hash falls under sample_rows / total of the hash range
            limit = int((2**64 - 1) * sample_rows / total)
            keep = keep.filter(pl.struct("pack_partition", "pack_index").hash(seed) <= limit)
        self.sample = keep.sort("pack_partition", "pack_index").collect()

    def document_lengths(self) -> np.ndarray:
        """Tokens per document (its </s> included): the distance between document starts in each packing
        stream (row i starts at i * seq_len; rows overlap by one token), the last one to the stream's end."""
        seq = self.seq_len
        starts = (self.rows.select("pack_partition", "pack_index", "doc_starts").explode("doc_starts")
                  .drop_nulls("doc_starts")
                  .select("pack_partition", pos=pl.col("pack_index") * seq + pl.col("doc_starts")).unique())
        ends = self.rows.group_by("pack_partition").agg(end=(pl.col("pack_index") * seq + pl.col("num_tokens")).max())
        lengths = (starts.sort("pack_partition", "pos").join(ends, on="pack_partition")
                   .with_columns(next=pl.col("pos").shift(-1).over("pack_partition"))
                   .select(length=pl.coalesce("next", "end") - pl.col("pos")).collect())
        return lengths["length"].to_numpy()

    def fractions(self, ngram: int) -> np.ndarray:
        """Each sampled row's repeated n-gram fraction: the gate's own function on that row alone."""
        return np.array([batch_fraction(MicroBatch(0, np.asarray(t, dtype=np.int64)[None], np.array([n])), ngram)
                         for t, n in zip(self.sample["tokens"].to_list(), self.sample["num_tokens"].to_list())])

    def piece(self, token: int) -> str:
        if self.processor is None:
            return f"{token} "
        text = self.processor.id_to_piece(int(token))
        if self.processor.is_byte(int(token)):
            value = int(text[3:5], 16)
            return chr(value) if value < 0x80 else text
        return text.replace("\u2581", " ")


def _binned(values: np.ndarray, lo: float, hi: float, rejected: np.ndarray) -> tuple[list[float], list[int], list[int]]:
    index = np.clip(((values - lo) / ((hi - lo) or 1.0) * BINS).astype(int), 0, BINS - 1)
    kept = np.bincount(index[~rejected], minlength=BINS).tolist()
    bad = np.bincount(index[rejected], minlength=BINS).tolist()
    return [lo + (hi - lo) * i / BINS for i in range(BINS + 1)], kept, bad


def summary_section(view: TokensView) -> str:
    totals = view.rows.select(rows=pl.len(), real=pl.col("num_tokens").sum(),
                              padded=(pl.col("num_tokens") < view.seq_len + 1).sum()).collect().row(0, named=True)
    slots = totals["rows"] * (view.seq_len + 1)
    padding = 1 - totals["real"] / slots if slots else 0.0
    lengths = view.document_lengths()
    tokenizer = view.manifest.get("tokenizer") or {}
    rows = [["rows (sequences)", totals["rows"]], ["seq_len", view.seq_len], ["documents", len(lengths)],
            ["tokens stored", totals["real"]], ["padding fraction", padding], ["padded rows", totals["padded"]],
            ["shards", len(view.manifest.get("shards", []))], ["vocab size", tokenizer.get("vocab_size", "")]]
    if len(lengths):
        rows += [[f"tokens per document, {name}", float(value)] for name, value in
                 (("mean", lengths.mean()), ("median", np.median(lengths)), ("p90", np.quantile(lengths, 0.9)),
                  ("max", lengths.max()))]
    where = tokenizer.get("path") or "(not recorded)"
    found = "decoded with it" if view.processor else "not reachable: tokens are shown as ids"
    chart = ""
    if len(lengths):
        hi = float(np.quantile(lengths, 0.99)) or 1.0
        edges, kept, _ = _binned(lengths.astype(float), 0.0, hi, np.zeros(len(lengths), bool))
        chart = (f'<figure class="hist" data-score="tokens_per_document"><figcaption><b>tokens per document</b> '
                 f'(0 to the 99th percentile; longer ones in the last bin)</figcaption>'
                 f'{histogram_svg(edges, kept, [0] * BINS, [])}</figure>')
    return (table(["", "value"], rows, "token-summary") + chart
            + f"<p>Tokenizer {esc(where)}: {esc(found)}.</p>")


def top_tokens_section(view: TokensView, top: int = 40) -> str:
    counts = (view.sample.select(pl.col("tokens").list.head(pl.col("num_tokens"))).explode("tokens")
              .group_by("tokens").len().sort(["len", "tokens"], descending=[True, False]))
    total = int(counts["len"].sum()) or 1
    rows = [[repr(view.piece(t)), t, n, n / total] for t, n in counts.head(top).iter_rows()]
    return (f"<p>From {view.sample.height:,} sampled rows ({total:,} tokens).</p>"
            + table(["piece", "id", "count", "share"], rows, "top-tokens"))


def _marked_row(view: TokensView, tokens: np.ndarray, ngram: int) -> str:
    """The row's input tokens decoded piece by piece, the repeated n-grams the gate counts marked."""
    mask = repeated_ngram_mask(tokens, ngram)
    parts, run = [], []
    for token, repeated in zip(tokens.tolist(), mask.tolist()):
        piece = view.piece(token)
        if repeated:
            run.append(piece)
            continue
        if run:
            parts.append(f'<mark class="repeat">{esc("".join(run))}</mark>')
            run = []
        parts.append(esc(piece))
    if run:
        parts.append(f'<mark class="repeat">{esc("".join(run))}</mark>')
    return f'<div class="doc">{"".join(parts)}</div>'


def gate_section(view: TokensView, gate: GateSettings, samples: int) -> str:
    fractions = view.fractions(gate.ngram)
    rejected = fractions > gate.max_fraction
    edges, kept, bad = _binned(fractions, 0.0, 1.0, rejected)
    chart = (f'<figure class="hist" data-score="repeated_ngram_fraction"><figcaption><b>repeated {gate.ngram}-gram '
             f'fraction per row</b> (gate.max_fraction {gate.max_fraction:g}); passes {int((~rejected).sum()):,}, '
             f'rejected {int(rejected.sum()):,}</figcaption>{histogram_svg(edges, kept, bad, [gate.max_fraction])}</figure>')
    intro = (f"<p>Of {len(fractions):,} sampled rows, {int(rejected.sum()):,} ({rejected.mean() if len(fractions) else 0:.1%}) "
             f"are above gate.max_fraction: as a micro-batch of its own each would be rejected (the gate judges a "
             f"micro-batch's rows together, padding excluded). Change the gate with <code>--set gate.max_fraction=V"
             f"</code> or <code>--set gate.ngram=N</code>.</p>")
    order = np.argsort(-fractions, kind="stable")[: samples if samples > 0 else 0]
    shown = []
    for i in order:
        if not rejected[i]:
            break
        row = view.sample.row(int(i), named=True)
        tokens = np.asarray(row["tokens"], dtype=np.int64)[: row["num_tokens"] - 1]
        shown.append(f'<div class="sample" data-fraction="{fractions[i]:.4f}"><p>row {row["pack_index"]} of stream '
                     f'{row["pack_partition"]}: fraction {fractions[i]:.3f}</p>{_marked_row(view, tokens, gate.ngram)}</div>')
    return intro + chart + "".join(shown)


def tokens_sections(path: str, samples: int, seed: int, gate: GateSettings, sample_rows: int) -> list[Section]:
    view = TokensView(path, sample_rows, seed)
    return [
        ("tokens", "Rows, documents and padding", summary_section(view)),
        ("top-tokens", "Top tokens", top_tokens_section(view)),
        ("gate", "Repeated n-grams and the batch gate", gate_section(view, gate, samples)),
    ]
