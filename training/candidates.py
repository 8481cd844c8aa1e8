"""`clover sample-candidates`: responses to a prompt set at several temperatures, from the model itself.

Batched (the samples of one prompt and temperature decode together), on GPU when there is one,
reproducible (each prompt/temperature has its own seed from the run seed), resumable (finished
prompts are read back from the parts already written and skipped). Degenerate candidates are
dropped with a reason: `empty`, `truncated` (cut off by the token limit) or `repetitive` (the
pretraining batch gate's repeated n-gram fraction over the candidate's tokens).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from dataprep.ingest import IngestConfig, input_format, parquet_units, read_unit
from quality.repetition import repeated_ngram_fraction
from schemas import StageReport
from training.gate import GateConfig

CANDIDATES = pa.schema([
    ("prompt_id", pa.string()), ("candidate_id", pa.string()), ("prompt", pa.string()), ("temperature", pa.float64()),
    ("sample", pa.int32()), ("text", pa.string()), ("num_tokens", pa.int32()), ("finish_reason", pa.string()),
    ("repeated_ngram_fraction", pa.float64()), ("reason", pa.string()), ("model_sha256", pa.string()),
    ("settings", pa.string()),
])


@dataclass
class SamplingConfig:
    temperatures: list[float] = field(default_factory=lambda: [0.3, 0.7, 1.0], metadata={"help": "sampling temperatures"})
    per_temperature: int = field(default=2, metadata={"help": "candidates per prompt and temperature"})
    max_new_tokens: int = field(default=256, metadata={"help": "a candidate reaching this is dropped as truncated"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling"})
    seed: int = field(default=0, metadata={"help": "run seed; each prompt and temperature derives its own"})
    prompts_per_part: int = field(default=16, metadata={"help": "prompts per output part (the resume unit)"})
    gate: GateConfig = field(default_factory=GateConfig)


def read_prompts(inputs: list[str]) -> tuple[list[dict], list[dict]]:
    """(prompts with prompt_id and prompt, quarantined rows with a reason), in input order, ids unique."""
    cfg = IngestConfig(text_field="prompt", id_field="prompt_id")
    prompts, bad, seen = [], [], set()
    for uri in inputs:
        for unit in parquet_units(uri) if input_format(uri) == "parquet" else [0]:
            for batch in read_unit(uri, unit, cfg):
                for row in batch.to_pylist():
                    reason = row["error"] or ("duplicate_id" if row["id"] in seen else None)
                    if reason is None and not row["text"].strip():
                        reason = "empty_prompt"
                    if reason:
                        bad.append({"input_file": uri, "line": row["line"], "reason": reason, "raw": row["raw"]})
                        continue
                    seen.add(row["id"])
                    prompts.append({"prompt_id": row["id"], "prompt": row["text"]})
    return prompts, bad


def seed_for(run_seed: int, prompt_id: str, temperature: float) -> int:
    digest = hashlib.sha256(f"{run_seed}\0{prompt_id}\0{temperature}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def model_sha256(path: str) -> str:
    """A run's newest checkpoint hash, or the hash of an export's weight files."""
    from training import checkpoint
    from training.export import CLOVER_CONFIG

    root = Path(path)
    if (root / CLOVER_CONFIG).exists():
        return checkpoint.files_sha256(sorted(root.glob("*.safetensors")))
    return checkpoint.checkpoint_sha256(checkpoint.newest(path))


def classify(tokens: list[int], text: str, finish_reason: str, gate: GateConfig) -> tuple[float, str | None]:
    """(repeated n-gram fraction, drop reason or None)."""
    fraction = repeated_ngram_fraction(tokens, gate.ngram) if tokens else 0.0
    if not text.strip():
        return fraction, "empty"
    if finish_reason == "length":
        return fraction, "truncated"
    if gate.enabled and fraction > gate.max_fraction:
        return fraction, "repetitive"
    return fraction, None


def sample_candidates(inputs: list[str], model_path: str, out: str, cfg: SamplingConfig,
                      device: str | None = None) -> StageReport:
    from training.generate import ChatModel

    root = Path(out)
    (root / "parts").mkdir(parents=True, exist_ok=True)
    prompts, bad = read_prompts(inputs)
    done = {pid for part in sorted((root / "parts").glob("part-*.parquet"))
            for pid in pq.read_table(part, columns=["prompt_id"]).column("prompt_id").to_pylist()}
    todo = [p for p in prompts if p["prompt_id"] not in done]
    settings = json.dumps({k: v for k, v in asdict(cfg).items() if k != "prompts_per_part"}, sort_keys=True)
    if todo:
        chat = ChatModel(model_path, device)
        model_hash = model_sha256(model_path)
        first_part = len(list((root / "parts").glob("part-*.parquet")))
        for offset in range(0, len(todo), cfg.prompts_per_part):
            rows = []
            for prompt in todo[offset:offset + cfg.prompts_per_part]:
                context = chat.context([{"role": "user", "content": prompt["prompt"]}])
                for temperature in cfg.temperatures:
                    outputs = chat.sample(context, cfg.max_new_tokens, temperature, cfg.top_p, cfg.per_temperature,
                                          seed_for(cfg.seed, prompt["prompt_id"], temperature))
                    for k, (tokens, finish) in enumerate(outputs):
                        text = chat.processor.decode(tokens)
                        fraction, reason = classify(tokens, text, finish, cfg.gate)
                        rows.append({**prompt, "candidate_id": f"{prompt['prompt_id']}/t{temperature:g}/{k}",
                                     "temperature": temperature, "sample": k, "text": text, "num_tokens": len(tokens),
                                     "finish_reason": finish, "repeated_ngram_fraction": fraction, "reason": reason,
                                     "model_sha256": model_hash, "settings": settings})
            part = root / "parts" / f"part-{first_part + offset // cfg.prompts_per_part:05d}.parquet"
            pq.write_table(pa.Table.from_pylist(rows, schema=CANDIDATES), f"{part}.tmp")
            os.replace(f"{part}.tmp", part)
    return _finish(root, prompts, bad)


def _finish(root: Path, prompts: list[dict], bad: list[dict]) -> StageReport:
    """candidates.parquet (kept) and dropped.parquet from every part, and the report."""
    parts = sorted((root / "parts").glob("part-*.parquet"))
    rows = pq.read_table(parts, schema=CANDIDATES).to_pylist() if parts else []
    kept = [r for r in rows if r["reason"] is None]
    dropped = [r for r in rows if r["reason"] is not None]
    pq.write_table(pa.Table.from_pylist(kept, schema=CANDIDATES), root / "candidates.parquet")
    pq.write_table(pa.Table.from_pylist(dropped, schema=CANDIDATES), root / "dropped.parquet")
    pq.write_table(pa.Table.from_pylist(bad, schema=pa.schema([("input_file", pa.string()), ("line", pa.int64()),
                                                              ("reason", pa.string()), ("raw", pa.string())])),
                   root / "quarantine.parquet")
    report = StageReport(
        stage="sample-candidates", input=len(rows) + len(bad), output=len(kept),
        removed=dict(sorted(Counter(r["reason"] for r in dropped).items())),
        quarantined=dict(sorted(Counter(r["reason"] for r in bad).items())), config=json.loads(rows[0]["settings"]) if rows else {},
        extra={"unit": "candidates generated, plus malformed prompt rows (quarantined)",
               "prompts": len(prompts), "prompts_done": len({r["prompt_id"] for r in rows}),
               "model_sha256": rows[0]["model_sha256"] if rows else None},
    ).check()
    (root / "report.json").write_text(report.to_json())
    return report
