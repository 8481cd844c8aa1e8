"""`clover quantize`: group size and calibration here; the GPTQ run itself where llm-compressor is installed."""

from __future__ import annotations

import json

import pytest
import torch

from tests.test_export import exported  # noqa: F401  (the module fixture: a trained, exported clover-tiny)
from training.inference.quantize import calibration_ids, group_size, held_out_rows
from training.trainer.model import Transformer, model_config


def test_group_size_divides_every_quantized_layer():
    assert group_size(Transformer(model_config("clover-tiny"))) == 64
    assert group_size(Transformer(model_config("clover-tiny", dim=96, n_heads=4, n_kv_heads=2, ffn_dim=288))) == 32


def test_calibration_is_chat_formatted_sample_text(exported):  # noqa: F811
    _, out, _ = exported
    rows = calibration_ids(out, 8, 64)
    meta = json.loads((out / "clover_tokenizer.json").read_text())
    assert len(rows) == 8 and all(len(r) <= 64 for r in rows)
    assert all(r[:2] == [meta["special_ids"]["bos"], meta["control_ids"]["<|user|>"]] for r in rows)


def test_perplexity_is_measured_on_the_runs_held_out_shards(exported, tmp_path):  # noqa: F811
    import pyarrow.parquet as pq

    root, out, _ = exported
    record = json.loads((out / "clover_eval.json").read_text())
    run_config = json.loads((root / "run" / "config.json").read_text())
    assert record["held_out_shards"] == run_config["eval"]["held_out_shards"] and len(record["held_out_shards"]) == 1
    rows, source = held_out_rows(out, 6)
    assert source["held_out_shards"] == record["held_out_shards"] and len(rows) == 6
    held = pq.read_table(root / "tokens" / record["held_out_shards"][0]).column("tokens").to_pylist()
    assert all(row in held for row in rows)  # every evaluated sequence comes from the held-out shard
    trained = [pq.read_table(p).column("tokens").to_pylist() for p in sorted((root / "tokens").glob("*.parquet"))
               if p.name not in record["held_out_shards"]]
    assert not any(row in shard for row in rows for shard in trained)

    (tmp_path / "clover_eval.json").write_text(json.dumps({**record, "held_out_shards": [],
                                                           "data": record["trained_on"]}))
    with pytest.raises(ValueError, match="--eval-data"):  # never the training data
        held_out_rows(tmp_path, 6)
    rows, source = held_out_rows(tmp_path, 6, eval_data=str(root / "tokens"))
    assert len(rows) == 6 and source == {"eval_data": str(root / "tokens"), "held_out_shards": []}


def test_gptq_w4a16_round_trip(exported, tmp_path):  # noqa: F811
    pytest.importorskip("llmcompressor")
    from training.inference.quantize import quantize

    _, out, _ = exported
    report = quantize(str(out), str(tmp_path / "q4"), calibration_samples=16, calibration_length=128, eval_samples=8)
    config = json.loads((tmp_path / "q4" / "config.json").read_text())
    assert config["quantization_config"]["config_groups"]["group_0"]["weights"]["num_bits"] == 4
    assert report["bytes_after"] < report["bytes_before"]
    assert abs(report["perplexity_after"] / report["perplexity_before"] - 1) < 0.2
    assert torch.isfinite(torch.tensor(report["perplexity_after"]))
