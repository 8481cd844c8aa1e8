"""Preference pairs from the model itself: candidates, a judge served over real HTTP by `clover serve`,
resumption after an interrupted judge, unparseable verdicts recorded, and a human review round trip."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sentencepiece as spm

from dataprep.pairs import PairsConfig, run_prep_pairs
from dataprep.sample import sample_pairs
from schemas.chat import prompt_ids, response_ids, template_ids
from tests.token_shards import docstring_tokenizer
from training.candidates import SamplingConfig, sample_candidates
from training.export import export
from training.judge import JudgeConfig, judge_candidates, load_judgments, parse_verdict
from training.pretrain import TrainConfig, train
from training.review import ReviewConfig, export_sheet, import_decisions, judge_says, read_sheet, write_sheet

REPO = Path(__file__).resolve().parents[1]
SEQ = 128


def chat_shards(root: Path, tokenizer: Path) -> Path:
    """Token shards of chat turns with short answers, so the model learns to end a turn with <|end|>."""
    meta = json.loads((tokenizer / "tokenizer.json").read_text())
    processor = spm.SentencePieceProcessor(model_file=str(tokenizer / "tokenizer.model"))
    ids = template_ids(meta)
    stream = []
    for _, record in sample_pairs(300, seed=1):
        answer = " ".join(record["chosen"].split()[:5])
        stream += prompt_ids(processor.encode, ids, record["prompt"]) + response_ids(processor.encode, ids, answer)
        stream.append(meta["special_ids"]["eos"])
    rows = [stream[i:i + SEQ + 1] for i in range(0, len(stream) - SEQ - 1, SEQ)]
    (root / "shards").mkdir(parents=True)
    table = pa.table({"tokens": pa.array([np.array(r, dtype=np.uint16) for r in rows], pa.list_(pa.uint16())),
                      "num_tokens": pa.array([SEQ + 1] * len(rows), pa.int32()),
                      "doc_starts": pa.array([[0]] * len(rows), pa.list_(pa.int32()))})
    pq.write_table(table, root / "shards" / "part-00000.parquet", row_group_size=32)
    (root / "manifest.json").write_text(json.dumps({
        "kind": "tokens", "seq_len": SEQ, "tokenizer": {"vocab_size": meta["vocab_size"], "path": str(tokenizer)},
        "shards": [{"file": "shards/part-00000.parquet", "rows": len(rows)}], "validation": {"success": True}}))
    return root


@pytest.fixture(scope="module")
def model(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("prefs")
    tokenizer = docstring_tokenizer(spark, root)
    data = chat_shards(root / "tokens", tokenizer)
    cfg = TrainConfig(model="clover-tiny", micro_batch=8, grad_accum=1, max_steps=150, tensorboard=False)
    cfg.schedule.warmup_steps, cfg.schedule.max_lr, cfg.schedule.min_lr, cfg.schedule.total_steps = 10, 1e-2, 1e-3, 150
    cfg.gate.enabled = False  # chat turns repeat their template by design
    train(cfg, str(data), str(root / "run"))
    export(str(root / "run"), str(root / "export"), dtype="float32")
    prompts = root / "prompts.jsonl"
    lines = [json.dumps({"prompt_id": f"q{i}", "prompt": r["prompt"]}) for i, (_, r) in enumerate(sample_pairs(8, seed=2))]
    lines += ['{"prompt_id": "broken"', json.dumps({"prompt_id": "q1", "prompt": "again"}), json.dumps({"prompt_id": "x"})]
    prompts.write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def candidates(model):
    cfg = SamplingConfig(temperatures=[0.3, 1.0], per_temperature=2, max_new_tokens=24, prompts_per_part=3)
    out = model / "candidates"
    first = sample_candidates([str(model / "prompts.jsonl")], str(model / "export"), str(out), cfg)
    return out, first, cfg


@pytest.fixture(scope="module")
def server(model):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-m", "jobs.cli", "serve", str(model / "export"), "--port", str(port)],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.3)
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=10)


def test_candidates_are_reproducible_resumable_and_accounted(candidates, model):
    out, report, cfg = candidates
    assert report.quarantined == {"bad_json": 1, "duplicate_id": 1, "missing_text": 1}
    assert report.input == report.extra["prompts"] * 2 * 2 + 3 and report.extra["prompts"] == 10 and report.check()
    kept = pq.read_table(out / "candidates.parquet").to_pylist()
    assert report.output == len(kept) >= 8 and {c["temperature"] for c in kept} <= {0.3, 1.0}
    assert all(c["model_sha256"] and json.loads(c["settings"])["temperatures"] == [0.3, 1.0] for c in kept)
    dropped = pq.read_table(out / "dropped.parquet").to_pylist()
    assert all(d["reason"] in ("empty", "truncated", "repetitive") for d in dropped)
    # resume: drop the last part as if interrupted, rerun, get the same candidates
    parts = sorted((out / "parts").glob("part-*.parquet"))
    parts[-1].unlink()
    again = sample_candidates([str(model / "prompts.jsonl")], str(model / "export"), str(out), cfg)
    assert again.input == report.input
    assert pq.read_table(out / "candidates.parquet").to_pylist() == kept


def test_judge_over_http_resumes_after_interruption(candidates, model, server):
    out = model / "judged"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "jobs.cli", "judge", str(candidates[0]), "--out", str(out), "--judge", server,
               "--guided", "--concurrency", "2"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = out / "judgments.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not journal.exists() or len(journal.read_text().splitlines()) < 4):
        time.sleep(0.1)
    process.kill()  # interrupted mid-run
    process.wait()
    before = journal.read_text().splitlines()
    assert len(before) >= 4
    report = judge_candidates(str(candidates[0]), str(out), server, JudgeConfig(guided=True, concurrency=2))
    after = journal.read_text().splitlines()
    assert after[: len(before) - 1] == before[: len(before) - 1]  # kept (the last line may have been torn)
    keys = [json.loads(line)["key"] for line in after]
    assert len(keys) == len(set(keys)) == report.input == report.extra["requests_total"]
    assert report.output == report.input  # guided answers always parse
    rankings = pq.read_table(out / "rankings.parquet").to_pylist()
    assert {r["rank"] for r in rankings} >= {1, 2}


def test_unparseable_verdicts_are_recorded_not_guessed(candidates, model, server):
    out = model / "free-form"
    report = judge_candidates(str(candidates[0]), str(out), server, JudgeConfig(max_tokens=12), limit=4)
    records = list(load_judgments(out / "judgments.jsonl").values())
    assert len(records) == 4 and report.extra["pending"] > 0
    for record in records:
        verdict, reason = parse_verdict(record["raw"])
        assert record["verdict"] == verdict and record["reason"] == reason and record["raw"] is not None
        if verdict is None:
            assert record["winner"] is None and record["reason"].startswith("unparseable")
    assert parse_verdict("I think [[B]] is better") == ("B", None)
    assert parse_verdict("A is better")[0] is None and parse_verdict("[[A]] no, [[B]]")[1].startswith("unparseable: conflicting")


def test_review_round_trip_changes_pairs_and_feeds_prep_pairs(candidates, model, spark, tmp_path):
    from jobs.cli import main

    judged, cands = str(model / "judged"), str(candidates[0])
    baseline = import_decisions(judged, cands, None, str(tmp_path / "judge-only"), ReviewConfig(min_margin=0.5))
    judge_pairs = {p["pair_id"]: p for p in pq.read_table(tmp_path / "judge-only" / "pairs").to_pylist()}
    sheet = str(tmp_path / "sheet.csv")
    counts = export_sheet(judged, cands, sheet, ReviewConfig(audit_rate=1.0))
    rows = read_sheet(sheet)
    assert rows and set(counts) <= {"disagreement", "close", "audit"} and sum(counts.values()) == len(rows)
    kept = pq.read_table(candidates[0] / "candidates.parquet").to_pylist()
    several = {p for p in {c["prompt_id"] for c in kept} if sum(c["prompt_id"] == p for c in kept) > 1}
    assert {r["prompt_id"] for r in rows} == several  # audit rate 1: every prompt with a choice is in the sheet
    assert all(r["judge_says"] == "unclear" for r in rows if r["why"] == "disagreement")
    # the reviewer makes the judge's last-ranked candidate of one prompt win every comparison
    rankings = pq.read_table(model / "judged" / "rankings.parquet").to_pylist()
    target_prompt = sorted(several)[0]
    ranked = sorted((r for r in rankings if r["prompt_id"] == target_prompt), key=lambda r: r["rank"])
    underdog = ranked[-1]["candidate_id"]
    others = [r["candidate_id"] for r in ranked[:-1]]
    decided = [{"item": f"{target_prompt}|{o}", "prompt_id": target_prompt, "why": "audit", "candidate_a": underdog,
                "candidate_b": o, "decision": "A", "note": "reviewer prefers it"} for o in others]
    decided.append({"item": "bad", "prompt_id": target_prompt, "candidate_a": underdog, "candidate_b": others[0],
                    "decision": "maybe"})
    write_sheet(sheet, decided)
    assert main(["review", "import", sheet, "--judgments", judged, "--candidates", cands,
                 "--out", str(tmp_path / "reviewed"), "--set", "min_margin=0.5"]) == 0
    report = json.loads((tmp_path / "reviewed" / "report.json").read_text())
    assert report["validation"]["success"] and report["human_decisions"] == len(others)
    assert report["invalid_decisions"] == [{"item": "bad", "decision": "maybe"}]
    records = list(load_judgments(model / "judged" / "judgments.jsonl").values())
    expected = []
    for other in others:
        pair = [r for r in records if r["prompt_id"] == target_prompt and {r["candidate_a"], r["candidate_b"]} == {underdog, other}]
        said = judge_says(pair)
        if said not in ("unclear", underdog):
            expected.append(f"{target_prompt}|{other}")
    assert sorted(c["item"] for c in report["conflicts"]) == sorted(expected)
    assert all(c["human"] == underdog for c in report["conflicts"])
    pairs = {p["pair_id"]: p for p in pq.read_table(tmp_path / "reviewed" / "pairs").to_pylist()}
    assert pairs[target_prompt]["chosen_candidate_id"] == underdog
    assert target_prompt not in judge_pairs or judge_pairs[target_prompt]["chosen_candidate_id"] != underdog
    assert pairs[target_prompt]["human_reviewed"] and pairs[target_prompt]["source"] == "judge+human"
    assert {p["pair_id"] for p in pairs.values() if not p["human_reviewed"]} <= set(judge_pairs)
    assert baseline.output == len(judge_pairs)
    prepared = run_prep_pairs(spark, [str(tmp_path / "reviewed" / "pairs")], str(model / "tokenizer"),
                              str(tmp_path / "prepared"), PairsConfig(max_length=256, max_prompt_length=128))
    assert prepared.output + sum(prepared.removed.values()) + sum(prepared.quarantined.values()) == len(pairs)
    assert json.loads((tmp_path / "prepared" / "report.json").read_text())["validation"]["success"]
    meta = json.loads(pq.read_table(tmp_path / "prepared" / "pairs").to_pylist()[0]["meta"])
    assert {"chosen_temperature", "rejected_temperature", "judge", "human_reviewed"} <= set(meta)


def test_http_judge_retries_with_backoff_and_records_failures(tmp_path):
    """A real local endpoint that fails twice (503), then answers; and one that never answers in time."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from training.judge import HTTPJudge, RequestFailed

    calls = []

    class Flaky(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            calls.append(time.time())
            if self.path.endswith("/slow/v1/chat/completions"):
                time.sleep(1.0)
            if len(calls) <= 2 or self.path.startswith("/slow"):
                self.send_response(503)
                self.end_headers()
                return
            body = json.dumps({"choices": [{"message": {"role": "assistant", "content": "[[B]]"}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        answer, attempts = HTTPJudge(url, JudgeConfig(retries=3, backoff=0.05)).ask("which?")
        assert (answer, attempts) == ("[[B]]", 3)
        assert calls[2] - calls[0] >= 0.05 + 0.1 - 0.01  # waited 0.05 s, then 0.1 s
        with pytest.raises(RequestFailed, match="TimeoutError|timed out"):
            HTTPJudge(url + "/slow", JudgeConfig(retries=1, backoff=0.01, timeout=0.2)).ask("which?")
    finally:
        server.shutdown()
