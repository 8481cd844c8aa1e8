"""`clover sample-candidates`: responses to a prompt set at several temperatures, from the model itself.

The model is a run or export decoded here (KV-cached; a part's prompts and their samples decode
together at each temperature, on GPU when there is one), or an OpenAI-compatible completions endpoint
(`vllm serve` on `clover export`'s output, `clover serve`): the chat-templated prompt goes as token ids,
with n, temperature, seed and max_tokens, through the same client, retries, backoff and concurrency
as `clover judge`. Reproducible (each prompt/temperature has its own seed from the run seed),
resumable (finished prompts are read back from the parts already written and skipped; a prompt whose
request failed is left for the next run). Degenerate candidates are dropped with a reason: `empty`,
`truncated` (cut off by the token limit) or `repetitive` (the pretraining batch gate's repeated
n-gram fraction over the candidate's tokens).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from quality.repetition import repeated_ngram_fraction
from schemas import StageReport
from schemas.ingest import IngestConfig, input_format, parquet_units, read_unit
from schemas.preference import CANDIDATES, PROMPTS_QUARANTINE
from training.preference.client import Endpoint, RequestFailed
from training.trainer.gate import GateConfig


@dataclass
class SamplingConfig:
    temperatures: list[float] = field(default_factory=lambda: [0.3, 0.7, 1.0], metadata={"help": "sampling temperatures"})
    per_temperature: int = field(default=2, metadata={"help": "candidates per prompt and temperature"})
    max_new_tokens: int = field(default=256, metadata={"help": "a candidate reaching this is dropped as truncated"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling"})
    seed: int = field(default=0, metadata={"help": "run seed; each prompt and temperature derives its own"})
    prompts_per_part: int = field(default=16, metadata={"help": "prompts per output part (the resume unit)"})
    model_name: str = field(default="", metadata={"help": "model name sent to a URL (default: the first it lists)"})
    api_key_env: str = field(default="OPENAI_API_KEY", metadata={"help": "environment variable with a URL's API key"})
    timeout: float = field(default=600.0, metadata={"help": "seconds per request to a URL"})
    retries: int = field(default=4, metadata={"help": "retries after a failed request to a URL"})
    backoff: float = field(default=1.0, metadata={"help": "first retry delay in seconds, doubled each retry"})
    concurrency: int = field(default=8, metadata={"help": "requests to a URL in flight at once"})
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
    from training.inference.export import CLOVER_CONFIG
    from training.trainer import checkpoint

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


Candidate = tuple[float, int, list[int], str, str]  # temperature, sample, tokens, text, finish reason


class LocalSampler:
    """A run or export decoded here: per temperature, one KV-cached batch for all the prompts given."""

    def __init__(self, path: str, device: str | None):
        from training.inference.generate import ChatModel

        self.chat, self.model_hash = ChatModel(path, device), model_sha256(path)

    def sample(self, prompts: list[dict], cfg: SamplingConfig) -> tuple[dict[str, list[Candidate]], list[str]]:
        contexts = [self.chat.context([{"role": "user", "content": p["prompt"]}]) for p in prompts]
        out: dict[str, list[Candidate]] = {p["prompt_id"]: [] for p in prompts}
        for t in cfg.temperatures:
            seeds = [seed_for(cfg.seed, p["prompt_id"], t) for p in prompts]
            rows = self.chat.sample_batch(contexts, cfg.max_new_tokens, t, cfg.top_p, cfg.per_temperature, seeds)
            for prompt, samples in zip(prompts, rows):
                out[prompt["prompt_id"]] += [(t, k, tokens, self.chat.processor.decode(tokens), finish)
                                             for k, (tokens, finish) in enumerate(samples)]
        return out, []


class RemoteSampler:
    """An OpenAI-compatible completions endpoint, sent the chat-templated prompt as token ids (so control tokens
    are exact, never parsed from text). Token counts and n-grams come from re-encoding the returned text."""

    def __init__(self, url: str, tokenizer: str | None, cfg: SamplingConfig):
        from training.inference.generate import ChatTokenizer

        if not tokenizer:
            raise ValueError("a URL model needs --tokenizer: the `clover export` directory it serves, or its tokenizer")
        self.chat = ChatTokenizer.load(tokenizer)
        self.endpoint = Endpoint(url, "completions", cfg.timeout, cfg.retries, cfg.backoff, cfg.api_key_env)
        self.model_hash = None  # the weights are behind the URL; settings record the URL and the served name
        self.name = cfg.model_name or self.endpoint.first_model()

    def sample(self, prompts: list[dict], cfg: SamplingConfig) -> tuple[dict[str, list[Candidate]], list[str]]:
        """Candidates per prompt, and the errors of failed requests (their prompts are left out, for a rerun)."""
        def ask(job: tuple[dict, float]) -> list[Candidate] | str:
            prompt, t = job
            body = {"model": self.name, "prompt": self.chat.context([{"role": "user", "content": prompt["prompt"]}]),
                    "n": cfg.per_temperature, "temperature": t, "top_p": cfg.top_p, "max_tokens": cfg.max_new_tokens,
                    "seed": seed_for(cfg.seed, prompt["prompt_id"], t)}
            try:
                answer, _ = self.endpoint.post(body)
                choices = sorted(answer["choices"], key=lambda c: c["index"])
                if len(choices) != cfg.per_temperature:
                    raise RequestFailed(f"asked n={cfg.per_temperature}, got {len(choices)} choices")
                return [(t, k, self.chat.processor.encode(c["text"]), c["text"], c["finish_reason"])
                        for k, c in enumerate(choices)]
            except (RequestFailed, KeyError, TypeError) as err:
                return f"{prompt['prompt_id']} at {t:g}: {type(err).__name__}: {err}"

        jobs = [(p, t) for p in prompts for t in cfg.temperatures]
        with ThreadPoolExecutor(max_workers=max(cfg.concurrency, 1)) as pool:
            answers = list(pool.map(ask, jobs))
        failed = {job[0]["prompt_id"] for job, answer in zip(jobs, answers) if isinstance(answer, str)}
        out: dict[str, list[Candidate]] = {p["prompt_id"]: [] for p in prompts if p["prompt_id"] not in failed}
        for (prompt, _), answer in zip(jobs, answers):
            if prompt["prompt_id"] in out:
                out[prompt["prompt_id"]] += answer
        return out, [a for a in answers if isinstance(a, str)]


def sample_candidates(inputs: list[str], model_path: str, out: str, cfg: SamplingConfig,
                      device: str | None = None, tokenizer: str | None = None) -> StageReport:
    """Candidates for every prompt not done yet; `model_path` is a run, an export or an http(s) URL."""
    root = Path(out)
    (root / "parts").mkdir(parents=True, exist_ok=True)
    prompts, bad = read_prompts(inputs)
    done = {pid for part in sorted((root / "parts").glob("part-*.parquet"))
            for pid in pq.read_table(part, columns=["prompt_id"]).column("prompt_id").to_pylist()}
    todo = [p for p in prompts if p["prompt_id"] not in done]
    errors: list[str] = []
    if todo:
        remote = model_path.startswith(("http://", "https://"))
        sampler = RemoteSampler(model_path, tokenizer, cfg) if remote else LocalSampler(model_path, device)
        settings = json.dumps({**{k: v for k, v in asdict(cfg).items() if k != "prompts_per_part"}, "model": model_path,
                               **({"served_model": sampler.name} if remote else {})}, sort_keys=True)
        # after the highest part (not the count: a part whose every request failed was not written)
        next_part = max((int(part.stem.split("-")[1]) for part in (root / "parts").glob("part-*.parquet")), default=-1) + 1
        for offset in range(0, len(todo), cfg.prompts_per_part):
            group = todo[offset:offset + cfg.prompts_per_part]
            candidates, failures = sampler.sample(group, cfg)
            errors += failures
            rows = [candidate_row(p, c, sampler.model_hash, settings, cfg.gate)
                    for p in group for c in candidates.get(p["prompt_id"], [])]
            if rows:
                part = root / "parts" / f"part-{next_part:05d}.parquet"
                pq.write_table(pa.Table.from_pylist(rows, schema=CANDIDATES.arrow()), f"{part}.tmp")
                os.replace(f"{part}.tmp", part)
                next_part += 1
    return _finish(root, prompts, bad, errors)


def candidate_row(prompt: dict, candidate: Candidate, model_hash: str | None, settings: str, gate: GateConfig) -> dict:
    temperature, k, tokens, text, finish = candidate
    fraction, reason = classify(tokens, text, finish, gate)
    return {**prompt, "candidate_id": f"{prompt['prompt_id']}/t{temperature:g}/{k}", "temperature": temperature,
            "sample": k, "text": text, "num_tokens": len(tokens), "finish_reason": finish,
            "repeated_ngram_fraction": fraction, "reason": reason, "model_sha256": model_hash, "settings": settings}


def _finish(root: Path, prompts: list[dict], bad: list[dict], errors: list[str]) -> StageReport:
    """candidates.parquet (kept) and dropped.parquet from every part, and the report."""
    parts = sorted((root / "parts").glob("part-*.parquet"))
    rows = pq.read_table(parts, schema=CANDIDATES.arrow()).to_pylist() if parts else []
    kept = [r for r in rows if r["reason"] is None]
    dropped = [r for r in rows if r["reason"] is not None]
    pq.write_table(pa.Table.from_pylist(kept, schema=CANDIDATES.arrow()), root / "candidates.parquet")
    pq.write_table(pa.Table.from_pylist(dropped, schema=CANDIDATES.arrow()), root / "dropped.parquet")
    pq.write_table(pa.Table.from_pylist(bad, schema=PROMPTS_QUARANTINE.arrow()), root / "quarantine.parquet")
    report = StageReport(
        stage="sample-candidates", input=len(rows) + len(bad), output=len(kept),
        removed=dict(sorted(Counter(r["reason"] for r in dropped).items())),
        quarantined=dict(sorted(Counter(r["reason"] for r in bad).items())), config=json.loads(rows[0]["settings"]) if rows else {},
        extra={"unit": "candidates generated, plus malformed prompt rows (quarantined)",
               "prompts": len(prompts), "prompts_done": len({r["prompt_id"] for r in rows}),
               "request_failed": len(errors), "errors": errors[:20],
               "model_sha256": rows[0]["model_sha256"] if rows else None},
    ).check()
    (root / "report.json").write_text(report.to_json())
    return report
