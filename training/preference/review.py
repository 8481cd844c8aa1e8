"""Human review of judged candidates, and the preference pairs built from judge and human verdicts.

`export` writes a sheet (CSV or JSONL) of the candidate pairs a person should decide: the judge's two
orders disagreed or gave no verdict (`disagreement`), the top two candidates of a prompt are within
`close_margin` wins (`close`), or the prompt fell in the random audit sample (`audit`, best vs worst).
`import` reads the filled sheet (decision A, B or tie; blank = no decision). A human decision
replaces the judge's verdicts for that pair; where it contradicts a consistent judge verdict, the
conflict is reported. Pairs: per prompt, chosen = the candidate with the most wins, rejected = the
one with the fewest, kept when the difference is at least `min_margin` wins (else `no_clear_winner`).
"""

from __future__ import annotations

import csv
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from schemas import StageReport
from schemas.preference import REVIEWED_PAIRS
from training.preference.judge import by_pair, group_by, judge_says, load_judgments, rank

SHEET_COLUMNS = ["item", "prompt_id", "why", "prompt", "candidate_a", "answer_a", "candidate_b", "answer_b",
                 "judge_says", "decision", "note"]


@dataclass
class ReviewConfig:
    audit_rate: float = field(default=0.1, metadata={"help": "share of prompts sent to review at random"})
    close_margin: float = field(default=0.5, metadata={"help": "top two within this many wins go to review"})
    min_margin: float = field(default=1.0, metadata={"help": "chosen must beat rejected by this many wins"})
    seed: int = field(default=0, metadata={"help": "audit sample seed"})


def load(judgments_dir: str, candidates_dir: str) -> tuple[list[dict], dict[str, dict]]:
    records = list(load_judgments(Path(judgments_dir) / "judgments.jsonl").values())
    candidates = {c["candidate_id"]: c for c in pq.read_table(Path(candidates_dir) / "candidates.parquet").to_pylist()}
    return records, candidates


def export_sheet(judgments_dir: str, candidates_dir: str, sheet: str, cfg: ReviewConfig) -> dict[str, int]:
    records, candidates = load(judgments_dir, candidates_dir)
    pairs = by_pair(records)
    by_prompt = group_by(rank(records, list(candidates.values())), lambda row: row["prompt_id"])
    wanted: dict[tuple[str, str, str], str] = {}
    for pair, rs in pairs.items():
        if judge_says(rs) == "unclear":
            wanted[pair] = "disagreement"
    rng = random.Random(cfg.seed)
    for prompt_id, rows in sorted(by_prompt.items()):
        if len(rows) < 2:
            continue
        best, second, worst = rows[0]["candidate_id"], rows[1]["candidate_id"], rows[-1]["candidate_id"]
        if rows[0]["wins"] - rows[1]["wins"] <= cfg.close_margin:
            wanted.setdefault(_key(prompt_id, best, second), "close")
        if rng.random() < cfg.audit_rate:
            wanted.setdefault(_key(prompt_id, best, worst), "audit")
    rows = []
    for (prompt_id, a, b), why in sorted(wanted.items()):
        rows.append({"item": f"{prompt_id}|{a}|{b}", "prompt_id": prompt_id, "why": why,
                     "prompt": candidates[a]["prompt"], "candidate_a": a, "answer_a": candidates[a]["text"],
                     "candidate_b": b, "answer_b": candidates[b]["text"],
                     "judge_says": judge_says(pairs.get((prompt_id, a, b), [])), "decision": "", "note": ""})
    write_sheet(sheet, rows)
    return dict(Counter(row["why"] for row in rows))


def _key(prompt_id: str, x: str, y: str) -> tuple[str, str, str]:
    a, b = sorted((x, y))  # the judge's pairs are ordered by candidate_id
    return prompt_id, a, b


def write_sheet(path: str, rows: list[dict]) -> None:
    if path.endswith(".jsonl"):
        Path(path).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        return
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, SHEET_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def read_sheet(path: str) -> list[dict]:
    if path.endswith(".jsonl"):
        return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def import_decisions(judgments_dir: str, candidates_dir: str, sheet: str | None, out: str, cfg: ReviewConfig
                     ) -> StageReport:
    """Merge the sheet's decisions over the judge's verdicts and write OUT/pairs/ and OUT/report.json."""
    records, candidates = load(judgments_dir, candidates_dir)
    pairs = by_pair(records)
    decisions, conflicts, invalid = {}, [], []
    for row in read_sheet(sheet) if sheet else []:
        decision = (row.get("decision") or "").strip().lower()
        if not decision:
            continue
        a, b = row["candidate_a"], row["candidate_b"]
        if decision not in ("a", "b", "tie") or a not in candidates or b not in candidates:
            invalid.append({"item": row.get("item"), "decision": row.get("decision")})
            continue
        winner = "tie" if decision == "tie" else (a if decision == "a" else b)
        key = _key(row["prompt_id"], a, b)
        decisions[key] = {"winner": winner, "note": row.get("note") or ""}
        said = judge_says(pairs.get(key, []))
        if said not in ("unclear", winner):
            conflicts.append({"item": row.get("item"), "judge": said, "human": winner, "note": row.get("note") or ""})
    effective = [r for r in records if (r["prompt_id"], r["candidate_a"], r["candidate_b"]) not in decisions]
    for (prompt_id, a, b), d in decisions.items():  # a human decision counts as both orders agreeing
        effective += [{"prompt_id": prompt_id, "candidate_a": a, "candidate_b": b, "verdict": "human",
                       "winner": d["winner"]}] * 2
    reviewed_prompts = {key[0] for key in decisions}
    by_prompt = group_by(rank(effective, list(candidates.values())), lambda row: row["prompt_id"])
    judge_name = next((r.get("judge") for r in records if r.get("judge")), "")
    kept, removed = [], {"no_clear_winner": 0, "single_candidate": 0}
    for prompt_id, rows in sorted(by_prompt.items()):
        if len(rows) < 2:
            removed["single_candidate"] += 1
            continue
        best, worst = candidates[rows[0]["candidate_id"]], candidates[rows[-1]["candidate_id"]]
        margin = rows[0]["wins"] - rows[-1]["wins"]
        if margin < cfg.min_margin or best["text"] == worst["text"]:
            removed["no_clear_winner"] += 1
            continue
        human = prompt_id in reviewed_prompts
        kept.append({"pair_id": prompt_id, "prompt": best["prompt"], "chosen": best["text"], "rejected": worst["text"],
                     "source": "judge+human" if human else "judge", "chosen_candidate_id": best["candidate_id"],
                     "rejected_candidate_id": worst["candidate_id"], "chosen_temperature": best["temperature"],
                     "rejected_temperature": worst["temperature"], "margin": margin, "judge": judge_name,
                     "human_reviewed": human})
    root = Path(out)
    (root / "pairs").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(kept, schema=REVIEWED_PAIRS.arrow()), root / "pairs" / "part-00000.parquet")
    report = StageReport(
        stage="review", input=len(by_prompt), output=len(kept), removed={k: v for k, v in removed.items() if v},
        quarantined={}, config={"audit_rate": cfg.audit_rate, "close_margin": cfg.close_margin,
                                "min_margin": cfg.min_margin, "seed": cfg.seed},
        extra={"unit": "prompts with candidates", "human_decisions": len(decisions), "conflicts": conflicts,
               "invalid_decisions": invalid, "sheet": sheet, "judgments": judgments_dir, "candidates": candidates_dir},
    ).check()
    (root / "report.json").write_text(report.to_json())
    return report
