"""`clover judge`: pairwise judgments of each prompt's candidates, asked in both orders.

The judge is any OpenAI-compatible chat-completions endpoint (vLLM, `transformers serve`,
`clover serve`, a hosted API whose key is read from an environment variable) or a local exported
model. The prompt is a template file users edit ({prompt}, {answer_a}, {answer_b}). Requests have a
timeout, retries with exponential backoff (connection errors, 408, 429, 5xx) and a concurrency limit.
A verdict must contain exactly one of [[A]], [[B]] or [[tie]]; anything else is recorded as
unparseable with the raw answer, never guessed. Every judgment is appended to judgments.jsonl as it
arrives, so a rerun asks only what is missing (and what failed).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from schemas import StageReport
from schemas.preference import RANKINGS
from training.preference.client import Endpoint, RequestFailed

DEFAULT_TEMPLATE = Path(__file__).resolve().parents[2] / "jobs" / "configs" / "judge-pairwise.txt"
VERDICT = re.compile(r"\[\[\s*(A|B|tie)\s*\]\]", re.IGNORECASE)
CHOICES = ["[[A]]", "[[B]]", "[[tie]]"]
FIELDS = re.compile(r"\{(prompt|answer_a|answer_b)\}")


@dataclass
class JudgeConfig:
    template: str = field(default="", metadata={"help": "judging prompt template (default jobs/configs/judge-pairwise.txt)"})
    model: str = field(default="", metadata={"help": "model name sent to the endpoint"})
    api_key_env: str = field(default="OPENAI_API_KEY", metadata={"help": "environment variable holding the API key"})
    timeout: float = field(default=60.0, metadata={"help": "seconds per request"})
    retries: int = field(default=4, metadata={"help": "retries after a failed request"})
    backoff: float = field(default=1.0, metadata={"help": "first retry delay in seconds, doubled each retry"})
    concurrency: int = field(default=4, metadata={"help": "requests in flight at once"})
    max_tokens: int = field(default=256, metadata={"help": "answer length asked of the judge"})
    guided: bool = field(default=False, metadata={"help": "ask for guided_choice [[A]]/[[B]]/[[tie]] (vLLM, clover serve)"})
    max_pairs_per_prompt: int = field(default=15, metadata={"help": "candidate pairs judged per prompt"})


def parse_verdict(answer: str) -> tuple[str | None, str | None]:
    """("A" | "B" | "tie", None), or (None, why it is unparseable)."""
    found = {m.upper() if m.lower() != "tie" else "tie" for m in VERDICT.findall(answer or "")}
    if len(found) == 1:
        return found.pop(), None
    if not found:
        return None, "unparseable: no [[A]], [[B]] or [[tie]] in the answer"
    return None, f"unparseable: conflicting verdicts {sorted(found)}"


def render(template: str, prompt: str, answer_a: str, answer_b: str) -> str:
    """The template with its fields filled in one pass: inserted text is never scanned again, so an answer
    containing "{answer_b}" stays literal instead of pulling in the other answer."""
    values = {"prompt": prompt, "answer_a": answer_a, "answer_b": answer_b}
    return FIELDS.sub(lambda match: values[match.group(1)], template)


class HTTPJudge:
    """An OpenAI-compatible chat-completions endpoint."""

    def __init__(self, url: str, cfg: JudgeConfig):
        self.endpoint = Endpoint(url, "chat/completions", cfg.timeout, cfg.retries, cfg.backoff, cfg.api_key_env)
        self.cfg, self.name = cfg, cfg.model or url

    def ask(self, content: str) -> tuple[str, int]:
        """The answer text and the number of attempts it took."""
        body = {"model": self.cfg.model or "default", "messages": [{"role": "user", "content": content}],
                "temperature": 0.0, "max_tokens": self.cfg.max_tokens}
        if self.cfg.guided:
            body["guided_choice"] = CHOICES
        answer, attempts = self.endpoint.post(body)
        try:
            return answer["choices"][0]["message"]["content"] or "", attempts
        except (KeyError, IndexError, TypeError) as err:
            raise RequestFailed(f"malformed response: {err!r}") from err


class LocalJudge:
    """An exported model (or run) on this machine, decoding greedily."""

    def __init__(self, path: str, cfg: JudgeConfig):
        from training.inference.generate import ChatModel

        self.chat, self.cfg, self.name = ChatModel(path), cfg, path

    def ask(self, content: str) -> tuple[str, int]:
        request = {"messages": [{"role": "user", "content": content}], "temperature": 0.0,
                   "max_tokens": self.cfg.max_tokens}
        if self.cfg.guided:
            request["guided_choice"] = CHOICES
        from training.inference.serve import chat_completion

        return chat_completion(self.chat, request)["choices"][0]["message"]["content"], 1


def make_judge(target: str, cfg: JudgeConfig):
    return HTTPJudge(target, cfg) if target.startswith(("http://", "https://")) else LocalJudge(target, cfg)


def work_items(candidates: list[dict], max_pairs: int) -> list[dict]:
    """Both orders of each judged candidate pair, per prompt."""
    items = []
    for prompt_id, group in group_by(candidates, lambda c: c["prompt_id"]).items():
        group = sorted(group, key=lambda c: c["candidate_id"])
        for a, b in list(itertools.combinations(group, 2))[:max_pairs]:
            for order, (first, second) in (("ab", (a, b)), ("ba", (b, a))):
                items.append({"key": f"{prompt_id}|{a['candidate_id']}|{b['candidate_id']}|{order}",
                              "prompt_id": prompt_id, "prompt": a["prompt"], "candidate_a": a["candidate_id"],
                              "candidate_b": b["candidate_id"], "order": order,
                              "shown_a": first["candidate_id"], "shown_b": second["candidate_id"],
                              "text_a": first["text"], "text_b": second["text"]})
    return items


def load_judgments(path: Path) -> dict[str, dict]:
    """Judgments already made; a torn last line (an interrupted write) is dropped."""
    done = {}
    if not path.exists():
        return done
    lines = path.read_text().splitlines()
    kept = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        kept.append(line)
        done[record["key"]] = record
    if len(kept) != len(lines):
        path.write_text("".join(line + "\n" for line in kept))
    return done


def judge_candidates(candidates_dir: str, out: str, target: str, cfg: JudgeConfig,
                     limit: int | None = None, on_result: Callable[[dict], None] | None = None) -> StageReport:
    """Judge every candidate pair not judged yet (at most `limit` new requests), then rank."""
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    candidates = pq.read_table(Path(candidates_dir) / "candidates.parquet").to_pylist()
    template_path = Path(cfg.template) if cfg.template else DEFAULT_TEMPLATE
    template = template_path.read_text()
    items = work_items(candidates, cfg.max_pairs_per_prompt)
    journal = root / "judgments.jsonl"
    done = load_judgments(journal)
    todo = [i for i in items if i["key"] not in done or (done[i["key"]].get("reason") or "").startswith("request_failed")]
    if limit is not None:
        todo = todo[:limit]
    judge = make_judge(target, cfg) if todo else None
    lock = threading.Lock()

    def run(item: dict) -> None:
        started = time.time()
        try:
            raw, attempts = judge.ask(render(template, item["prompt"], item["text_a"], item["text_b"]))
            verdict, reason = parse_verdict(raw)
        except RequestFailed as err:
            raw, attempts, verdict, reason = None, cfg.retries + 1, None, f"request_failed: {err}"
        winner = None if verdict is None else "tie" if verdict == "tie" else item["shown_a" if verdict == "A" else "shown_b"]
        record = {k: item[k] for k in ("key", "prompt_id", "candidate_a", "candidate_b", "order", "shown_a", "shown_b")}
        record.update(verdict=verdict, winner=winner, reason=reason, raw=raw, judge=judge.name,
                      template=str(template_path), attempts=attempts, seconds=round(time.time() - started, 3))
        with lock:
            with journal.open("a") as handle:
                handle.write(json.dumps(record) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            if on_result:
                on_result(record)

    with ThreadPoolExecutor(max_workers=max(cfg.concurrency, 1)) as pool:
        list(pool.map(run, todo))
    return finish(root, items, candidates)


def finish(root: Path, items: list[dict], candidates: list[dict]) -> StageReport:
    """rankings.parquet and report.json from the journal (the latest record per key)."""
    done = load_judgments(root / "judgments.jsonl")
    records = [done[i["key"]] for i in items if i["key"] in done]
    scores = rank(records, candidates)
    pq.write_table(pa.Table.from_pylist(scores, schema=RANKINGS.arrow()), root / "rankings.parquet")
    outcome = Counter("judged" if r["verdict"] else "unparseable" if r["reason"].startswith("unparseable")
                      else "request_failed" for r in records)
    report = StageReport(
        stage="judge", input=len(records), output=outcome.get("judged", 0),
        removed={k: v for k, v in (("unparseable", outcome.get("unparseable", 0)),) if v},
        quarantined={k: v for k, v in (("request_failed", outcome.get("request_failed", 0)),) if v},
        extra={"unit": "judge requests (each candidate pair in both orders)", "requests_total": len(items),
               "pending": len(items) - len(records),
               "disagreements": len(disagreements(records)), "prompts": len({i["prompt_id"] for i in items})},
    ).check()
    (root / "report.json").write_text(report.to_json())
    return report


def rank(records: list[dict], candidates: list[dict]) -> list[dict]:
    """Per prompt, each candidate's wins (a tie is half a win) over its parseable comparisons, and its rank."""
    wins = {c["candidate_id"]: 0.0 for c in candidates}
    comparisons = dict.fromkeys(wins, 0)
    for r in records:
        if not r["verdict"]:
            continue
        for cid in (r["candidate_a"], r["candidate_b"]):
            comparisons[cid] += 1
            wins[cid] += 0.5 if r["winner"] == "tie" else float(r["winner"] == cid)
    rows = []
    for prompt_id, group in group_by(candidates, lambda c: c["prompt_id"]).items():
        ordered = sorted(group, key=lambda c: (-wins[c["candidate_id"]], c["candidate_id"]))
        rows += [{"prompt_id": prompt_id, "candidate_id": c["candidate_id"], "temperature": c["temperature"],
                  "wins": wins[c["candidate_id"]], "comparisons": comparisons[c["candidate_id"]], "rank": i + 1}
                 for i, c in enumerate(ordered)]
    return rows


def group_by(rows: list[dict], key: Callable[[dict], object]) -> dict:
    """Rows grouped by key, groups and rows in their first-seen order."""
    groups: dict = {}
    for row in rows:
        groups.setdefault(key(row), []).append(row)
    return groups


def by_pair(records: list[dict]) -> dict[tuple[str, str, str], list[dict]]:
    """Judgments grouped by (prompt_id, candidate_a, candidate_b): the two orders of one pair."""
    return group_by(records, lambda r: (r["prompt_id"], r["candidate_a"], r["candidate_b"]))


def judge_says(records: list[dict]) -> str:
    """The judge's winner for a pair when both orders gave the same one, else 'unclear'."""
    winners = {r["winner"] for r in records}
    return winners.pop() if len(winners) == 1 and None not in winners and len(records) == 2 else "unclear"


def disagreements(records: list[dict]) -> list[tuple[str, str, str]]:
    """(prompt_id, a, b) of pairs asked in both orders that got different winners (position bias) or no verdict."""
    return [pair for pair, rs in by_pair(records).items() if len(rs) == 2 and judge_says(rs) == "unclear"]
