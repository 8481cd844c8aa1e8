"""End to end: a shortened `clover demo` — every report sums, validation passes, the loss falls, DPO learns,
the export loads in transformers, plots are written, the gate story's gated arm rejects looping micro-batches,
and a rerun skips every finished stage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobs.demo import DemoConfig, run_demo
from jobs.gate_story import GateStoryConfig
from schemas import StageReport

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def demo(spark, tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run"
    cfg = DemoConfig(docs=400, pairs=60, vocab_size=1000, seq_len=128, token_shard_bytes=16 << 10,
                     pretrain_steps=60, pretrain_micro_batch=8,
                     dpo_steps=30, dpo_micro_batch=8, max_pair_length=192, gate_story=GateStoryConfig(steps=30))
    return out, cfg, run_demo(str(out), cfg, spark=spark)


def test_every_report_sums_and_every_dataset_validates(demo):
    out, _, summary = demo
    for report in ("curated/report.json", "deduped/report.json", "tokens/report.json", "pairs/report.json"):
        StageReport.from_json((out / report).read_text()).check()
    assert all(v["success"] for v in summary["validation"].values()), summary["validation"]
    assert (out / "tokens" / "data_docs" / "index.html").exists()
    manifest = json.loads((out / "tokens" / "manifest.json").read_text())
    assert manifest["validation"]["success"] and summary["tokens"]["tokens"] == manifest["tokens"]


def test_loss_falls_dpo_learns_and_export_loads(demo):
    out, cfg, summary = demo
    assert summary["pretrain"]["final_loss"] < summary["pretrain"]["first_loss"] - 1.0
    assert summary["dpo"]["steps"] == cfg.dpo_steps and summary["dpo"]["train_reward_accuracy_last_10"] > 0.6
    pretrain, dpo = summary["pretrain"], summary["dpo"]  # held out, never trained on
    assert pretrain["held_out_shards"] >= 1 and pretrain["eval_loss"] < pretrain["first_loss"]
    assert dpo["eval_pairs"] >= 1 and 0 <= dpo["eval_reward_accuracy"] <= 1
    assert "held-out loss" in summary["table"] and "held-out reward accuracy" in summary["table"]
    model = transformers.AutoModelForCausalLM.from_pretrained(str(out / "export"))
    assert type(model).__name__ == "LlamaForCausalLM"
    for plot in summary["plots"].values():
        assert Path(plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "tokens written" in summary["table"] and "reward accuracy" in summary["table"]
    assert (out / "summary.md").exists() and json.loads((out / "summary.json").read_text())["dpo"]


def test_gate_story_gated_arm_rejects_and_both_arms_share_a_start(demo):
    out, cfg, summary = demo
    story = summary["gate_story"]
    ungated, gated = story["arms"]["ungated"], story["arms"]["gated"]
    assert gated["rejected_micro_batches"] >= 1 and ungated["rejected_micro_batches"] == 0
    assert 0 < gated["rejection_rate"] < 1 and ungated["rejection_rate"] == 0
    assert (ungated["gate"], ungated["clip"], gated["gate"], gated["clip"]) == (False, 1.0, True, 0.5)
    assert ungated["init_from"] == gated["init_from"] and ungated["init_step"] == gated["init_step"] == cfg.pretrain_steps
    assert ungated["steps"] == gated["steps"] == cfg.gate_story.steps
    assert ungated["allow_unvalidated"] and gated["allow_unvalidated"]  # the looping rows bypass validation on purpose
    manifest = json.loads((out / "gate-story/data/manifest.json").read_text())
    assert manifest["validation"] is None and manifest["uncurated"]["looping_rows"] > 0
    assert Path(summary["plots"]["gate_story"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    recorded = json.loads((out / "summary.json").read_text())["gate_story"]["arms"]
    assert all({"max_grad_norm", "final_loss", "rejection_rate"} <= set(arm) for arm in recorded.values())
    assert "gate story" in summary["table"] and "rejected" in (out / "summary.md").read_text()


def test_rerun_skips_finished_stages(demo, spark, capsys):
    out, cfg, _ = demo
    summary = run_demo(str(out), cfg, spark=spark)
    assert summary["seconds"] == {}
    assert capsys.readouterr().err.count("done before") == 10


def test_no_gate_story_flag_skips_the_step(tmp_path):
    from jobs.demo import COMMAND, _gate_story_step

    _, cfg = COMMAND.parse(["--no-gate-story"], "clover demo")
    assert cfg.gate_story.skip and _gate_story_step(tmp_path, cfg) == []
    _, cfg = COMMAND.parse([], "clover demo")
    assert [step.name for step in _gate_story_step(tmp_path, cfg)] == ["gate-story"]
