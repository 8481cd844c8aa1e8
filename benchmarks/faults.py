"""Fault-injection campaign (issue 15), too slow for CI: one table of fault, cases, cases where data was lost
or the run hung (must be 0) and the seconds to a clear outcome.

"Lost": a record missing from the report's sums, an output mixing old and new bytes, a re-run that differs
from an uninterrupted one, or a corrupt shard or checkpoint used without an error. "Hung": a case past its
timeout. The cases reuse the CI fault tests' helpers (tests/test_faults.py, tests/test_faults_commit.py);
`clover` stages run as subprocesses on local[1], killed by process group.

    python benchmarks/faults.py                          # full: 3 kills per stage, 2,000 examples per fuzzer
    python benchmarks/faults.py --seeds 1 --examples 200 --huge-mb 20    # quick
"""

from __future__ import annotations

import os
import sys

sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import argparse
import json
import platform
import random
import resource
import shutil
import signal
import subprocess
import tempfile
import time
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

from dataprep.tokenize_stage import TokenizeConfig, encode_documents
from schemas import storage
from schemas.sample import write_sample, write_sample_pairs
from tests import test_faults as faults
from tests.test_faults_commit import _bytes, _clover
from tests.token_shards import write_token_shards
from training.trainer.data import CorruptShard, DataConfig, TokenStream


class Hung(Exception):
    pass


@dataclass
class Row:
    fault: str
    cases: int = 0
    bad: int = 0
    seconds: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def run(self, case, timeout: float, name: str = "") -> None:
        """One case: a failed check counts as data lost, past `timeout` as hung."""
        self.cases += 1
        started = time.monotonic()
        try:
            with _deadline(timeout):
                case()
        except Exception as err:  # noqa: BLE001 - every failure is a finding to report, not to stop on
            self.bad += 1
            notes = " ".join(getattr(err, "__notes__", []))  # hypothesis puts the falsifying example there
            self.failures.append(f"{name}: {type(err).__name__}: {str(err)[:300]} {notes[:500]}")
        self.seconds.append(time.monotonic() - started)


@contextmanager
def _deadline(seconds: float):
    def expire(*_):
        raise Hung(f"past {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _finish(child: subprocess.Popen, timeout: float) -> tuple[int, str]:
    """The child's exit status and stderr; a child past its timeout is killed and reported as hung."""
    try:
        _, err = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.communicate()
        raise Hung(f"clover past {timeout:.0f} s") from None
    return child.returncode, err


def _stage(args: list[str], timeout: float, **popen) -> None:
    code, err = _finish(_clover(*args, **popen), timeout)
    if code != 0:
        raise RuntimeError(f"clover {' '.join(args[:1])} exited {code}: {err[-500:]}")


def _check(condition: bool, what: str) -> None:
    if not condition:
        raise AssertionError(what)


def prepare(root: Path, timeout: float, stages: tuple[str, ...]) -> dict[str, dict]:
    """Old and new inputs and the uninterrupted outputs of the Spark stages (the references), in pipeline order:
    curate, dedup, train-tokenizer, then tokenize and prep-pairs (with the new tokenizer) when `stages` has them."""
    write_sample(str(root / "raw-old"), 60, seed=1)
    write_sample(str(root / "raw-new"), 120, seed=2)
    write_sample_pairs(str(root / "pairs-raw-old"), 40, seed=1)
    write_sample_pairs(str(root / "pairs-raw-new"), 80, seed=2)
    tokenizer = ["--tokenizer", str(root / "train-tokenizer-new")]
    pipeline = (("curate", "raw", []), ("dedup", "curate", []), ("train-tokenizer", "dedup", ["--vocab-size", "800"]),
                ("tokenize", "dedup", tokenizer), ("prep-pairs", "pairs-raw", tokenizer))
    refs = {}
    for stage, source, extra in pipeline:
        if stage in ("tokenize", "prep-pairs") and stage not in stages:
            continue  # the others are upstream of these or give the writer faults their references
        seconds = []
        for age in ("old", "new"):
            started = time.monotonic()
            _stage([stage, str(root / f"{source}-{age}"), "--out", str(root / f"{stage}-{age}"), *extra], timeout)
            seconds.append(time.monotonic() - started)
        refs[stage] = {"input": root / f"{source}-new", "old": root / f"{stage}-old", "new": root / f"{stage}-new",
                       "extra": extra, "seconds": seconds[1]}
    return refs


def crash_mid_stage(row: Row, root: Path, stage: str, ref: dict, seed: int, timeout: float) -> None:
    """SIGKILL once the stage writes its staging directory plus a random delay: old bytes or new, never a mix;
    the re-run removes the leftovers and matches the uninterrupted run."""
    rng = random.Random(seed)
    out = root / f"{stage}-kill-{seed}"
    shutil.copytree(ref["old"], out)
    old, new = _bytes(ref["old"]), _bytes(ref["new"])

    def case() -> None:
        child = _clover(stage, str(ref["input"]), "--out", str(out), *ref["extra"])
        while not list(root.glob(f"{out.name}.tmp-*")) and child.poll() is None:
            time.sleep(0.05)
        time.sleep(rng.uniform(0, max(ref["seconds"] / 4, 1.0)))
        with suppress(ProcessLookupError):  # it finished first: then its output must be the new one
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        _check(_bytes(out) in (old, new), "the killed run left a mix of old and new files")
        _stage([stage, str(ref["input"]), "--out", str(out), *ref["extra"]], timeout)
        _check(_bytes(out) == new and not storage.leftovers(str(out)), "the re-run differs or left staging behind")

    row.run(case, 2 * timeout, f"{stage} seed {seed}")


def concurrent_writers(row: Row, root: Path, ref: dict, trial: int, timeout: float) -> None:
    """Two `clover curate` on one --out: the second exits 2 naming the lock's owner; the first's bytes are right."""
    out = str(root / f"concurrent-{trial}")

    def case() -> None:
        first = _clover("curate", str(ref["input"]), "--out", out)
        while not Path(f"{out}.lock").exists() and first.poll() is None:
            time.sleep(0.05)
        code, err = _finish(_clover("curate", str(ref["input"]), "--out", out), timeout)
        _check(code == 2 and "is being written by pid" in err, f"second writer: exit {code}, {err[-300:]}")
        _check(_finish(first, timeout)[0] == 0 and _bytes(Path(out)) == _bytes(ref["new"]), "the winner's output differs")

    row.run(case, 2 * timeout, f"trial {trial}")


def disk_full(row: Row, root: Path, ref: dict, limit_kb: int, timeout: float) -> None:
    """Every file the child writes stops at limit_kb (RLIMIT_FSIZE): a clear error, nothing committed, and a
    later run succeeds."""
    out = root / f"full-{limit_kb}"

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_kb << 10, limit_kb << 10))

    def case() -> None:
        code, err = _finish(_clover("curate", str(ref["input"]), "--out", str(out), "--partitions", "1",
                                    preexec_fn=limit), timeout)
        _check(code != 0 and any(s in err for s in ("File too large", "EFBIG", "No space")), f"exit {code}: {err[-300:]}")
        _check(not out.exists(), "a failed run committed output")

    row.run(case, timeout, f"{limit_kb} KB")
    _stage(["curate", str(ref["input"]), "--out", str(out)], timeout)  # the later run (not timed)
    if _bytes(out) != _bytes(ref["new"]) or storage.leftovers(str(out)):
        row.bad += 1
        row.failures.append(f"{limit_kb} KB: the run after the failure differs or left the failed staging behind")


def corrupt_inputs(row: Row, root: Path, huge_mb: int, timeout: float) -> None:
    """Each corrupt file read alone gives the expected rows and reasons; then one `clover curate` over all of
    them (the huge line included) accounts for every record."""
    raw = root / "corrupt"
    raw.mkdir()
    expected = {raw / name: outcome for name, outcome in faults.EXPECTED.items()}
    for name, data in faults.CORRUPT_INPUTS.items():
        (raw / name).write_bytes(data)
    (raw / "tail.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(b'{"id": "z", "text": "zz"}\n') + b"junk")
    faults._parquet_with_flipped_page(raw / "flipped.parquet")
    pq.write_table(pa.table({"id": ["t"], "text": ["fine"]}), raw / "cut.parquet")
    (raw / "cut.parquet").write_bytes((raw / "cut.parquet").read_bytes()[:-6])
    (raw / "zero.parquet").write_bytes(b"")
    with open(raw / "huge.jsonl", "wb") as handle:  # written in 1 MB pieces, read back under the 4 MB cap
        handle.write(b'{"id": "a", "text": "before"}\n{"id": "big", "text": "')
        for _ in range(huge_mb):
            handle.write(b"x" * (1 << 20))
        handle.write(b'"}\n{"id": "c", "text": "after"}\n')
    expected |= {raw / "tail.jsonl.zst": [("z", 1, None), (None, 2, "truncated_file")],
                 raw / "huge.jsonl": [("a", 1, None), (None, 2, "oversized"), ("c", 3, None)]}
    expected |= {raw / name: [(None, 0, "unreadable_file")] for name in ("flipped.parquet", "cut.parquet", "zero.parquet")}
    for path, outcome in sorted(expected.items()):
        row.run(lambda path=path, outcome=outcome: _check(faults._outcome(faults._read(path)) == outcome,
                                                          f"{path.name}: unexpected rows"), timeout, path.name)

    def curate_all() -> None:
        _stage(["curate", str(raw), "--out", str(root / "corrupt-out"), "--no-validate"], timeout)
        report = json.loads((root / "corrupt-out" / "report.json").read_text())
        landed = sum(pq.read_metadata(p).num_rows for p in (root / "corrupt-out").rglob("*.parquet"))
        _check(landed == report["input"] == report["output"] + sum(report["removed"].values())
               + sum(report["quarantined"].values()), f"the report does not sum: {report['input']} in, {landed} landed")

    row.run(curate_all, timeout, "clover curate over all")


def huge_document(row: Row, model: Path, timeout: float) -> None:
    """A 20-million-character document encodes in pieces of at most max_encode_chars and decodes back exactly."""
    import sentencepiece as spm

    processor = spm.SentencePieceProcessor(model_file=str(model))
    row.run(lambda: faults.test_a_20_million_character_document_is_encoded_in_bounded_pieces(processor), timeout,
            "20M characters")
    text = ("lorem ipsum dolor sit amet\n" * 800_000)[:20_000_000]
    row.run(lambda: _check(processor.decode(encode_documents(processor, [text], TokenizeConfig().max_encode_chars)[0])
                           == text, "the pieces do not decode to the document"), timeout, "20M, newlines")


FUZZERS = ("test_fuzzed_json_values_each_become_exactly_one_row", "test_fuzzed_bytes_never_raise_and_every_row_is_kept_or_has_a_reason",
           "test_fuzzed_pair_records_each_land_once", "test_fuzzed_pair_bytes_never_raise")


def fuzz_campaign(row: Row, root: Path, model: Path, examples: int, timeout: float) -> None:
    """The CI fuzzers of the curate and prep-pairs readers with `examples` examples each (CI runs 100)."""
    from hypothesis import settings

    for name in FUZZERS:
        test = getattr(faults, name)
        # Hypothesis refuses a second @settings; the attribute it reads at call time can be replaced.
        test._hypothesis_internal_use_settings = settings(test._hypothesis_internal_use_settings,
                                                          max_examples=examples, database=None)
        work = root / f"fuzz-{name}"
        work.mkdir()
        kwargs = {"model_file": model} if "pair" in name else {}
        row.run(lambda test=test, work=work, kwargs=kwargs: test(work, **kwargs), timeout, name)
    row.cases = row.cases * examples


def corrupt_shard(row: Row, root: Path, seeds: int, timeout: float) -> None:
    """A byte flipped at a random offset of a random shard after validation: the loader stops naming it."""
    clean = write_token_shards(root / "tokens", rows=64)
    for seed in range(seeds):
        rng = random.Random(seed)
        data = root / f"tokens-{seed}"
        shutil.copytree(clean, data)
        shard = rng.choice(sorted((data / "shards").glob("*.parquet")))
        faults._flip_byte(shard, rng.randrange(shard.stat().st_size))

        def case(data=data, shard=shard) -> None:
            try:
                stream = TokenStream(str(data), 2, DataConfig())
                for index in range(stream.per_epoch):
                    stream.micro_batch(index)
            except CorruptShard as err:
                _check(shard.name in str(err), f"the error does not name {shard.name}: {err}")
                return
            raise AssertionError(f"trained through a flipped byte in {shard.name}")

        row.run(case, timeout, f"seed {seed}")


def truncated_checkpoint(row: Row, root: Path, timeout: float) -> None:
    """Each file of the newest checkpoint truncated in turn (the CI test): resume falls back, losses equal."""
    work = root / "checkpoint"
    work.mkdir()
    row.run(lambda: faults.test_a_truncated_checkpoint_file_falls_back_to_the_previous_checkpoint(work), timeout,
            "every file")
    files = len(list((work / "whole" / "checkpoints" / "step-00000004").iterdir()))
    row.cases, row.seconds = files, [s / files for s in row.seconds]


def _model(root: Path) -> Path:
    """A Clover tokenizer model (train_model, no Spark) on docstring lines, for the encode and pairs cases."""
    from dataprep.train_tokenizer import TokenizerConfig, train_model
    from schemas.sample import stdlib_docstrings

    path = root / "tokenizer.model"
    if not path.exists():
        lines = [line for doc in stdlib_docstrings()[:300] for line in doc.split("\n") if line.strip()]
        path.write_bytes(train_model(lines, TokenizerConfig(vocab_size=800, threads=1)))
    return path


CRASH_STAGES = ("curate", "dedup", "train-tokenizer", "tokenize", "prep-pairs")


def table(rows: list[Row]) -> str:
    lines = ["| fault | cases | lost or hung | seconds to a clear outcome (median / max) |", "|---|---:|---:|---|"]
    for row in rows:
        seconds = sorted(row.seconds) or [0.0]
        lines.append(f"| {row.fault} | {row.cases} | {row.bad} | {seconds[len(seconds) // 2]:.2f} / {seconds[-1]:.2f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3, help="kills per stage, corrupted shards (x4)")
    parser.add_argument("--examples", type=int, default=2000, help="hypothesis examples per fuzzer")
    parser.add_argument("--huge-mb", type=int, default=200, help="size of the huge JSONL line")
    parser.add_argument("--timeout", type=float, default=300, help="seconds before a case counts as hung")
    parser.add_argument("--work", help="work directory (default: a temporary one, removed)")
    parser.add_argument("--crash-stages", default=",".join(CRASH_STAGES), help="stages killed mid-run")
    parser.add_argument("--only-crashes", action="store_true", help="run the crash rows alone")
    args = parser.parse_args()
    root = Path(args.work or tempfile.mkdtemp(prefix="clover-faults-"))
    root.mkdir(parents=True, exist_ok=True)
    started = time.time()
    crashed = [stage for stage in CRASH_STAGES if stage in args.crash_stages.split(",")]
    refs = prepare(root, args.timeout, tuple(crashed))
    rows = [Row(f"crash mid-stage: SIGKILL of clover {stage}") for stage in crashed]
    for row, stage in zip(rows, crashed):
        for seed in range(args.seeds):
            crash_mid_stage(row, root, stage, refs[stage], seed, args.timeout)
    if not args.only_crashes:
        rows += other_faults(root, refs, args)
    print(table(rows))
    print(f"\n{platform.node()}, {os.cpu_count()} CPUs, {time.time() - started:.0f} s in all")
    for row in rows:
        for failure in row.failures:
            print(f"FAILED {row.fault}: {failure}")
    if not args.work:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if any(row.bad for row in rows) else 0


def other_faults(root: Path, refs: dict[str, dict], args: argparse.Namespace) -> list[Row]:
    """Every fault but the crashes; the writer faults use curate's references."""
    rows = []
    rows.append(Row("concurrent writers (two clover curate, one --out)"))
    for trial in range(2):
        concurrent_writers(rows[-1], root, refs["curate"], trial, args.timeout)
    rows.append(Row("disk full (RLIMIT_FSIZE 64 KB, 1 MB)"))
    for limit_kb in (64, 1024):
        disk_full(rows[-1], root, refs["curate"], limit_kb, args.timeout)
    rows.append(Row(f"corrupt inputs (each kind; a {args.huge_mb} MB JSONL line; curate over all)"))
    corrupt_inputs(rows[-1], root, args.huge_mb, args.timeout)
    rows.append(Row("20M-character document (tokenize encode)"))
    huge_document(rows[-1], _model(root), args.timeout)
    rows.append(Row(f"hypothesis: curate and prep-pairs readers ({args.examples} examples x 4 fuzzers)"))
    fuzz_campaign(rows[-1], root, _model(root), args.examples, 4 * args.timeout)
    rows.append(Row("corrupted shard under training (random byte flipped)"))
    corrupt_shard(rows[-1], root, 4 * args.seeds, args.timeout)
    rows.append(Row("truncated checkpoint (each file of the newest)"))
    truncated_checkpoint(rows[-1], root, 4 * args.timeout)
    return rows


if __name__ == "__main__":
    sys.exit(main())
