"""The `clover inspect` page of a `clover dedup` output: exact against near counts, cluster sizes, the largest
clusters, and near-duplicate pairs side by side with a word diff and the Jaccard dedup computed.

Removed documents are not stored by dedup (duplicates/ holds id, cluster_id, kept_id, kind), so their text
is read from the dedup input named in report.json (`extra.source`). The Jaccard is `quality.minhash`'s, on
`ShingleHasher(shingle_n)` shingles of the same text column: the number dedup compared with its threshold.
"""

from __future__ import annotations

import polars as pl

from jobs.inspect_data import Section, by_hash, join, read_json, scan
from jobs.report_html import bar_svg, esc, table, word_diff
from quality.minhash import ShingleHasher, jaccard

# cluster-size buckets: (label, smallest size, largest size)
SIZE_BUCKETS = [("2", 2, 2), ("3", 3, 3), ("4", 4, 4), ("5", 5, 5), ("6-10", 6, 10), ("11-20", 11, 20),
                ("21-50", 21, 50), ("51-100", 51, 100), ("101-1k", 101, 1000), (">1k", 1001, None)]
MAX_DIFF_WORDS = 1500


class DedupView:
    def __init__(self, path: str):
        self.path = path
        self.report = read_json(join(path, "report.json"))
        self.config = self.report.get("config", {})
        self.duplicates = scan(join(path, "duplicates"), ["id", "cluster_id", "kept_id", "kind"])
        self.extra = self.report.get("extra") or self.report  # report.json keeps a StageReport's extra at the top
        self.source = self.extra.get("source")

    def clusters(self) -> pl.DataFrame:
        """Per cluster: removed documents (exact, near), the kept documents that replaced them, and its size."""
        if self.duplicates is None:
            return pl.DataFrame(schema={"cluster_id": pl.String, "size": pl.UInt32})
        return (self.duplicates.group_by("cluster_id").agg(
            removed=pl.len(), exact=(pl.col("kind") == "exact").sum(), near=(pl.col("kind") == "near").sum(),
            kept=pl.col("kept_id").n_unique(), kept_id=pl.col("kept_id").min())
            .with_columns(size=pl.col("removed") + pl.col("kept"))
            .sort(["size", "cluster_id"], descending=[True, False]).collect())

    def texts(self, ids: list[str]) -> dict[str, str]:
        """Text of these ids, from the dedup input (removed and kept) and the kept documents."""
        column = self.config.get("text_column", "text")
        found: dict[str, str] = {}
        for where in (self.source, join(self.path, "documents")):
            frame = scan(where) if where else None
            missing = [i for i in ids if i not in found]
            if frame is None or not missing:
                continue
            rows = frame.select(pl.col("id"), pl.col(column).alias("text")).filter(
                pl.col("id").is_in(missing)).collect()
            found.update({i: t for i, t in rows.iter_rows() if t is not None})
        return found


def summary_section(view: DedupView) -> str:
    report, extra, cfg = view.report, view.extra, view.config
    removed = report.get("removed", {})
    rows = [["input", report.get("input")], ["kept", report.get("output")],
            ["exact duplicates removed", removed.get("exact_duplicate", 0)],
            ["near duplicates removed", removed.get("near_duplicate", 0)],
            ["quarantined", sum((report.get("quarantined") or {}).values())]]
    rows += [[key.replace("_", " "), extra[key]] for key in
             ("candidate_pairs", "verified_pairs", "components", "released_from_chains", "oversized_buckets",
              "unlinked_bucket_members") if extra.get(key) is not None]
    settings = ", ".join(f"{k} {cfg[k]}" for k in ("shingle_n", "num_perm", "bands", "rows", "threshold", "verify")
                         if k in cfg)
    return table(["", "documents"], rows, "dedup-counts") + f"<p>Settings: {esc(settings)}.</p>"


def clusters_section(view: DedupView, top: int = 15) -> str:
    clusters = view.clusters()
    sizes = clusters["size"].to_list() if clusters.height else []
    counts = [sum(1 for s in sizes if lo <= s and (hi is None or s <= hi)) for _, lo, hi in SIZE_BUCKETS]
    last = max([i for i, c in enumerate(counts) if c] or [0])
    chart = bar_svg([b[0] for b in SIZE_BUCKETS[:last + 1]], counts[:last + 1])
    intro = (f"<p>{len(sizes):,} clusters. A cluster's size is its removed documents plus the kept documents "
             "that replaced them (a member released from a chain, kept as itself, is not counted).</p>")
    largest = clusters.head(top)
    kept_text = view.texts(largest["kept_id"].to_list()) if largest.height else {}
    rows = [[r["cluster_id"], r["size"], r["exact"], r["near"], r["kept_id"],
             (kept_text.get(r["kept_id"]) or "(text not found)")[:160]] for r in largest.iter_rows(named=True)]
    return (intro + f'<figure class="cluster-sizes">{chart}<figcaption>clusters per size</figcaption></figure>'
            + "<h3>Largest clusters</h3>"
            + table(["cluster", "size", "exact", "near", "kept id", "kept text (first 160 characters)"], rows,
                    "largest-clusters"))


def pairs_section(view: DedupView, k: int, seed: int) -> str:
    """k near duplicates (smallest hash of id and seed) beside the document that replaced them."""
    if view.duplicates is None or k <= 0:
        return "<p>No duplicates.</p>"
    picked = by_hash(view.duplicates.filter(pl.col("kind") == "near"), k, seed).collect()
    if not picked.height:
        return "<p>No near duplicates.</p>"
    texts = view.texts(picked["id"].to_list() + picked["kept_id"].to_list())
    hasher = ShingleHasher(int(view.config.get("shingle_n", 5)))
    threshold = view.config.get("threshold")
    parts = [f"<p>Left: the removed document, words not in the kept one struck; right: the kept document, words "
             f"not in the removed one marked. Jaccard of the {hasher.n}-word shingles (quality.minhash), dedup's "
             f"threshold {esc(threshold)}. Removed texts come from the dedup input {esc(view.source)}.</p>"]
    for row in picked.iter_rows(named=True):
        removed, kept = texts.get(row["id"]), texts.get(row["kept_id"])
        if removed is None or kept is None:
            parts.append(f'<div class="pair-block" data-jaccard=""><p>{esc(row["id"])} / {esc(row["kept_id"])}: '
                         "text not found (the input moved, or the kept document is in an --against index)</p></div>")
            continue
        similarity = jaccard(hasher(removed), hasher(kept))
        left, right = word_diff(" ".join(removed.split(" ")[:MAX_DIFF_WORDS]), " ".join(kept.split(" ")[:MAX_DIFF_WORDS]))
        parts.append(f'<div class="pair-block" data-jaccard="{similarity:.4f}"><p>removed <code>{esc(row["id"])}</code>'
                     f' &rarr; kept <code>{esc(row["kept_id"])}</code>; cluster <code>{esc(row["cluster_id"])}</code>; '
                     f'Jaccard {similarity:.3f}</p><div class="pair diff"><div class="doc">{left}</div>'
                     f'<div class="doc">{right}</div></div></div>')
    return "".join(parts)


def dedup_sections(path: str, samples: int, seed: int) -> list[Section]:
    view = DedupView(path)
    return [
        ("counts", "Exact and near duplicates", summary_section(view)),
        ("clusters", "Cluster sizes and the largest clusters", clusters_section(view)),
        ("pairs", "Near-duplicate pairs", pairs_section(view, samples, seed)),
    ]
