"""The `clover inspect` page of a training run (`clover train` or `clover dpo`): loss and learning rate, gradient
norm against the clipping threshold, tokens/s, gate rejections on the loss curve with the rejected
micro-batches decoded, checkpoints; for DPO, reward accuracy and margin.

gate_rejections.jsonl holds each rejected micro-batch's index, epoch, fraction and shards, not its tokens:
the first few are read again from the run's token shards (the loader's order is a function of the data seed,
the micro-batch size and the index) and decoded with the shards' tokenizer, when the data is reachable.
"""

from __future__ import annotations

from jobs.inspect_data import Section, exists, join, read_json, read_json_lines, sentencepiece
from jobs.report_html import esc, line_svg, table
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


def curves_section(view: RunView) -> str:
    steps, loss = view.series("loss")
    rejected = sorted({m["step"] for m in view.metrics if (m.get("gate_rejections") or 0) > 0})
    skipped = [m["step"] for m in view.metrics if m.get("update_skipped")]
    clip = (view.engine.get("optimizer") or {}).get("grad_clip")
    figures = [_figure("loss", f"<b>loss</b>; red dots: steps with gate rejections ({len(rejected):,})",
                       line_svg(steps, loss, marks=rejected))]
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
            xs, ys = view.series(key)
            figures.append(_figure(key, f"<b>{caption}</b>", line_svg(xs, ys)))
    last = view.metrics[-1] if view.metrics else {}
    facts = [f"{len(view.metrics):,} logged steps, last step {last.get('step', '—')}",
             f"final loss {last.get('loss', float('nan')):.4g}" if isinstance(last.get("loss"), float) else "",
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
