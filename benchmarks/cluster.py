"""The same stages on local[2], on a Spark standalone cluster (2 cores) and on S3: seconds, ratios, bytes.

    flock /tmp/clover-cpu.lock python benchmarks/cluster.py --docs 100000 --out benchmarks/results

Every run is the command a user types, in a child process (JVM start included):
- local[2]: `clover STAGE ... --master local[2]` on local disk;
- cluster: `spark-submit --master spark://... --py-files clover.zip jobs/STAGE.py ...` against a master and
  one 2-core worker on 127.0.0.1 whose executors run a Python without Clover (tests/infra.py);
- S3: the local[2] command with every input and output on s3:// (a moto server on 127.0.0.1).

It measures curate and dedup on `--docs` documents of the built-in sample (wall seconds per command and the
`seconds` each stage records), their fixed cost on `--tiny` documents (median of `--repeats`), and checks
that dedup, train-tokenizer and prep-pairs write on the cluster the bytes local[2] writes (tests/test_cluster.py
covers curate and tokenize in CI; the full matrix is too slow for the suite). Exits 1 on a mismatch or failure.
"""

from __future__ import annotations

import os
import sys

# runs from a checkout without an install: the repository, not this folder, goes first on sys.path
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import argparse
import json
import platform
import subprocess
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pyarrow
import pyspark

from benchmarks.tables import table
from jobs.package import build_zip
from schemas import storage
from schemas.sample import write_sample, write_sample_pairs
from tests.infra import REPO, free_port, moto_server, spark_submit, standalone_cluster

TIMEOUT_S = 3600
BUCKET = "clover-bench"
COLUMNS = ("cluster", "cluster-shuffle", "s3")  # timed against local[2], one (seconds, ratio) pair each
# local[2] runs driver and executors in one JVM of clover's default 4g; the cluster gets about as much
WORKER_MEMORY, EXECUTOR_CONF = "4g", {"spark.executor.memory": "3g"}


@dataclass
class Timing:
    wall: float | None = None  # seconds of the whole command
    stage: float | None = None  # seconds the stage recorded in its report
    error: str = ""

    def cell(self) -> str:
        if self.error:
            return "FAILED"
        return f"{self.wall:.1f}" + (f" ({self.stage:.1f})" if self.stage is not None else "")


def ratio(a: Timing | None, b: Timing | None) -> str:
    if a is None or b is None or a.error or b.error:
        return ""
    return f"{a.wall / b.wall:.2f}x"


def recorded_seconds(out: str) -> float | None:
    """The stage's own seconds: report.json (curate, dedup, prep-pairs) or tokenizer.json."""
    for record in ("report.json", "tokenizer.json"):
        if storage.exists(storage.join(out, record)):
            return json.loads(storage.read_text(storage.join(out, record))).get("seconds")
    return None


class Runner:
    """Runs a stage the way a user does on one target and times it; failures are recorded, not raised."""

    def __init__(self, name: str, cluster: dict | None = None, py_files: str = "", conf: dict | None = None) -> None:
        self.name, self.cluster, self.py_files, self.conf = name, cluster, py_files, {**EXECUTOR_CONF, **(conf or {})}
        self.failures: list[str] = []

    def __call__(self, stage: str, *args: str, out: str) -> Timing:
        start = time.perf_counter()
        try:
            if self.cluster is None:
                command = [sys.executable, "-m", "jobs.cli", stage, *args, "--out", out, "--master", "local[2]"]
                done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT_S,
                                      env={**os.environ, "PYSPARK_PYTHON": sys.executable})
                if done.returncode != 0:
                    raise RuntimeError(f"clover {stage} exited with {done.returncode}:\n{done.stderr[-4000:]}")
            else:
                spark_submit(self.cluster, self.py_files, f"{stage.replace('-', '_')}.py", *args, "--out", out,
                             timeout=TIMEOUT_S, conf=self.conf)
        except (RuntimeError, subprocess.TimeoutExpired) as err:
            self.failures.append(f"{stage} on {self.name} ({out}):\n{err}")
            print(f"FAILED {stage} on {self.name}: {str(err)[-2000:]}", file=sys.stderr, flush=True)
            return Timing(error=str(err))
        timing = Timing(time.perf_counter() - start, recorded_seconds(out))
        print(f"{stage:16s} {self.name:22s} {timing.cell():>14s} s  -> {out}", flush=True)
        return timing


def output_bytes(root: Path) -> dict[str, bytes]:
    """Every data file of a stage output (Parquet parts, SentencePiece model) by relative path."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.suffix in (".parquet", ".model")}


def identical(a: Path, b: Path) -> str:
    left, right = output_bytes(a), output_bytes(b)
    if not left or not right:
        return "FAIL (no output)"
    differ = sorted(k for k in left.keys() | right.keys() if left.get(k) != right.get(k))
    return f"PASS ({len(left)} files)" if not differ else f"FAIL ({len(differ)} of {len(left)} files differ: " \
        f"{', '.join(differ[:5])})"


def stage_input(stage: str, records: int, kept: int) -> str:
    return f"{records:,} records" if stage == "curate" else f"{kept:,} docs (curate's kept)"


def kept_of(out: str) -> int:
    return json.loads(storage.read_text(storage.join(out, "report.json")))["output"] if storage.exists(
        storage.join(out, "report.json")) else 0


def measure(work: Path, docs: int, runners: dict[str, Runner], flags: list[str], s3_root: str,
            repeats: int = 1) -> list[tuple]:
    """curate then dedup of write_sample(docs) on every runner: a table row per stage.

    Run i of a stage writes TARGET/STAGE-i. Dedup reads local[2]'s first curate output on local[2] and on the
    cluster (the same input), and the S3 one on S3. With repeats > 1 a cell is the run of median wall time.
    """
    raw = work / "raw"
    records = sum(write_sample(str(raw), docs).values())
    if "s3" in runners:
        import boto3

        client = boto3.client("s3")
        for path in sorted(raw.iterdir()):  # one PutObject per file: moto rejects pyarrow's multipart uploads
            client.put_object(Bucket=BUCKET, Key=f"{s3_root}/raw/{path.name}", Body=path.read_bytes())
    timings: dict[str, dict[str, Timing]] = {"curate": {}, "dedup": {}}
    for stage in ("curate", "dedup"):
        for name, run in runners.items():
            base = f"s3://{BUCKET}/{s3_root}" if name == "s3" else str(work / name)
            source = {"curate": f"{base}/raw" if name == "s3" else str(raw),
                      "dedup": f"{base}/curate-0" if name == "s3" else str(work / "local" / "curate-0")}[stage]
            tries = [run(stage, source, *flags, out=f"{base}/{stage}-{i}") for i in range(repeats)]
            done = sorted((t for t in tries if not t.error), key=lambda t: t.wall)
            timings[stage][name] = done[len(done) // 2] if done else tries[0]
    kept = kept_of(str(work / "local" / "curate-0"))
    rows = []
    for stage in ("curate", "dedup"):
        local = timings[stage]["local"]
        cells = [(t.cell(), ratio(t, local)) if t else ("", "") for t in map(timings[stage].get, COLUMNS)]
        rows.append((stage, stage_input(stage, records, kept), local.cell(), *(c for pair in cells for c in pair)))
    return rows


def check_bytes(work: Path, docs: int, local: Runner, cluster: Runner) -> list[tuple]:
    """dedup, train-tokenizer and prep-pairs on the cluster against local[2], on write_sample(docs)."""
    write_sample(str(work / "raw"), docs)
    write_sample_pairs(str(work / "pairs-raw"), 200)
    local("curate", str(work / "raw"), out=str(work / "local" / "curated"))
    steps = (("dedup", [str(work / "local" / "curated")], "deduped", f"{docs:,}-doc sample, curated"),
             ("train-tokenizer", [str(work / "local" / "deduped"), "--vocab-size", "800"], "tokenizer",
              f"{docs:,}-doc sample, deduped"),
             ("prep-pairs", [str(work / "pairs-raw"), "--tokenizer", str(work / "local" / "tokenizer")], "pairs",
              "200 sample pairs"))
    rows = []
    for stage, args, name, described in steps:
        here = local(stage, *args, out=str(work / "local" / name))
        there = cluster(stage, *args, out=str(work / "cluster" / name))
        rows.append((stage, described, here.cell(), there.cell(), identical(work / "local" / name, work / "cluster" / name)))
    return rows


def machine() -> str:
    with open("/proc/meminfo") as handle:
        ram = int(handle.readline().split()[1]) / 2**20
    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()[0]
    return (f"{os.cpu_count()} cores (nproc), {ram:.1f} GiB RAM, Linux {platform.release()}, {platform.machine()}; "
            f"Python {platform.python_version()}, pyspark {pyspark.__version__}, pyarrow {pyarrow.__version__}, {java}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=100_000, help="documents of the large input")
    parser.add_argument("--tiny", type=int, default=200, help="documents of the fixed-cost input")
    parser.add_argument("--repeats", type=int, default=3, help="runs per fixed-cost cell (the median is shown)")
    parser.add_argument("--partitions", type=int, default=16,
                        help="--partitions of the large runs: both cores busy, parts under moto's 10 MiB")
    parser.add_argument("--shuffle-partitions", type=int, default=8,
                        help="also time the cluster with spark.sql.shuffle.partitions=N, local[2]'s value (0: not)")
    parser.add_argument("--check-docs", type=int, default=2000, help="documents of the byte-identity input")
    parser.add_argument("--out", help="folder for cluster-DATE.md (default: print only)")
    parser.add_argument("--work", help="working folder (default: a temporary one, removed)")
    parser.add_argument("--skip-s3", action="store_true")
    parser.add_argument("--skip-cluster", action="store_true")
    parser.add_argument("--check-only", action="store_true", help="only the byte-identity check (needs the cluster)")
    args = parser.parse_args()
    if args.check_only and args.skip_cluster:
        parser.error("--check-only needs the cluster")
    return args


def start_runners(stack: ExitStack, work: Path, args: argparse.Namespace) -> dict[str, Runner]:
    """local[2] always; the standalone cluster (also with few shuffle partitions) and moto S3 unless skipped."""
    runners = {"local": Runner("local[2]")}
    if not args.skip_cluster:
        cluster = stack.enter_context(standalone_cluster(work / "spark", cores=2, memory=WORKER_MEMORY))
        py_files = build_zip(str(work / "package"))
        runners["cluster"] = Runner("cluster", cluster, py_files)
        if args.shuffle_partitions and not args.check_only:
            runners["cluster-shuffle"] = Runner(f"cluster, shuffle {args.shuffle_partitions}", cluster, py_files,
                                                {"spark.sql.shuffle.partitions": str(args.shuffle_partitions)})
    if not (args.skip_s3 or args.check_only):
        port = free_port()
        for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN"):
            os.environ.pop(name, None)
        os.environ.update(AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}", AWS_ACCESS_KEY_ID="clover-bench",
                          AWS_SECRET_ACCESS_KEY="clover-bench-secret", AWS_REGION="us-east-1",
                          AWS_EC2_METADATA_DISABLED="true")
        stack.enter_context(moto_server(port))
        import boto3

        boto3.client("s3").create_bucket(Bucket=BUCKET)
        runners["s3"] = Runner("s3")
    return runners


def timing_sections(work: Path, args: argparse.Namespace, runners: dict[str, Runner]) -> list[str]:
    """The large-input table and the fixed-cost table."""
    header = ("stage", "input", "local[2] s", "cluster s", "cluster/local",
              f"cluster, {args.shuffle_partitions} shuffle partitions s", "ratio to local", "s3 s", "s3/local")
    rows = measure(work / "large", args.docs, runners, ["--partitions", str(args.partitions)], "large")
    tiny_rows = measure(work / "tiny", args.tiny, runners, [], "tiny", repeats=args.repeats)
    return [f"### {args.docs:,} documents (`--partitions {args.partitions}`)\n\n{table(header, rows)}",
            f"### Fixed cost: {args.tiny:,} documents (median of {args.repeats})\n\n{table(header, tiny_rows)}"]


def identity_rows(work: Path, args: argparse.Namespace, runners: dict[str, Runner]) -> list[tuple]:
    """Byte identity of the check input's stages, and of the large runs' outputs (compared for free)."""
    rows = check_bytes(work / "check", args.check_docs, runners["local"], runners["cluster"])
    if not args.check_only:
        large = work / "large"
        rows += [(stage, f"{args.docs:,}-doc sample ({runners[name].name})", "", "",
                  identical(large / "local" / f"{stage}-0", large / name / f"{stage}-0"))
                 for name in ("cluster", "cluster-shuffle") if name in runners for stage in ("curate", "dedup")]
    return rows


def write_results(args: argparse.Namespace, sections: list[str], failures: list[str], minutes: float) -> None:
    command = f"python benchmarks/cluster.py {' '.join(sys.argv[1:])}".strip()
    text = (f"# Cluster and S3 benchmark, {time.strftime('%Y-%m-%d')}\n\n`{command}`\n\nMachine: {machine()}. "
            f"Whole run: {minutes:.1f} min.\n\nCells are wall seconds of the whole command (JVM "
            "start included), with the seconds the stage records in its report.json in parentheses; ratios are of "
            "wall seconds. local[2] is also the local-disk run the S3 run compares with.\n\n" + "\n\n".join(sections) + "\n")
    if failures:
        text += "\n### Failures\n\n" + "\n\n".join(f"```\n{f[-3000:]}\n```" for f in failures) + "\n"
    print(text)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, f"cluster-{time.strftime('%Y-%m-%d')}.md"), "w", encoding="utf-8") as handle:
            handle.write(text)


def main() -> int:
    args = parse_args()
    started = time.time()
    identity: list[tuple] = []
    with ExitStack() as stack:
        work = Path(args.work or stack.enter_context(tempfile.TemporaryDirectory(prefix="clover-bench-cluster-")))
        work.mkdir(parents=True, exist_ok=True)
        runners = start_runners(stack, work, args)
        sections = [] if args.check_only else timing_sections(work, args, runners)
        if "cluster" in runners:
            identity = identity_rows(work, args, runners)
            sections.append("### Byte identity: standalone cluster vs local[2]\n\n" + table(
                ("stage", "input", "local[2] s", "cluster s", "Parquet and model bytes"), identity))
    failures = [f for run in runners.values() for f in run.failures]
    write_results(args, sections, failures, (time.time() - started) / 60)
    for row in identity:
        print(f"{'PASS' if row[-1].startswith('PASS') else 'FAIL'} {row[0]} ({row[1]}): {row[-1]}")
    mismatch = [row for row in identity if not row[-1].startswith("PASS")]
    return 1 if failures or mismatch else 0


if __name__ == "__main__":
    sys.exit(main())
