"""`clover quantize`: group size and calibration here; the GPTQ run itself where llm-compressor is installed."""

from __future__ import annotations

import json

import pytest
import torch

from tests.test_export import exported  # noqa: F401  (the module fixture: a trained, exported clover-tiny)
from training.inference.quantize import calibration_ids, group_size
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
