"""The `clover inspect` page of a training run (`clover train` or `clover dpo`): loss and learning rate, gradient
norm against the clipping threshold, tokens/s, gate rejections on the loss curve with the rejected
micro-batches decoded, checkpoints; the held-out metrics beside the training ones (pretraining: `eval_loss`;
DPO: `eval_loss`, `eval_reward_accuracy`, `eval_reward_margin`); for DPO, reward accuracy and margin. And the
page of the demo's gate story: both arms' loss and gradient norm on shared charts, clips and rejections marked.

gate_rejections.jsonl holds each rejected micro-batch's index, epoch, fraction and shards, not its tokens:
the first few are read again from the run's token shards (the loader's order is a function of the data seed,
the micro-batch size and the index) and decoded with the shards' tokenizer, when the data is reachable.
"""

from __future__ import annotations

from jobs.inspect_data import Section, exists, join, read_json, read_json_lines, sentencepiece
from jobs.report_html import Series, esc, line_svg, lines_svg, table
from schemas import storage

MAX_DECODED = 3
MAX_LISTED = 50


class RunView:
    def __init__(self, path: str):
        self.path = path
        self.config = read_json(join(path, "config.json")) if exists(join(path, "config.json")) else {}
        self.engine = self.config.get("engine") or {}
        self.metrics = read_json_lines(join(path, "metrics.jsonl"))
        self.rejections = read_json_lines(join(path, "gate_rejections.jsonl"))

    @property
    def kind(self) -> str:
        return self.config.get("kind") or ("dpo" if any("reward_accuracy" in m for m in self.metrics) else "pretrain")

    def series(self, key: str) -> tuple[list[float], list[float]]:
        points = [(m["step"], m[key]) for m in self.metrics if isinstance(m.get(key), int | float)]
        return [p[0] for p in points], [float(p[1]) for p in points]

    def checkpoints(self) -> list[tuple[str, bool]]:
        """(step directory, complete) under RUN/checkpoints."""
        import pyarrow.fs as pafs

        fs, root = storage.resolve(join(self.path, "checkpoints"))
        try:
            infos = fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
        except (OSError, ValueError):
            return []
        names = sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)
        return [(name, exists(join(self.path, "checkpoints", name, "COMPLETE"))) for name in names]


def _figure(name: str, caption: str, svg: str) -> str:
    return f'<figure class="curve" data-series="{esc(name)}"><figcaption>{caption}</figcaption>{svg}</figure>'


def _held_out(view: RunView, key: str, label: str, marks: list[float] = ()) -> str:
    """The training series `key` and, when metrics.jsonl has it, its held-out twin `eval_KEY` (dots) on one chart."""
    xs, ys = view.series(key)
    series = [Series(f"training {label}", xs, ys, marks=marks)]
    eval_xs, eval_ys = view.series(f"eval_{key}")
    if eval_xs:
        series.append(Series(f"held-out {label}", eval_xs, eval_ys, "held", dots=True))
    return lines_svg(series)


def _num(value: object, spec: str) -> str:
    return format(value, spec) if isinstance(value, int | float) else "?"


def held_out_facts(view: RunView) -> str:
    """The last held-out evaluation and what it ran on (config.json's `eval`), or that there was none."""
    evaluated = [m for m in view.metrics if isinstance(m.get("eval_loss"), int | float)]
    if not evaluated:
        return "no held-out evaluation logged"
    last, where = evaluated[-1], view.config.get("eval") or {}
    if view.kind == "dpo":
        held = (f"{_num(where.get('held_out_pairs'), ',')} pairs held out of the training pairs "
                f"(eval.holdout_fraction {where['holdout_fraction']})" if where.get("holdout_fraction") is not None
                else f"eval.data {where['data']}" if where.get("data") else "held-out data not recorded")
        return (f"held-out reward accuracy {_num(last.get('eval_reward_accuracy'), '.3f')}, margin "
                f"{_num(last.get('eval_reward_margin'), '.4g')}, DPO loss {last['eval_loss']:.4g} on "
                f"{_num(last.get('eval_pairs'), ',')} pairs at step {last['step']} ({len(evaluated)} evaluations; {held})")
    shards = where.get("held_out_shards")
    held = (f"{len(shards)} held-out shards" if shards else f"eval.data {where['data']}" if where.get("data")
            else "held-out data not recorded")
    return (f"held-out loss {last['eval_loss']:.4g} (ppl {_num(last.get('eval_ppl'), '.4g')}, "
            f"{_num(last.get('eval_tokens'), ',')} tokens of {held}) at step {last['step']} ({len(evaluated)} evaluations)")


def curves_section(view: RunView) -> str:
    rejected = sorted({m["step"] for m in view.metrics if (m.get("gate_rejections") or 0) > 0})
    skipped = [m["step"] for m in view.metrics if m.get("update_skipped")]
    clip = (view.engine.get("optimizer") or {}).get("grad_clip")
    gate = "" if view.kind == "dpo" else f"; red dots: steps with gate rejections ({len(rejected):,})"
    figures = [_figure("loss", f"<b>loss</b>{gate}; green: held-out loss, every eval.every steps and at the end",
                       _held_out(view, "loss", "loss", rejected))]
    lr_steps, lr = view.series("lr")
    figures.append(_figure("lr", "<b>learning rate</b>", line_svg(lr_steps, lr)))
    g_steps, grad = view.series("grad_norm")
    above = sum(1 for g in grad if clip is not None and g > clip)
    figures.append(_figure("grad_norm", f"<b>gradient norm</b> before clipping; dashed red: optimizer.grad_clip "
                           f"{esc(clip)} ({above:,} of {len(grad):,} logged steps above it)",
                           line_svg(g_steps, grad, hline=clip)))
    t_steps, tps = view.series("tokens_per_s")
    figures.append(_figure("tokens_per_s", "<b>tokens/s</b> (all ranks)", line_svg(t_steps, tps)))
    if view.kind == "dpo":
        for key, caption in (("reward_accuracy", "reward accuracy"), ("reward_margin", "reward margin")):
            figures.append(_figure(key, f"<b>{caption}</b> of the training micro-batches; green: on the held-out pairs",
                                   _held_out(view, key, caption)))
    last = view.metrics[-1] if view.metrics else {}
    facts = [f"{len(view.metrics):,} logged steps, last step {last.get('step', '—')}",
             f"final loss {last.get('loss', float('nan')):.4g}" if isinstance(last.get("loss"), float) else "",
             held_out_facts(view),
             f"updates skipped: {', '.join(map(str, skipped[:20]))}" if skipped else "no update skipped"]
    return f"<p>{esc('; '.join(f for f in facts if f))}.</p>" + f'<div class="hists">{"".join(figures)}</div>'


def _decoded_batches(view: RunView, indices: list[int]) -> dict[int, str]:
    """index -> HTML of the micro-batch's rows, read again from the run's token shards; empty when unreachable."""
    data = view.config.get("data")
    if not data or not indices:
        return {}
    try:
        from training.trainer.data import DataConfig, TokenStream

        seed = (view.engine.get("data") or {}).get("seed", 0)
        stream = TokenStream(data, int(view.engine.get("micro_batch", 1)),
                             DataConfig(seed=seed, allow_unvalidated=True, verify_shards=False, workers=1), False)
    except (OSError, ValueError, RuntimeError):
        return {}
    processor = sentencepiece((stream.manifest.get("tokenizer") or {}).get("path"))
    out = {}
    try:
        for index in indices:
            batch = stream.micro_batch(index)
            rows = [row[: max(int(n) - 1, 0)].tolist() for row, n in zip(batch.tokens, batch.num_tokens)]
            texts = [processor.decode(r) if processor else " ".join(map(str, r)) for r in rows]
            out[index] = "".join(f'<div class="doc">{esc(t)}</div>' for t in texts)
    except (OSError, ValueError, RuntimeError):
        pass
    finally:
        stream.close()
    return out


def rejections_section(view: RunView) -> str:
    gate = view.engine.get("gate") or {}
    if not view.rejections:
        return f"<p>No micro-batch was rejected (gate {esc(gate) if gate else 'not recorded'}).</p>"
    rows = [[r.get("micro_batch"), r.get("epoch"), r.get("fraction"), ", ".join(r.get("shards") or [])]
            for r in view.rejections[:MAX_LISTED]]
    more = f"<p>First {MAX_LISTED} of {len(view.rejections):,} shown.</p>" if len(view.rejections) > MAX_LISTED else ""
    decoded = _decoded_batches(view, [r["micro_batch"] for r in view.rejections[:MAX_DECODED]])
    blocks = "".join(f'<div class="sample rejected-batch" data-micro-batch="{i}"><p>micro-batch {i}</p>{body}</div>'
                     for i, body in decoded.items())
    note = "" if decoded else "<p>The run's token shards are not reachable: the rejected micro-batches are not shown.</p>"
    return (f"<p>{len(view.rejections):,} micro-batches rejected (gate.ngram {esc(gate.get('ngram'))}, "
            f"gate.max_fraction {esc(gate.get('max_fraction'))}).</p>"
            + table(["micro-batch", "epoch", "fraction", "shards"], rows, "gate-rejections") + more + note + blocks)


def run_sections(path: str) -> list[Section]:
    view = RunView(path)
    settings = [["kind", view.kind], ["model", view.config.get("model", "")],
                ["data", view.config.get("data") or view.config.get("pairs") or ""],
                ["micro_batch × grad_accum", f"{view.engine.get('micro_batch')} × {view.engine.get('grad_accum')}"],
                ["max_steps", view.engine.get("max_steps", "")]]
    checkpoints = [[name, "complete" if done else "incomplete"] for name, done in view.checkpoints()]
    sections = [
        ("run", "Run", table(["", "value"], settings, "run-settings")
         + table(["checkpoint", "state"], checkpoints, "checkpoints")),
        ("curves", "Curves", curves_section(view)),
    ]
    if view.kind != "dpo":
        sections.append(("rejections", "Gate rejections", rejections_section(view)))
    return sections


# ---- the demo's gate story (jobs/gate_story.py): two arms from one checkpoint on data with looping rows

def is_gate_story(path: str) -> bool:
    """Whether PATH is a gate story: an `ungated` and a `gated` run side by side (DIR/gate-story of `clover demo`)."""
    from jobs.gate_story import ARMS

    return all(exists(join(path, arm, "metrics.jsonl")) for arm in ARMS)


def arm_numbers(view: RunView) -> dict:
    """One arm's gate, clip, losses, norms and rejections; the rejection rate as the demo summary computes it
    (jobs/summary.py gate_story): rejected micro-batches over those judged (rejected + logged steps × grad_accum)."""
    metrics = view.metrics
    losses = [m["loss"] for m in metrics if isinstance(m.get("loss"), int | float)]
    norms = sorted(m["grad_norm"] for m in metrics if isinstance(m.get("grad_norm"), int | float))
    clip = (view.engine.get("optimizer") or {}).get("grad_clip")
    rejected = int(metrics[-1].get("gate_rejections_total") or 0) if metrics else 0
    judged = rejected + len(metrics) * int(view.engine.get("grad_accum") or 1)
    gate = view.engine.get("gate") or {}
    return {"gate": (view.config.get("gate_story") or {}).get("gate", gate.get("enabled")), "clip": clip,
            "max_fraction": gate.get("max_fraction"), "steps": metrics[-1]["step"] if metrics else 0,
            "first_loss": losses[0] if losses else float("nan"), "final_loss": losses[-1] if losses else float("nan"),
            "mean_loss_last_20": sum(losses[-20:]) / len(losses[-20:]) if losses else float("nan"),
            "max_loss": max(losses, default=float("nan")), "median_grad_norm": norms[len(norms) // 2] if norms else float("nan"),
            "max_grad_norm": norms[-1] if norms else float("nan"),
            "above_clip": sum(1 for g in norms if clip is not None and g > clip),
            "rejected": rejected, "rejection_rate": rejected / judged if judged else 0.0,
            "rejected_at_steps": [m["step"] for m in metrics if (m.get("gate_rejections") or 0) > 0]}


ARM_STYLE = {"ungated": "alt", "gated": "series"}  # orange, blue


def _cell(key: str, value: object) -> object:
    """A cell of the arms table: on/off for the gate, the rejection rate as a percentage."""
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:.2%}" if key == "rejection_rate" else value


def gate_story_sections(path: str) -> list[Section]:
    from jobs.gate_story import ARMS

    views = {name: RunView(join(path, name)) for name in ARMS}
    numbers = {name: arm_numbers(view) for name, view in views.items()}
    manifest = join(path, "data", "manifest.json")
    uncurated = (read_json(manifest).get("uncurated") or {}) if exists(manifest) else {}
    starts = {(v.config.get("init_from"), v.config.get("init_step")) for v in views.values()}
    start = (f"both arms start from {esc(next(iter(starts))[0])} (step {esc(next(iter(starts))[1])})"
             if len(starts) == 1 else "<b>the arms start from different checkpoints</b>")
    data = (f"{uncurated.get('looping_rows', 0):,} looping rows ({uncurated.get('share', 0):.1%} of the rows) mixed "
            f"into {uncurated.get('curated_rows', 0):,} curated rows: {esc(uncurated.get('why', ''))}"
            if uncurated else "the mixed data's manifest (DIR/gate-story/data/manifest.json) is not there")
    rows = [[label, *(_cell(key, numbers[name][key]) for name in ARMS)] for key, label in (
        ("gate", "batch gate"), ("max_fraction", "gate.max_fraction"), ("clip", "optimizer.grad_clip"),
        ("steps", "steps"), ("first_loss", "first loss"), ("final_loss", "final loss"),
        ("mean_loss_last_20", "mean loss, last 20 steps"), ("max_loss", "max loss"),
        ("median_grad_norm", "median gradient norm"), ("max_grad_norm", "max gradient norm"),
        ("above_clip", "steps above the clip"), ("rejected", "rejected micro-batches"),
        ("rejection_rate", "rejection rate"))]
    arms = (f"<p>The demo's gate story (docs/training.md): {data}. Same model, data and steps; {start}. Each arm's "
            "own run page lists its rejected micro-batches, decoded.</p>"
            + table(["", *ARMS], rows, "gate-story-arms"))
    loss = [Series(f"{name} loss", *views[name].series("loss"), ARM_STYLE[name],
                   marks=numbers[name]["rejected_at_steps"]) for name in ARMS]
    grad = [Series(f"{name} gradient norm", *views[name].series("grad_norm"), ARM_STYLE[name],
                   marks=numbers[name]["rejected_at_steps"]) for name in ARMS]
    clips = [(numbers[name]["clip"], f"clip {ARM_STYLE[name]}", f"{name} clip {numbers[name]['clip']:g}")
             for name in ARMS if numbers[name]["clip"] is not None]
    rates = ", ".join(f"{name} {numbers[name]['rejected']:,} ({numbers[name]['rejection_rate']:.1%})" for name in ARMS)
    curves = ('<div class="hists">'
              + _figure("gate-story-loss", f"<b>loss</b> of both arms; red dots: steps with rejected micro-batches "
                        f"(rejected: {esc(rates)})", lines_svg(loss))
              + _figure("gate-story-grad-norm", "<b>gradient norm</b> before clipping, both arms; dashed: each arm's "
                        "optimizer.grad_clip; red dots: steps with rejected micro-batches", lines_svg(grad, clips))
              + "</div>")
    return [("arms", "Gate story: ungated against gated", arms), ("curves", "Loss and gradient norm, both arms", curves)]

