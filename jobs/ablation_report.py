"""The result of `clover ablate`: ablation.json, ablation.md and ablation.png from the runs' own metrics.

A variant's score is its final held-out loss, as a mean over seeds with the seeds' range (max - min).
Two variants differ beyond noise when the difference of their means exceeds the larger of their two
ranges; with one seed there is no range, and no difference is called beyond noise.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path


def _metrics(run: str) -> list[dict]:
    return [json.loads(line) for line in (Path(run) / "metrics.jsonl").read_text().splitlines() if line.strip()]


def _run_result(run: str, tokens_per_step: int) -> dict:
    evaluated = [m for m in _metrics(run) if "eval_loss" in m]
    return {"run": run, "final_eval_loss": evaluated[-1]["eval_loss"], "final_eval_ppl": evaluated[-1]["eval_ppl"],
            "curve": [[m["step"] * tokens_per_step, m["eval_loss"]] for m in evaluated]}


def summarize(cfg, prepared: dict, runs: dict[str, list[str]], eval_tokens: str) -> dict:
    """ablation.json's content: per variant its data, runs and score; the ranking; pairwise verdicts."""
    tokens_per_step = cfg.micro_batch * cfg.seq_len
    variants = {}
    for name, paths in runs.items():
        results = [_run_result(path, tokens_per_step) for path in paths]
        losses = [r["final_eval_loss"] for r in results]
        manifest = json.loads((Path(prepared[name]["tokens"]) / "manifest.json").read_text())
        variants[name] = {
            "documents_dataset": prepared[name]["documents"],
            "documents": manifest["documents"], "sequences": manifest["sequences"], "tokens": manifest["tokens"],
            "eval_overlap_removed": prepared[name]["decontamination"]["removed"],
            "epochs": cfg.steps() * cfg.micro_batch / max(manifest["sequences"], 1),
            "final_eval_loss_mean": statistics.fmean(losses), "final_eval_loss_range": max(losses) - min(losses),
            "final_eval_loss_std": statistics.stdev(losses) if len(losses) > 1 else 0.0,
            "runs": results,
        }
    ranking = sorted(variants, key=lambda n: variants[n]["final_eval_loss_mean"])
    comparisons = []
    for i, better in enumerate(ranking):
        for worse in ranking[i + 1:]:
            difference = variants[worse]["final_eval_loss_mean"] - variants[better]["final_eval_loss_mean"]
            spread = max(variants[better]["final_eval_loss_range"], variants[worse]["final_eval_loss_range"])
            comparisons.append({"better": better, "worse": worse, "difference": difference, "spread": spread,
                                "beyond_seed_spread": cfg.seeds > 1 and difference > spread})
    eval_manifest = json.loads((Path(eval_tokens) / "manifest.json").read_text())
    return {
        "model": cfg.model, "seeds": cfg.seeds, "steps": cfg.steps(), "tokens_per_run": cfg.steps() * tokens_per_step,
        "seq_len": cfg.seq_len, "micro_batch": cfg.micro_batch, "lr": cfg.lr,
        "eval": {"documents_dataset": cfg.eval, "tokens_dataset": eval_tokens, "documents": eval_manifest["documents"],
                 "tokens": eval_manifest["tokens"], "sequences_per_evaluation": cfg.eval_sequences},
        "variants": variants, "ranking": ranking, "comparisons": comparisons,
    }


def format_table(result: dict) -> str:
    lines = [f"{result['model']}, {result['tokens_per_run']:,} tokens per run ({result['steps']} steps), "
             f"{result['seeds']} seed(s); held-out: {result['eval']['documents']:,} documents, "
             f"{result['eval']['tokens']:,} tokens", "",
             "| variant | documents | tokens | epochs | eval-overlap removed | final held-out loss (mean) | seed range | std |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name in result["ranking"]:
        v = result["variants"][name]
        lines.append(f"| {name} | {v['documents']:,} | {v['tokens']:,} | {v['epochs']:.2f} | {v['eval_overlap_removed']} | "
                     f"{v['final_eval_loss_mean']:.4f} | {v['final_eval_loss_range']:.4f} | {v['final_eval_loss_std']:.4f} |")
    lines.append("")
    for c in result["comparisons"]:
        verdict = "beyond the seed spread" if c["beyond_seed_spread"] else "within the seed spread"
        lines.append(f"- {c['better']} beats {c['worse']} by {c['difference']:.4f} ({verdict}: range {c['spread']:.4f})")
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    """Held-out loss against tokens seen: one line per variant (mean over seeds), a band from min to max."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name in result["ranking"]:
        curves = [run["curve"] for run in result["variants"][name]["runs"]]
        points = min(len(c) for c in curves)
        tokens = [curves[0][i][0] for i in range(points)]
        values = [[c[i][1] for c in curves] for i in range(points)]
        line, = ax.plot(tokens, [statistics.fmean(v) for v in values], marker="o", markersize=3, label=name)
        ax.fill_between(tokens, [min(v) for v in values], [max(v) for v in values], color=line.get_color(), alpha=0.2)
    ax.set_xlabel("training tokens seen")
    ax.set_ylabel("held-out loss")
    ax.set_title(f"{result['model']}: held-out loss per variant ({result['seeds']} seeds; band: min to max)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(root: Path, cfg, prepared: dict, runs: dict[str, list[str]], eval_tokens: str) -> dict:
    result = summarize(cfg, prepared, runs, eval_tokens)
    result["table"] = format_table(result)
    (root / "ablation.json").write_text(json.dumps({k: v for k, v in result.items() if k != "table"}, indent=2) + "\n")
    (root / "ablation.md").write_text(f"# Ablation\n\n{result['table']}\n\n![held-out loss](ablation.png)\n")
    plot(result, root / "ablation.png")
    return result
