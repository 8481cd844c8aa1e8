"""Great Expectations suites for every Clover dataset kind, generated from the pipeline config.

Pure: each function returns GE expectation objects for columns that `dataprep.validate` derives
from the dataset with Spark (for example `row_length` of a token row).
"""

from __future__ import annotations

import math

from quality.signals import Bounds


def _gx():
    import great_expectations as gx

    return gx.expectations


def _bounded(value: float | None) -> float | None:
    return None if value is None or math.isinf(value) else value


# The text's length in characters, which the frame under a documents suite carries beside (or instead of)
# the text: validation caches the columns it checks, and the length is 8 bytes where the text is kilobytes.
TEXT_CHARS = "text_chars"


def documents_suite(score_ranges: dict[str, tuple[float, float]], thresholds: dict[str, Bounds]) -> list:
    """Kept documents: ids present and unique, text present and non-empty (its `TEXT_CHARS`), every score
    within its valid range and its rule (the intersection of the two)."""
    ex = _gx()
    suite = [
        ex.ExpectColumnValuesToNotBeNull(column="id"),
        ex.ExpectColumnValuesToBeUnique(column="id"),
        ex.ExpectColumnValuesToNotBeNull(column=TEXT_CHARS),
        ex.ExpectColumnValuesToBeBetween(column=TEXT_CHARS, min_value=1),
    ]
    for name in {**score_ranges, **thresholds}:  # one check per column: Great Expectations runs a job per check
        low, high = score_ranges.get(name, (-math.inf, math.inf))
        rule = thresholds.get(name, Bounds())
        low = low if rule.min is None else max(low, rule.min)
        high = high if rule.max is None else min(high, rule.max)
        suite.append(ex.ExpectColumnValuesToBeBetween(column=name, min_value=_bounded(low), max_value=_bounded(high)))
    return suite


def removal_rate_suite(rates: dict[str, float], bounds: dict[str, Bounds]) -> list:
    """One expectation per removal reason on a one-row frame of `rate__<reason>` columns.

    `bounds["*"]` applies to every reason without bounds of its own: a filter gone wrong (removing
    90% of a crawl) fails here instead of silently starving the trainer.
    """
    ex = _gx()
    suite = []
    for reason in rates:
        limit = bounds.get(reason, bounds.get("*"))
        if limit is not None:
            suite.append(ex.ExpectColumnValuesToBeBetween(column=f"rate__{reason}", min_value=limit.min,
                                                          max_value=limit.max))
    return suite


def dedup_documents_suite() -> list:
    ex = _gx()
    return [
        ex.ExpectColumnValuesToNotBeNull(column="id"),
        ex.ExpectColumnValuesToBeUnique(column="id"),
        ex.ExpectColumnValuesToBeUnique(column="exact_hash"),
    ]


def duplicates_suite() -> list:
    """`kept_found`: the duplicate's kept_id is among the kept documents (or the --against index)."""
    ex = _gx()
    return [ex.ExpectColumnValuesToBeInSet(column="kept_found", value_set=[True]),
            ex.ExpectColumnValuesToBeInSet(column="kind", value_set=["exact", "near"])]


def token_rows_suite(seq_len: int, vocab_size: int) -> list:
    ex = _gx()
    return [
        ex.ExpectColumnValuesToBeBetween(column="row_length", min_value=seq_len + 1, max_value=seq_len + 1),
        ex.ExpectColumnValuesToBeBetween(column="max_token", min_value=0, max_value=vocab_size - 1),
        ex.ExpectColumnValuesToBeBetween(column="num_tokens", min_value=1, max_value=seq_len + 1),
    ]


def token_totals_suite(documents: int, sequences: int) -> list:
    """One row: end-of-document labels and the row count against the manifest."""
    ex = _gx()
    return [
        ex.ExpectColumnValuesToBeBetween(column="eos_labels", min_value=documents, max_value=documents),
        ex.ExpectColumnValuesToBeBetween(column="documents_column", min_value=documents, max_value=documents),
        ex.ExpectColumnValuesToBeBetween(column="sequences", min_value=sequences, max_value=sequences),
    ]


def token_shards_suite() -> list:
    """One row per manifest shard: what is on disk against what the manifest says."""
    ex = _gx()
    return [ex.ExpectColumnValuesToBeInSet(column=c, value_set=[True])
            for c in ("file_found", "rows_match", "tokens_match", "bytes_match", "sha256_match")]


def preference_pairs_suite(vocab_size: int | None = None, max_length: int | None = None) -> list:
    """Text columns present and distinct; with a tokenizer's vocab_size, the token columns of prep-pairs too."""
    ex = _gx()
    suite = [ex.ExpectColumnValuesToNotBeNull(column="pair_id"), ex.ExpectColumnValuesToBeUnique(column="pair_id")]
    for column in ("prompt", "chosen", "rejected"):
        suite += [ex.ExpectColumnValuesToNotBeNull(column=column),
                  ex.ExpectColumnValueLengthsToBeBetween(column=column, min_value=1)]
    suite.append(ex.ExpectColumnValuesToBeInSet(column="chosen_differs", value_set=[True]))
    if vocab_size is not None:
        suite += [ex.ExpectColumnValuesToBeBetween(column="prompt_tokens", min_value=3),
                  ex.ExpectColumnValuesToBeBetween(column="chosen_tokens", min_value=1),
                  ex.ExpectColumnValuesToBeBetween(column="rejected_tokens", min_value=1),
                  ex.ExpectColumnValuesToBeBetween(column="min_token_id", min_value=0),
                  ex.ExpectColumnValuesToBeBetween(column="max_token_id", max_value=vocab_size - 1),
                  ex.ExpectColumnValuesToBeBetween(column="pair_tokens", max_value=max_length)]
    return suite
