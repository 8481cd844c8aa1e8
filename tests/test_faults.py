"""Fault injection: unsafe loads, escaping paths, corrupt inputs and shards, torn checkpoints, fuzzed JSONL.

Each fault must end in a quarantine row with a reason or a fast, clear error; nothing is lost and
nothing hangs. Cases too slow for CI (a 200 MB line, longer fuzzing campaigns) are in benchmarks/faults.py.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
from pathlib import Path

import pytest

from quality.gate import UnsafeManifestPath
from tests.token_shards import write_token_shards
from training.checkpoint import complete_checkpoints
from training.data import CorruptShard, DataConfig, TokenStream
from training.gate import GateConfig, GatedStream
from training.pretrain import TrainConfig, train

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("dataprep", "jobs", "quality", "schemas", "training", "benchmarks")


def _package_sources() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (REPO / package).rglob("*.py"))


def test_no_unsafe_deserialization_in_the_package():
    """torch.load only with weights_only=True; no pickle, no yaml.load, no np.load(allow_pickle=True)."""
    unsafe = []
    for path in _package_sources():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            owner = node.func.value.id if isinstance(node.func.value, ast.Name) else ""
            call = f"{owner}.{node.func.attr}"
            keywords = {k.arg: getattr(k.value, "value", None) for k in node.keywords}
            if (call == "torch.load" and keywords.get("weights_only") is not True
                    or owner in ("pickle", "cPickle", "dill", "marshal") and node.func.attr.startswith("load")
                    or call == "yaml.load" or call in ("np.load", "numpy.load") and keywords.get("allow_pickle")):
                unsafe.append(f"{path.relative_to(REPO)}:{node.lineno}: {call}")
        text = path.read_text()
        for needle in ("weights_only" + "=False", "pickle" + ".load"):
            unsafe += [f"{path.relative_to(REPO)}: {needle}"] if needle in text else []
    assert not unsafe, "unsafe deserialization:\n" + "\n".join(unsafe)
    assert len(_package_sources()) > 50  # the scan saw the package


# --- token shards: paths that escape the dataset, corrupt bytes --------------------------------------------------

def _manifest(root: Path) -> dict:
    return json.loads((root / "manifest.json").read_text())


def _set_manifest(root: Path, manifest: dict) -> None:
    (root / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("name, why", [("../outside.parquet", "goes up with '..'"), ("shards/../../outside.parquet", "goes up with '..'"),
                                       ("/etc/passwd", "is absolute"), ("s3://other-bucket/x.parquet", "is absolute"),
                                       ("", "is empty")])
def test_manifest_paths_cannot_escape_the_dataset(tmp_path, name, why):
    data = write_token_shards(tmp_path / "tok")
    shutil.copy(data / "shards" / "part-00000.parquet", tmp_path / "outside.parquet")  # readable, were it allowed
    manifest = _manifest(data)
    manifest["shards"][0]["file"] = name
    _set_manifest(data, manifest)
    with pytest.raises(UnsafeManifestPath, match=re.escape(why) + "; a manifest may only name files inside its dataset"):
        TokenStream(str(data), 2, DataConfig())


def _flip_byte(path: Path, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x5A
    path.write_bytes(bytes(raw))


def test_a_flipped_byte_in_a_validated_shard_stops_the_loader_naming_the_shard(tmp_path):
    data = write_token_shards(tmp_path / "tok", rows=64)
    shard = data / "shards" / "part-00001.parquet"
    _flip_byte(shard, shard.stat().st_size // 3)  # inside a data page: the footer still parses
    stream = TokenStream(str(data), 2, DataConfig())
    with pytest.raises(CorruptShard, match=r"part-00001.parquet: sha256 .* differs from the manifest's"):
        for index in range(stream.per_epoch):
            stream.micro_batch(index)
    stream.close()
    with pytest.raises(CorruptShard, match="part-00001.parquet"):
        train(_tiny(4), str(data), str(tmp_path / "run"))


def test_a_truncated_shard_footer_is_refused_at_open(tmp_path):
    data = write_token_shards(tmp_path / "tok")
    shard = data / "shards" / "part-00000.parquet"
    shard.write_bytes(shard.read_bytes()[:-9])
    with pytest.raises(CorruptShard, match="part-00000.parquet: not a readable Parquet shard"):
        TokenStream(str(data), 2, DataConfig())


def test_old_manifests_without_sha256_stay_readable(tmp_path):
    data = write_token_shards(tmp_path / "tok")
    manifest = _manifest(data)
    for entry in manifest["shards"]:
        entry.pop("sha256", None)
    _set_manifest(data, manifest)
    stream = TokenStream(str(data), 2, DataConfig())
    assert stream.micro_batch(0).tokens.shape == (2, 65)
    stream.close()


def test_a_corrupt_shard_on_another_rank_stops_this_one_too(tmp_path):
    """The gate's all-gather carries a -1 from the rank that hit the corrupt shard: nobody waits forever."""
    data = write_token_shards(tmp_path / "tok")
    stream = TokenStream(str(data), 2, DataConfig())
    gated = GatedStream(stream, GateConfig(), 0, 2, lambda values: [values, [-1.0]])
    with pytest.raises(CorruptShard, match="rank 1 found a corrupt shard"):
        gated.next()
    stream.close()


def _tiny(steps: int) -> TrainConfig:
    cfg = TrainConfig(model="clover-tiny", micro_batch=2, grad_accum=2, max_steps=steps, tensorboard=False)
    cfg.checkpoint.every = 2
    cfg.schedule.warmup_steps, cfg.schedule.max_lr, cfg.schedule.total_steps = 2, 3e-3, 20
    return cfg


# --- checkpoints: every file of the newest one truncated in turn ------------------------------------------------

def test_a_truncated_checkpoint_file_falls_back_to_the_previous_checkpoint(tmp_path):
    data = str(write_token_shards(tmp_path / "tok", repetitive_rows=(3, 40)))
    cfg = _tiny(4)
    train(cfg, data, str(tmp_path / "whole"))
    whole = _losses(tmp_path / "whole")
    newest = tmp_path / "whole" / "checkpoints" / "step-00000004"
    names = sorted(p.name for p in newest.iterdir())
    assert {"COMPLETE", "trainer.json", ".metadata", "rng-rank00000.pt"} <= set(names)
    for name in names:
        run = tmp_path / f"cut-{name.strip('.')}"
        shutil.copytree(tmp_path / "whole", run)
        target = run / "checkpoints" / "step-00000004" / name
        target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
        with pytest.warns(UserWarning, match="skipping checkpoint .*step-00000004"):
            train(cfg, data, str(run))  # resumes from step 2 and trains steps 3 and 4 again
        assert _losses(run) == whole, name  # bitwise: the same floats as the uninterrupted run
        assert [s for s, _ in complete_checkpoints(run / "checkpoints")] == [4, 2]  # step 4 trained and written again


def _losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]
