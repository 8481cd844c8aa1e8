"""What the preference loop writes: sampled candidates, the judge's rankings and the reviewed pairs."""

from __future__ import annotations

import pyarrow as pa

from schemas.datasets import Column, DatasetSchema

CANDIDATES = DatasetSchema(
    "candidates",
    (
        Column("prompt_id", pa.string(), doc="the prompt's id, unique in the prompt set"),
        Column("candidate_id", pa.string(), doc="PROMPT_ID/tTEMPERATURE/SAMPLE"),
        Column("prompt", pa.string(), doc="the prompt text"),
        Column("temperature", pa.float64(), doc="sampling temperature"),
        Column("sample", pa.int32(), doc="index of the sample at this prompt and temperature"),
        Column("text", pa.string(), doc="the generated response"),
        Column("num_tokens", pa.int32(), doc="tokens generated"),
        Column("finish_reason", pa.string(), doc="why decoding stopped; length = the token limit"),
        Column("repeated_ngram_fraction", pa.float64(), doc="the batch gate's repeated n-gram fraction of its tokens"),
        Column("reason", pa.string(), doc="why it was dropped (empty, truncated, repetitive); null when kept"),
        Column("model_sha256", pa.string(), doc="the run's newest checkpoint or the export's weights, hashed; null for a URL"),
        Column("settings", pa.string(), doc="the sampling settings and the model, as a JSON object"),
    ),
)

PROMPTS_QUARANTINE = DatasetSchema(
    "prompts_quarantine",
    (
        Column("input_file", pa.string(), doc="file the prompt was read from"),
        Column("line", pa.int64(), doc="1-based line (JSONL), row (Parquet) or 1 (.txt)"),
        Column("reason", pa.string(), doc="the reader's error, duplicate_id or empty_prompt"),
        Column("raw", pa.string(), doc="the raw value, truncated"),
    ),
)

RANKINGS = DatasetSchema(
    "rankings",
    (
        Column("prompt_id", pa.string(), doc="the prompt"),
        Column("candidate_id", pa.string(), doc="the candidate"),
        Column("temperature", pa.float64(), doc="the candidate's sampling temperature"),
        Column("wins", pa.float64(), doc="parseable comparisons won (a tie is half a win)"),
        Column("comparisons", pa.int64(), doc="parseable comparisons it took part in"),
        Column("rank", pa.int64(), doc="1 = most wins among its prompt's candidates (ties by candidate_id)"),
    ),
)

REVIEWED_PAIRS = DatasetSchema(
    "reviewed_pairs",
    (
        Column("pair_id", pa.string(), doc="the prompt_id the pair was built from"),
        Column("prompt", pa.string(), doc="the prompt"),
        Column("chosen", pa.string(), doc="the candidate with the most wins"),
        Column("rejected", pa.string(), doc="the candidate with the fewest wins"),
        Column("source", pa.string(), doc="judge, or judge+human where a person decided a pair of the prompt"),
        Column("chosen_candidate_id", pa.string(), doc="candidate_id of chosen"),
        Column("rejected_candidate_id", pa.string(), doc="candidate_id of rejected"),
        Column("chosen_temperature", pa.float64(), doc="sampling temperature of chosen"),
        Column("rejected_temperature", pa.float64(), doc="sampling temperature of rejected"),
        Column("margin", pa.float64(), doc="chosen's wins minus rejected's"),
        Column("judge", pa.string(), doc="the judge's name"),
        Column("human_reviewed", pa.bool_(), doc="a person decided at least one pair of the prompt"),
    ),
)
