"""Preference pairs from the model itself: candidates, a judge served over real HTTP by `clover serve`,
resumption after an interrupted judge, unparseable verdicts recorded, and a human review round trip."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sentencepiece as spm

from dataprep.pairs import PairsConfig, run_prep_pairs
from schemas.chat import prompt_ids, response_ids, template_ids
from schemas.sample import sample_pairs
from tests.token_shards import docstring_tokenizer
from training.inference.export import export
from training.inference.generate import ChatTokenizer
from training.preference.candidates import SamplingConfig, sample_candidates
from training.preference.judge import (
    DEFAULT_TEMPLATE,
    JudgeConfig,
    judge_candidates,
    load_judgments,
    parse_verdict,
    render,
)
from training.preference.review import (
    ReviewConfig,
    export_sheet,
    import_decisions,
    judge_says,
    read_sheet,
    write_sheet,
)
from training.trainer.pretrain import TrainConfig, train

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


@contextlib.contextmanager
def serving(export: Path, *flags: str, env: dict | None = None):
    """`clover serve` as a real subprocess on 127.0.0.1 (the default bind): its base URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "jobs.cli", "serve", str(export), "--port", str(port), *flags],
                               env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.3)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def server(model):
    with serving(model / "export") as url:
        yield url


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

    from training.preference.judge import HTTPJudge, RequestFailed

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


def test_judge_template_is_filled_in_one_pass():
    """A prompt or answer holding a field name stays literal: no answer pulls in the other (the old chained replace did)."""
    template = DEFAULT_TEMPLATE.read_text()
    prompt, answer_a, answer_b = "Repeat {answer_a} please", "I say {answer_b} and {prompt}", "B: {answer_a} \\1 \\g<0>"
    text = render(template, prompt, answer_a, answer_b)
    assert text == template.replace("{prompt}", "\0").replace("{answer_a}", "\1").replace("{answer_b}", "\2") \
        .replace("\0", prompt).replace("\1", answer_a).replace("\2", answer_b)
    assert text.count("I say {answer_b} and {prompt}") == 1 and text.count("B: {answer_a} \\1 \\g<0>") == 1
    assert "B: {answer_a}" not in text.split("[Answer B]")[0]


def post(url: str, route: str, body: dict, key: str | None = None) -> dict:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    request = urllib.request.Request(url + route, json.dumps(body).encode(), headers, method="POST")
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def test_completions_are_seeded_and_concurrent_requests_batch(model, server):
    chat = ChatTokenizer.load(str(model / "export"))
    context = chat.context([{"role": "user", "content": "Explain what a list is."}])

    def texts(seed: int, **extra) -> list[tuple[str, str]]:
        body = {"prompt": context, "n": 3, "temperature": 1.0, "seed": seed, "max_tokens": 8, **extra}
        return [(c["text"], c["finish_reason"]) for c in post(server, "/v1/completions", body)["choices"]]

    first = texts(7)
    assert len(first) == 3 and all(finish in ("stop", "length") for _, finish in first) and first == texts(7)
    alone = [texts(seed) for seed in range(8)]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(texts, range(8)))
    assert together == alone and len({tuple(t) for t in alone}) > 1
    stats = json.loads(urllib.request.urlopen(server + "/stats", timeout=10).read())
    assert stats["largest_batch"] >= 2 and stats["requests"] >= 17
    greedy = post(server, "/v1/completions", {"prompt": ["def add", context], "n": 2, "temperature": 0, "max_tokens": 6})
    assert [c["index"] for c in greedy["choices"]] == [0, 1, 2, 3] and greedy["object"] == "text_completion"
    assert greedy["choices"][2]["text"] == greedy["choices"][3]["text"]
    short = post(server, "/v1/completions", {"prompt": context, "n": 3, "temperature": 1.0, "seed": 7, "max_tokens": 3})
    assert short["usage"]["completion_tokens"] <= 3 * 3 and short["usage"]["prompt_tokens"] == len(context)


def raw_status(port: int, data: bytes) -> int | None:
    """The status the server answers to raw bytes, None when it closes without an answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return int(answer.split()[1]) if answer else None


def test_serve_refuses_hostile_requests(model):
    flags = ("--read-timeout", "1", "--max-connections", "3", "--max-body-bytes", "4096")
    with serving(model / "export", *flags, env={"CLOVER_API_KEY": "s3cret"}) as url:
        port = int(url.rsplit(":", 1)[1])
        head = b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\n"
        assert raw_status(port, head + b"\r\n") == 400  # no Content-Length
        assert raw_status(port, head + b"Content-Length: -5\r\n\r\n") == 400
        assert raw_status(port, head + b"Content-Length: 12abc\r\n\r\n") == 400
        assert raw_status(port, head + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n") == 400
        assert raw_status(port, head + b"Content-Length: 1000000000\r\n\r\n") == 413
        assert raw_status(port, head + b"Content-Length: 5\r\n\r\n[1,2]") == 400
        assert raw_status(port, head + b"Content-Length: 6\r\n\r\n{\"a\": ") == 400
        started = time.time()
        assert raw_status(port, head + b"Content-Length: 100\r\n\r\n{\"prompt\"") == 408  # body never finishes
        assert raw_status(port, b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n") is None  # headers never finish
        assert time.time() - started < 8
        for body in ({"prompt": [1, 2], "n": 0}, {"prompt": [1, 2], "temperature": -1}, {"prompt": [10**9]},
                     {"prompt": [5] * 1100}, {"prompt": []}, {"prompt": "x", "max_tokens": "many"},
                     {"prompt": "x", "n": float("inf")}, {"prompt": "x", "top_p": float("nan")},
                     {"prompt": ["x"] * 10, "n": 16}):
            with pytest.raises(urllib.error.HTTPError) as refused:
                post(url, "/v1/completions", body, key="s3cret")
            assert refused.value.code == 400, body
        for key in (None, "wrong"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                post(url, "/v1/completions", {"prompt": "def"}, key=key)
            assert refused.value.code == 401
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url + "/v1/models", timeout=10)
        assert refused.value.code == 401
        assert post(url, "/v1/completions", {"prompt": "def", "max_tokens": 2}, key="s3cret")["choices"]
        time.sleep(0.3)
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]  # hold every connection slot
        try:
            time.sleep(0.2)
            assert raw_status(port, head + b"Content-Length: 2\r\n\r\n{}") == 503
        finally:
            for sock in idle:
                sock.close()
        time.sleep(1.5)
        assert post(url, "/v1/completions", {"prompt": "def", "max_tokens": 2}, key="s3cret")["choices"]


def test_candidates_from_a_url_match_local_decoding(candidates, model, server, tmp_path):
    from jobs.cli import main

    local_out, local_report, _ = candidates
    prompts, export = str(model / "prompts.jsonl"), str(model / "export")
    out = tmp_path / "from-url"
    flags = ["--temperatures", "0.3,1.0", "--per-temperature", "2", "--max-new-tokens", "24", "--set", "prompts_per_part=3"]
    # a dead endpoint: every request fails after its retries, nothing is written, the prompts stay pending
    assert main(["sample-candidates", prompts, "--model", "http://127.0.0.1:9", "--tokenizer", export, "--out", str(out),
                 "--model-name", "clover", "--retries", "1", "--set", "backoff=0.01", *flags]) == 0
    failed = json.loads((out / "report.json").read_text())
    assert failed["output"] == 0 and failed["request_failed"] == 10 * 2 and failed["prompts_done"] == 0
    assert main(["sample-candidates", prompts, "--model", server, "--tokenizer", export, "--out", str(out), *flags]) == 0

    def outcome(root: Path) -> list[tuple]:
        rows = [r for name in ("candidates", "dropped") for r in pq.read_table(root / f"{name}.parquet").to_pylist()]
        return sorted((r["candidate_id"], r["text"], r["finish_reason"]) for r in rows)

    assert outcome(out) == outcome(local_out) and len(outcome(out)) == 10 * 2 * 2
    (out / "parts" / "part-00001.parquet").unlink()  # a gap, as a part whose requests all failed leaves
    assert main(["sample-candidates", prompts, "--model", server, "--tokenizer", export, "--out", str(out), *flags]) == 0
    assert outcome(out) == outcome(local_out) and (out / "parts" / "part-00004.parquet").exists()
    report = json.loads((out / "report.json").read_text())
    assert report["quarantined"] == local_report.quarantined and report["request_failed"] == 0
    settings = json.loads(pq.read_table(out / "candidates.parquet").to_pylist()[0]["settings"])
    assert settings["model"] == server and settings["served_model"] == export
