"""The demo's closing report: a summary table (summary.md, summary.json) and PNG plots, from the stages'
own report.json, manifest.json and metrics.jsonl."""

from __future__ import annotations

import json
from pathlib import Path


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _metrics(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def summarize(root: Path, timings: dict[str, float], prompt: str, sample_text: str) -> dict:
    curated, deduped = _json(root / "curated/report.json"), _json(root / "deduped/report.json")
    tokens, tokens_report = _json(root / "tokens/manifest.json"), _json(root / "tokens/report.json")
    pairs = _json(root / "pairs/report.json")
    pretrain, dpo = _metrics(root / "runs/pretrain/metrics.jsonl"), _metrics(root / "runs/dpo/metrics.jsonl")
    validations = {name: record.get("validation") or {} for name, record in
                   (("curated", curated), ("deduped", deduped), ("tokens", tokens), ("pairs", pairs))}
    summary = {
        "documents": {"in": curated["input"], "kept_by_curate": curated["output"], "kept_by_dedup": deduped["output"],
                      "removed_by_curate": curated["removed"], "quarantined": curated["quarantined"],
                      "duplicates": deduped["removed"]},
        "tokens": {"documents": tokens["documents"], "sequences": tokens["sequences"], "tokens": tokens["tokens"],
                   "seq_len": tokens["seq_len"], "shards": len(tokens["shards"]), "removed": tokens_report["removed"]},
        "pairs": {"in": pairs["input"], "kept": pairs["output"], "removed": pairs["removed"],
                  "quarantined": pairs["quarantined"], "truncated": pairs["truncated"]},
        "validation": {name: {"success": v.get("success"), "expectations": v.get("expectations"),
                              "data_docs": str(root / name / v["data_docs"]) if v.get("data_docs") else None}
                       for name, v in validations.items()},
        "pretrain": {"steps": pretrain[-1]["step"], "first_loss": pretrain[0]["loss"], "final_loss": pretrain[-1]["loss"],
                     "gate_rejections": pretrain[-1]["gate_rejections_total"],
                     **_last(pretrain, "eval_loss", "eval_ppl", "eval_tokens"),
                     "held_out_shards": len(_json(root / "runs/pretrain/config.json")["eval"]["held_out_shards"])},
        "dpo": {"steps": dpo[-1]["step"], **_last(dpo, "eval_reward_accuracy", "eval_reward_margin", "eval_loss",
                                                 "eval_pairs"),
                "train_reward_accuracy_last_10": sum(m["reward_accuracy"] for m in dpo[-10:]) / len(dpo[-10:])},
        "generate": {"prompt": prompt, "completion": sample_text},
        "seconds": timings,
        "reports": {name: str(root / rel) for name, rel in (
            ("curate", "curated/report.json"), ("dedup", "deduped/report.json"), ("tokenize", "tokens/manifest.json"),
            ("prep-pairs", "pairs/report.json"), ("pretrain", "runs/pretrain/metrics.jsonl"),
            ("dpo", "runs/dpo/metrics.jsonl"), ("export", "export/config.json"))},
    }
    story = gate_story(root)
    if story:
        summary["gate_story"] = story
        summary["reports"]["gate-story"] = str(root / "gate-story/data/manifest.json")
    summary["plots"] = write_plots(root, curated, deduped, pretrain, dpo)
    if story:
        summary["plots"]["gate_story"] = write_gate_story_plot(root, story)
    summary["table"] = format_table(summary)
    (root / "summary.json").write_text(json.dumps({k: v for k, v in summary.items() if k != "table"}, indent=2))
    (root / "summary.md").write_text("# Clover demo summary\n\n```\n" + summary["table"] + "\n```\n")
    return summary


def _last(metrics: list[dict], *keys: str) -> dict:
    """The keys of the last record holding them (held-out evaluations are logged every eval.every steps)."""
    evaluated = [m for m in metrics if keys[0] in m]
    return {k: evaluated[-1][k] for k in keys} if evaluated else {k: None for k in keys}


def format_table(s: dict) -> str:
    d, t, p = s["documents"], s["tokens"], s["pairs"]
    rows = [("documents in (sample records)", f"{d['in']:,}"),
            ("  quarantined (malformed)", f"{sum(d['quarantined'].values()):,}  " + _reasons(d["quarantined"])),
            ("  removed by quality rules", f"{sum(d['removed_by_curate'].values()):,}  " + _reasons(d["removed_by_curate"], 6)),
            ("  kept by curate", f"{d['kept_by_curate']:,}"),
            ("  duplicates removed", f"{sum(d['duplicates'].values()):,}  " + _reasons(d["duplicates"])),
            ("  kept by dedup", f"{d['kept_by_dedup']:,}"),
            ("tokens written", f"{t['tokens']:,} in {t['sequences']:,} sequences of {t['seq_len']} ({t['shards']} shards)"),
            ("preference pairs", f"{p['in']:,} in, {p['kept']:,} kept, removed {_reasons(p['removed'])}, "
                                 f"quarantined {sum(p['quarantined'].values())}")]
    for name, v in s["validation"].items():
        rows.append((f"validation: {name}", f"{'PASSED' if v['success'] else 'FAILED'} ({v['expectations']} expectations)"))
    pre, dpo = s["pretrain"], s["dpo"]
    held_out = (f"held-out loss {pre['eval_loss']:.3f} (ppl {pre['eval_ppl']:.1f}, {pre['eval_tokens']:,} tokens of "
                f"{pre['held_out_shards']} held-out shards)" if pre["eval_loss"] is not None else "no held-out shards")
    preferred = (f"held-out reward accuracy {dpo['eval_reward_accuracy']:.2f} on {dpo['eval_pairs']} pairs, margin "
                 f"{dpo['eval_reward_margin']:.3f}, DPO loss {dpo['eval_loss']:.3f}"
                 if dpo["eval_reward_accuracy"] is not None else "no held-out pairs")
    rows += [("pretrain clover-tiny", f"{pre['steps']} steps, loss {pre['first_loss']:.3f} -> {pre['final_loss']:.3f}, "
                                      f"{held_out}, gate rejections {pre['gate_rejections']}"),
             ("DPO", f"{dpo['steps']} steps, {preferred} (training batches, last 10 steps: "
                     f"{dpo['train_reward_accuracy_last_10']:.2f})"),
             *_gate_story_rows(s.get("gate_story")),
             ("generate", repr(s["generate"]["completion"][:80]))]
    rows += [(f"report: {name}", where) for name, where in s["reports"].items()]
    rows += [(f"plot: {name}", where) for name, where in s["plots"].items()]
    rows += [("data docs: " + name, v["data_docs"] or "") for name, v in s["validation"].items()]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _gate_story_rows(story: dict | None) -> list[tuple[str, str]]:
    if not story:
        return [("gate story", "skipped (--no-gate-story)")]
    rows = [("gate story", f"{story['looping_share']:.0%} looping rows (uncurated on purpose), {story['steps']} steps "
                           f"per arm from {Path(story['init_from']).name} of the pretrain run")]
    for name, arm in story["arms"].items():
        rows.append((f"  {name} (gate {'on' if arm['gate'] else 'off'}, clip {arm['clip']})",
                     f"max grad norm {arm['max_grad_norm']:.2f}, max loss {arm['max_loss']:.2f}, final loss "
                     f"{arm['final_loss']:.3f} (mean of last 20 {arm['mean_loss_last_20']:.3f}), rejected "
                     f"{arm['rejected_micro_batches']} micro-batches ({arm['rejection_rate']:.1%})"))
    return rows


def gate_story(root: Path) -> dict | None:
    """The gate story's numbers (jobs/gate_story.py): per arm, its clip, gate, losses, norms and rejections."""
    base = root / "gate-story"
    if not all((base / arm / "metrics.jsonl").exists() for arm in ("ungated", "gated")):
        return None
    arms, starts = {}, set()
    for name in ("ungated", "gated"):
        metrics, config = _metrics(base / name / "metrics.jsonl"), _json(base / name / "config.json")
        rejected = metrics[-1]["gate_rejections_total"]
        judged = rejected + len(metrics) * config["engine"]["grad_accum"]
        starts.add((config["init_from"], config["init_step"]))
        arms[name] = {"gate": config["gate_story"]["gate"], "clip": config["engine"]["optimizer"]["grad_clip"],
                      "allow_unvalidated": config["engine"]["data"]["allow_unvalidated"],
                      "init_from": config["init_from"], "init_step": config["init_step"],
                      "steps": metrics[-1]["step"], "first_loss": metrics[0]["loss"], "final_loss": metrics[-1]["loss"],
                      "mean_loss_last_20": sum(m["loss"] for m in metrics[-20:]) / len(metrics[-20:]),
                      "max_loss": max(m["loss"] for m in metrics),
                      "max_grad_norm": max(m["grad_norm"] for m in metrics),
                      "median_grad_norm": sorted(m["grad_norm"] for m in metrics)[len(metrics) // 2],
                      "rejected_micro_batches": rejected, "rejection_rate": rejected / judged if judged else 0.0,
                      "rejected_at_steps": [m["step"] for m in metrics if m.get("gate_rejections")]}
    uncurated = _json(base / "data/manifest.json")["uncurated"]
    (init_from, init_step), = starts if len(starts) == 1 else [(None, None)]
    return {"looping_share": uncurated["share"], "looping_rows": uncurated["looping_rows"],
            "steps": arms["gated"]["steps"], "init_from": init_from, "init_step": init_step, "arms": arms,
            "metrics": {name: str(base / name / "metrics.jsonl") for name in arms}}


def _reasons(counts: dict[str, int], top: int = 4) -> str:
    ordered = sorted(counts.items(), key=lambda kv: -kv[1])
    shown = ", ".join(f"{k} {v}" for k, v in ordered[:top])
    return f"({shown}{', ...' if len(ordered) > top else ''})" if counts else ""


def write_plots(root: Path, curated: dict, deduped: dict, pretrain: list[dict], dpo: list[dict]) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots = root / "plots"
    plots.mkdir(exist_ok=True)
    written = {}

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [1, 1.4]})
    stages = ["sample records", "after curate", "after dedup"]
    left.bar(stages, [curated["input"], curated["output"], deduped["output"]], color=["#888", "#4a8", "#286"])
    left.set_title("Documents per stage")
    for i, value in enumerate([curated["input"], curated["output"], deduped["output"]]):
        left.text(i, value, f"{value:,}", ha="center", va="bottom")
    reasons = {**{f"quarantine: {k}": v for k, v in curated["quarantined"].items()},
               **{f"curate: {k}": v for k, v in curated["removed"].items()},
               **{f"dedup: {k}": v for k, v in deduped["removed"].items()}}
    ordered = sorted(reasons.items(), key=lambda kv: kv[1])
    right.barh([k for k, _ in ordered], [v for _, v in ordered], color="#c64")
    right.set_title("Documents removed, by reason")
    right.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    fig.savefig(plots / "funnel.png", dpi=110)
    plt.close(fig)
    written["funnel"] = str(plots / "funnel.png")

    written["pretrain_loss"] = _pretrain_plot(plt, plots, pretrain)
    written["dpo_rewards"] = _dpo_plot(plt, plots, dpo)
    return written


def _pretrain_plot(plt, plots: Path, pretrain: list[dict]) -> str:
    """Training and held-out loss per step, steps with gate rejections marked."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot([m["step"] for m in pretrain], [m["loss"] for m in pretrain], label="training loss")
    evaluated = [m for m in pretrain if "eval_loss" in m]
    ax.plot([m["step"] for m in evaluated], [m["eval_loss"] for m in evaluated], "o-", color="#2a7", label="held-out loss")
    rejected = [m["step"] for m in pretrain if m.get("gate_rejections")]
    for step in rejected:
        ax.axvline(step, color="#c33", alpha=0.4, linewidth=1)
    ax.legend()
    ax.set_title(f"Pretraining loss (clover-tiny); red lines: steps with gate rejections ({len(rejected)})")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    fig.tight_layout()
    fig.savefig(plots / "pretrain_loss.png", dpi=110)
    plt.close(fig)
    return str(plots / "pretrain_loss.png")


def _dpo_plot(plt, plots: Path, dpo: list[dict]) -> str:
    """Reward margin, and reward accuracy on training batches and on held-out pairs."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    steps = [m["step"] for m in dpo]
    ax.plot(steps, [m["reward_margin"] for m in dpo], color="#36c", label="reward margin")
    ax.set_xlabel("step")
    ax.set_ylabel("reward margin (chosen - rejected)", color="#36c")
    twin = ax.twinx()
    twin.plot(steps, [m["reward_accuracy"] for m in dpo], color="#c63", alpha=0.35, label="accuracy, training batch")
    evaluated = [m for m in dpo if "eval_reward_accuracy" in m]
    twin.plot([m["step"] for m in evaluated], [m["eval_reward_accuracy"] for m in evaluated], "o-", color="#a20",
              label="accuracy, held-out pairs")
    twin.set_ylim(-0.05, 1.05)
    twin.set_ylabel("reward accuracy", color="#c63")
    twin.legend(loc="lower right")
    ax.set_title("DPO: reward margin per step; reward accuracy on training batches and held-out pairs")
    fig.tight_layout()
    fig.savefig(plots / "dpo_rewards.png", dpi=110)
    plt.close(fig)
    return str(plots / "dpo_rewards.png")


def write_gate_story_plot(root: Path, story: dict) -> str:
    """Loss and gradient norm of both arms on one figure: clip lines drawn, rejected micro-batches marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"ungated": "#c63", "gated": "#36c"}
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7.5), sharex=True)
    for name, arm in story["arms"].items():
        metrics = _metrics(Path(story["metrics"][name]))
        steps = [m["step"] for m in metrics]
        label = f"{name}: gate {'on' if arm['gate'] else 'off'}, clip {arm['clip']}"
        top.plot(steps, [m["loss"] for m in metrics], color=colors[name], label=label, linewidth=1)
        bottom.plot(steps, [m["grad_norm"] for m in metrics], color=colors[name], label=label, linewidth=1)
        bottom.axhline(arm["clip"], color=colors[name], linestyle="--", linewidth=1, label=f"clip {arm['clip']}")
    gated = story["arms"]["gated"]
    for axis in (top, bottom):
        for step in gated["rejected_at_steps"]:
            axis.axvline(step, color="#36c", alpha=0.15, linewidth=2)
    bottom.plot([], [], color="#36c", alpha=0.3, linewidth=4,
                label=f"steps where the gate rejected micro-batches ({gated['rejected_micro_batches']})")
    top.set_title(f"Gate story: {story['looping_share']:.0%} looping rows mixed in; both arms from step "
                  f"{story['init_step']} of the pretrain run. Gate rejection rate {gated['rejection_rate']:.1%}")
    top.set_ylabel("loss")
    bottom.set_ylabel("gradient norm (before clipping)")
    bottom.set_xlabel("step")
    top.legend(fontsize=8)
    bottom.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    path = root / "plots" / "gate_story.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)
