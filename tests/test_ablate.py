"""`clover ablate` on real text: a variant with half its documents replaced by looping repeats (each four times
as long as the document it replaces, so most of its tokens loop) loses to the clean one on the held-out
set by more than the seed spread, and held-out documents planted in a variant are removed and counted."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dataprep.validate import validate_dataset
from jobs.ablate import AblateConfig, run_ablation
from schemas.config import ConfigError
from schemas.sample import stdlib_docstrings


def _documents(spark, path: Path, ids: list[str], texts: list[str]) -> str:
    path.mkdir(parents=True)
    pq.write_table(pa.table({"id": ids, "text": texts}), path / "part-0.parquet")
    assert validate_dataset(spark, str(path), kind="documents").success
    return str(path)


def _texts(directory: Path) -> list[str]:
    return [t for f in sorted(directory.glob("*.parquet")) for t in pq.read_table(f).column("text").to_pylist()]


def _loop(text: str, rng: random.Random) -> str:
    words = text.split()
    start = rng.randrange(max(len(words) - 6, 1))
    phrase = " ".join(words[start:start + 6])
    return " ".join([phrase] * (4 * len(text) // (len(phrase) + 1) + 1))  # 4x as long: most tokens are loops


@pytest.fixture(scope="module")
def ablation(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("ablate")
    texts = list(dict.fromkeys(stdlib_docstrings(min_words=60)))  # distinct texts
    held_out, pool = texts[:60], texts[60:360]
    rng = random.Random(0)
    eval_docs = _documents(spark, root / "eval-docs", [f"eval-{i}" for i in range(60)], held_out)
    clean = _documents(spark, root / "clean", [f"pool-{i}" for i in range(len(pool))] + [f"planted-{i}" for i in range(5)],
                       pool + held_out[:5])
    corrupted = _documents(spark, root / "looping", [f"pool-{i}" for i in range(len(pool))],
                           [_loop(t, rng) if i % 2 else t for i, t in enumerate(pool)])
    cfg = AblateConfig(variants=f"clean={clean},looping={corrupted}", eval=eval_docs, seeds=2, seq_len=64,
                       micro_batch=8, tokens=8 * 64 * 80, vocab_size=800, tokenizer_from="clean", eval_sequences=64,
                       shard_bytes=64 << 10)
    return root, cfg, run_ablation(spark, cfg, str(root / "out"))


def test_the_clean_variant_wins_beyond_the_seed_spread(ablation):
    root, cfg, result = ablation
    assert result["ranking"] == ["clean", "looping"]
    (verdict,) = result["comparisons"]
    assert verdict["beyond_seed_spread"] and verdict["difference"] > verdict["spread"] > 0, result["table"]
    written = json.loads((root / "out" / "ablation.json").read_text())
    for name in ("clean", "looping"):
        runs = written["variants"][name]["runs"]
        assert len(runs) == 2 and all(r["curve"][-1][0] == result["tokens_per_run"] for r in runs)
    assert (root / "out" / "ablation.png").read_bytes()[:4] == b"\x89PNG" and "beats" in (root / "out" / "ablation.md").read_text()


def test_held_out_documents_planted_in_a_variant_are_removed_and_counted(ablation):
    root, _, result = ablation
    record = json.loads((root / "out" / "variants" / "clean" / "documents" / "decontamination.json").read_text())
    assert {f"planted-{i}" for i in range(5)} <= set(record["removed_ids"])
    assert result["variants"]["clean"]["eval_overlap_removed"] == record["removed"] >= 5
    assert record["input"] == record["output"] + record["removed"]
    trained = set(_texts(root / "out" / "variants" / "clean" / "documents" / "documents"))
    held_out = set(_texts(root / "eval-docs"))
    assert not trained & held_out


def test_a_rerun_reuses_every_finished_run(ablation, spark):
    root, cfg, result = ablation
    mtimes = {p: p.stat().st_mtime for p in (root / "out" / "runs").rglob("metrics.jsonl")}
    again = run_ablation(spark, cfg, str(root / "out"))
    assert again["variants"]["clean"]["final_eval_loss_mean"] == result["variants"]["clean"]["final_eval_loss_mean"]
    assert {p: p.stat().st_mtime for p in mtimes} == mtimes


def test_variants_are_checked_before_anything_runs():
    with pytest.raises(ConfigError, match="at least two"):
        AblateConfig(variants="only=/x").variant_dirs()
    with pytest.raises(ConfigError, match="repeat"):
        AblateConfig(variants="a=/x,a=/y").variant_dirs()
