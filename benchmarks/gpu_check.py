"""Every GPU measurement Clover needs, in one command on a bare GPU machine.

    PYTHONPATH=. python benchmarks/gpu_check.py --out gpu_check        # one H100/H200, under 8 minutes
    python benchmarks/gpu_check.py --dry-run --out /tmp/gpu_check      # the same code, clover-tiny on CPU

Needs only torch, pyarrow, numpy and pyyaml (no pyspark, no Great Expectations, no network, no install
step); flash-attn is used and checked when it imports. The token shards are synthetic (written by
training/trainer/synthetic.py with a validation record), and the trainer's batch gate judges them as it
would real data. Sections run in order, each timed and isolated: one that fails is recorded with its
error and the rest still run. `gpu_check.json` and `gpu_check.md` are rewritten after each section,
so a run cut short still leaves what it measured.

Sections: environment and a bf16 matmul ceiling; flash-attn against SDPA (outputs and gradients);
clover-1b at seq 8192 on FSDP2 (world size 1, bf16, activation checkpointing), compile off and on:
tokens/s, MFU, peak memory against `clover plan`, gate and loader share of the step; the 12B preset
cut to 1 and 2 layers: memory per layer against the plan's per-layer terms; KV-cached generation.
"""

from __future__ import annotations

import os
import sys

sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import argparse
import gc
import importlib
import json
import platform
import statistics
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from training.trainer import model as model_module
from training.trainer.model import Transformer, model_config, rope_tables
from training.trainer.optim import OptimizerConfig, build_optimizer
from training.trainer.parallelize import ParallelConfig, build_model, init_distributed, shutdown_distributed
from training.trainer.plan import GIB, estimate_memory, flops_per_token, peak_flops
from training.trainer.pretrain import TrainConfig, train
from training.trainer.synthetic import write_token_shards

MFU_GOAL = 0.45
TOLERANCE = {"output": 2e-2, "grad": 5e-2}  # max |flash - sdpa| / max |sdpa|, bf16


@dataclass(frozen=True)
class Plan:
    """What the run measures; --dry-run shrinks every size to clover-tiny on the CPU."""
    dry_run: bool
    train_model: str = "clover-1b"
    seq_len: int = 8192
    micro_batch: int = 4
    warmup_steps: int = 3
    steps: int = 30
    big_model: str = "clover-12b"
    big_micro_batch: int = 2
    gen_batch: int = 8
    gen_new_tokens: int = 256

    @classmethod
    def for_args(cls, args: argparse.Namespace) -> Plan:
        if args.dry_run:
            return cls(True, "clover-tiny", 256, 2, 1, 3, "clover-tiny", 2, 4, 32)
        return cls(False, micro_batch=args.micro_batch, steps=args.steps)


class Report:
    """Sections in order, written out after each one."""

    def __init__(self, out: Path, started: float, budget_s: float):
        self.out, self.started, self.budget_s = out, started, budget_s
        self.sections: dict[str, dict] = {}
        out.mkdir(parents=True, exist_ok=True)

    def run(self, name: str, fn: Callable[[], dict]) -> dict | None:
        spent = time.perf_counter() - self.started
        if spent > self.budget_s:
            self.sections[name] = {"status": "skipped", "why": f"time budget of {self.budget_s:.0f} s spent"}
            self.write()
            return None
        print(f"[{spent:6.1f} s] {name} ...", file=sys.stderr, flush=True)
        begin = time.perf_counter()
        try:
            result, status = fn(), "ok"
        except Exception as error:  # a section's failure is a result; the other sections still run
            result, status = {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()}, "failed"
        finally:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        self.sections[name] = {"status": status, "seconds": round(time.perf_counter() - begin, 1), **result}
        print(f"    {status} in {self.sections[name]['seconds']} s", file=sys.stderr, flush=True)
        self.write()
        return result if status == "ok" else None

    def write(self) -> None:
        record = {"total_seconds": round(time.perf_counter() - self.started, 1), "sections": self.sections}
        (self.out / "gpu_check.json").write_text(json.dumps(record, indent=1, default=str))
        (self.out / "gpu_check.md").write_text(markdown(record))


def device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def optional_version(module: str) -> str:
    try:
        return getattr(importlib.import_module(module), "__version__", "installed")
    except Exception as error:  # ImportError, or a broken build's own error
        return f"not available ({type(error).__name__})"


def environment(plan: Plan) -> dict:
    """The machine, the packages that matter, and a bf16 matmul rate as the ceiling MFU is read against."""
    dev = device()
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU ({platform.machine()}, {os.cpu_count()} cores)"
    found = {m: optional_version(m) for m in ("flash_attn", "llmcompressor", "pyspark", "great_expectations", "pyarrow")}
    result = {"device": name, "torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
              "peak_bf16_flops_table": peak_flops(name), "packages": found, "dry_run": plan.dry_run}
    if dev.type == "cuda":
        result["capability"] = ".".join(map(str, torch.cuda.get_device_capability(dev)))
        result["memory_gib"] = round(torch.cuda.get_device_properties(dev).total_memory / GIB, 1)
        size = 8192
        a, b = (torch.randn(size, size, device=dev, dtype=torch.bfloat16) for _ in range(2))
        for _ in range(3):
            a @ b
        torch.cuda.synchronize()
        begin = time.perf_counter()
        for _ in range(10):
            a @ b
        torch.cuda.synchronize()
        result["matmul_bf16_tflops"] = round(2 * size**3 * 10 / (time.perf_counter() - begin) / 1e12, 1)
    return result


def flash_vs_sdpa(plan: Plan) -> dict:
    """Causal GQA attention by flash-attn and by SDPA, bf16: outputs and input gradients compared."""
    flash = model_module.flash_attn_func
    if flash is None or device().type != "cuda":
        return {"compared": False, "why": "needs CUDA and flash-attn (not installed here)"}
    generator = torch.Generator(device="cuda").manual_seed(0)
    shape_q, shape_kv = (2, 16, 4096, 128), (2, 4, 4096, 128)
    tensors = [torch.randn(s, device="cuda", dtype=torch.bfloat16, generator=generator).requires_grad_()
               for s in (shape_q, shape_kv, shape_kv)]
    grad_out = torch.randn(shape_q, device="cuda", dtype=torch.bfloat16, generator=generator)
    results = {}
    for label, fn in (("flash", lambda q, k, v: flash(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                                       causal=True).transpose(1, 2)),
                      ("sdpa", lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True))):
        out = fn(*tensors)
        grads = torch.autograd.grad(out, tensors, grad_out)
        results[label] = (out.float(), [g.float() for g in grads])
    (out_f, grads_f), (out_s, grads_s) = results["flash"], results["sdpa"]
    rel = lambda a, b: float((a - b).abs().max() / b.abs().max())  # noqa: E731
    errors = {"output": rel(out_f, out_s), **{f"grad_{n}": rel(gf, gs) for n, gf, gs in zip("qkv", grads_f, grads_s)}}
    passed = errors["output"] <= TOLERANCE["output"] and all(
        errors[f"grad_{n}"] <= TOLERANCE["grad"] for n in "qkv")
    return {"compared": True, "shape": "q (2,16,4096,128), kv (2,4,4096,128), causal", "relative_max_error": errors,
            "tolerance": TOLERANCE, "passed": passed}


def train_throughput(plan: Plan, data: Path, work: Path, compile_blocks: bool, ac_every: int = 1,
                     gate: bool = True) -> dict:
    """clover-1b (or tiny) through the real trainer; the tuned settings first, the plain ones if those fail.
    With `gate=False` the batch gate is off: the throughput difference is what the gate costs the GPU."""
    tuned = {"explicit_prefetch": True, "implementation": "auto", "checkpoint_every_n_blocks": ac_every, "gate": gate}
    name = f"run-compile-{compile_blocks}-ac-{ac_every}-gate-{gate}"
    try:
        return _measure_training(plan, data, work / name, compile_blocks, tuned)
    except Exception as error:  # the fallback is measured too, and the tuned failure recorded beside it
        plain = {**tuned, "explicit_prefetch": False, "implementation": "foreach"}
        result = _measure_training(plan, data, work / f"{name}-plain", compile_blocks, plain)
        return {**result, "tuned_settings_failed": f"{type(error).__name__}: {error}"}


def _measure_training(plan: Plan, data: Path, run: Path, compile_blocks: bool, settings: dict) -> dict:
    cfg = TrainConfig(model=plan.train_model, micro_batch=plan.micro_batch, grad_accum=1,
                      max_steps=plan.warmup_steps + plan.steps, tensorboard=False,
                      model_overrides={"max_seq_len": max(plan.seq_len, model_config(plan.train_model).max_seq_len)})
    cfg.parallel.compile = compile_blocks
    cfg.parallel.explicit_prefetch = settings["explicit_prefetch"]
    cfg.parallel.checkpoint_every_n_blocks = settings["checkpoint_every_n_blocks"]
    cfg.optimizer.implementation = settings["implementation"]
    cfg.gate.enabled = settings["gate"]
    cfg.schedule.warmup_steps = 10
    cfg.checkpoint.every = 0
    baseline = fresh_device()
    begin = time.perf_counter()
    train(cfg, str(data), str(run))
    wall = time.perf_counter() - begin
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steady = records[plan.warmup_steps:]
    mfus = [r["mfu"] for r in steady if r["mfu"] is not None]
    share = lambda key: statistics.median(r[key] / r["step_seconds"] for r in steady)  # noqa: E731
    model_cfg = model_config(plan.train_model)
    dtype = "bf16" if device().type == "cuda" else "fp32"
    estimate = estimate_memory(model_cfg, 1, plan.micro_batch, plan.seq_len, dtype,
                               settings["checkpoint_every_n_blocks"] == 1)
    peak = max(r["peak_memory_gib"] for r in records) - baseline
    return {
        "model": plan.train_model, "seq_len": plan.seq_len, "micro_batch": plan.micro_batch, "compile": compile_blocks,
        "settings": settings, "measured_steps": len(steady), "wall_seconds_with_warmup": round(wall, 1),
        "tokens_per_s": round(statistics.median(r["tokens_per_s_per_gpu"] for r in steady), 1),
        "step_seconds_median": round(statistics.median(r["step_seconds"] for r in steady), 4),
        "mfu": round(statistics.median(mfus), 4) if mfus else None,
        "mfu_formula": "(6N + 12·L·H·d·S) × tokens/s ÷ peak bf16 FLOP/s (N without the input embedding; "
                       f"{flops_per_token(model_cfg, plan.seq_len):.4g} FLOPs/token here)",
        "baseline_gib": round(baseline, 3), "peak_memory_gib": round(peak, 2),
        "plan_memory_gib": round(estimate.total / GIB, 2),
        "plan_over_measured": round(estimate.total / GIB / peak, 3) if peak else None,
        "loader_and_gate_share": round(share("data_seconds"), 5), "gate_share": round(share("gate_seconds"), 5),
        "gate_rejections": sum(r.get("gate_rejections", 0) for r in records),
        "final_loss": records[-1]["loss"],
    }


def memory_per_layer(plan: Plan, work: Path) -> dict:
    """The 12B preset cut to 1 and 2 layers: the measured difference is one layer, set against the plan's."""
    measured, planned = {}, {}
    vocab = model_config(plan.big_model).vocab_size
    data = write_token_shards(work / "tokens-big", rows=64, seq_len=plan.seq_len, vocab=vocab, shards=1,
                              row_group_rows=8)
    for layers in (1, 2):
        cfg = TrainConfig(model=plan.big_model, micro_batch=plan.big_micro_batch, grad_accum=1, max_steps=2,
                          tensorboard=False, model_overrides={"n_layers": layers,
                                                              "max_seq_len": max(plan.seq_len, 1024)})
        cfg.checkpoint.every = 0
        baseline = fresh_device()
        train(cfg, str(data), str(work / f"run-big-{layers}"))
        records = [json.loads(line) for line in (work / f"run-big-{layers}" / "metrics.jsonl").read_text().splitlines()]
        measured[layers] = max(r["peak_memory_gib"] for r in records) - baseline
        dtype = "bf16" if device().type == "cuda" else "fp32"
        big = model_config(plan.big_model, n_layers=layers, max_seq_len=max(plan.seq_len, 1024))
        planned[layers] = estimate_memory(big, 1, plan.big_micro_batch, plan.seq_len, dtype, True)
    per_layer_measured = measured[2] - measured[1]
    per_layer_plan = (planned[2].total - planned[1].total) / GIB
    terms = {part: round((getattr(planned[2], part) - getattr(planned[1], part)) / GIB, 3)
             for part in ("parameters", "gradients", "optimizer", "activations", "buffers")}
    return {"model": f"{plan.big_model} cut to 1 and 2 layers", "micro_batch": plan.big_micro_batch,
            "seq_len": plan.seq_len, "peak_gib_1_layer": round(measured[1], 2), "peak_gib_2_layers": round(measured[2], 2),
            "plan_gib_1_layer": round(planned[1].total / GIB, 2), "plan_gib_2_layers": round(planned[2].total / GIB, 2),
            "per_layer_measured_gib": round(per_layer_measured, 3), "per_layer_plan_gib": round(per_layer_plan, 3),
            "per_layer_plan_terms_gib": terms,
            "plan_over_measured_per_layer": round(per_layer_plan / per_layer_measured, 3) if per_layer_measured else None}


def memory_phases(plan: Plan) -> dict:
    """Where a layer's memory goes: allocated bytes after init and each phase's peak, for 1, 2 and 3 layers
    of the big preset, over two steps (the second has AdamW's states). Built by the trainer's own functions.
    Two increments tell a per-layer term (both alike) from one that stops growing at two blocks."""
    dev, phases = device(), {}
    for layers in (1, 2, 3):
        baseline = fresh_device()
        dist_info = init_distributed()
        try:
            cfg = model_config(plan.big_model, n_layers=layers)
            with torch.device("meta"):
                model = Transformer(cfg)
            model = build_model(model, ParallelConfig(), dist_info, seed=0)
            optimizer = build_optimizer(model, OptimizerConfig())
            tokens = torch.randint(4, cfg.vocab_size, (plan.big_micro_batch, plan.seq_len + 1), device=dev)
            measured = {"baseline": round(baseline, 3), "after_init": _allocated_gib(dev)}
            for step in (1, 2):
                _reset_peak(dev)
                loss = -model(tokens[:, :-1], tokens[:, 1:]).sum()
                _record(measured, dev, f"step{step}_forward")
                loss.backward()
                _record(measured, dev, f"step{step}_backward")
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                _record(measured, dev, f"step{step}_optimizer")
            phases[layers] = measured
            del model, optimizer, loss
        finally:
            shutdown_distributed()
    increment = lambda a, b: {key: round((phases[b][key] - phases[b]["baseline"])  # noqa: E731
                                         - (phases[a][key] - phases[a]["baseline"]), 3)
                              for key in phases[a] if key != "baseline"}
    return {"model": f"{plan.big_model} cut to 1, 2 and 3 layers", "micro_batch": plan.big_micro_batch,
            "seq_len": plan.seq_len, **{f"gib_{n}_layers": phases[n] for n in phases},
            "layer_2_minus_1_gib": increment(1, 2), "layer_3_minus_2_gib": increment(2, 3)}


def fresh_device() -> float:
    """Collect what earlier runs left (FSDP modules sit in reference cycles until a collection) and reset the
    peak: returns the GiB still allocated, the baseline a measured peak is read against."""
    gc.collect()
    if device().type != "cuda":
        return 0.0
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    return torch.cuda.memory_allocated() / GIB


def _record(measured: dict, dev: torch.device, phase: str) -> None:
    """The phase's peak and what stays allocated after it; the peak is reset for the next phase."""
    measured[f"{phase}_peak"], measured[f"after_{phase}"] = _peak_gib(dev), _allocated_gib(dev)
    _reset_peak(dev)


def _reset_peak(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def _peak_gib(dev: torch.device) -> float:
    return round(torch.cuda.max_memory_allocated() / GIB, 3) if dev.type == "cuda" else 0.0


def _allocated_gib(dev: torch.device) -> float:
    return round(torch.cuda.memory_allocated() / GIB, 3) if dev.type == "cuda" else 0.0


def generation(plan: Plan) -> dict:
    """Greedy decoding of a batch of prompts, KV-cached against re-running the prefix."""
    from training.inference import generate as gen

    dev = device()
    cfg = model_config(plan.train_model)
    with torch.device(dev):
        model = Transformer(cfg)
    model = model.to(torch.bfloat16 if dev.type == "cuda" else torch.float32).eval()
    model.rope_cos, model.rope_sin = rope_tables(cfg, dev)  # the tables stay fp32, as ChatModel keeps them
    generator = torch.Generator().manual_seed(0)
    prompts = [torch.randint(4, cfg.vocab_size, (int(n),), generator=generator).tolist()
               for n in torch.randint(64, 129, (plan.gen_batch,), generator=generator)]
    if not hasattr(gen, "generate_batch"):
        return {"measured": False, "why": "training.inference.generate has no generate_batch (no KV cache yet)"}
    rates, outputs = {}, {}
    for use_cache in (True, False):
        gen.generate_batch(model, prompts[:2], 8, use_cache=use_cache)  # warm-up
        if dev.type == "cuda":
            torch.cuda.synchronize()
        begin = time.perf_counter()
        result = gen.generate_batch(model, prompts, plan.gen_new_tokens, use_cache=use_cache)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        produced = sum(len(tokens) for samples in result for tokens, _ in samples)
        rates["cached" if use_cache else "uncached"] = produced / (time.perf_counter() - begin)
        outputs[use_cache] = [tokens for samples in result for tokens, _ in samples]
    same = sum(a == b for a, b in zip(outputs[True], outputs[False]))
    profile = _profile_decode(model, prompts, dev)
    return {"model": plan.train_model, "dtype": str(next(model.parameters()).dtype), "prompts": plan.gen_batch,
            "prompt_tokens": "64-128", "new_tokens": plan.gen_new_tokens,
            "cached_tokens_per_s": round(rates["cached"], 1), "uncached_tokens_per_s": round(rates["uncached"], 1),
            "speedup": round(rates["cached"] / rates["uncached"], 2),
            "greedy_rows_identical": f"{same} of {len(outputs[True])} (bf16 may differ in near-ties)",
            "profile_16_cached_tokens": profile}


def _profile_decode(model: Transformer, prompts: list[list[int]], dev: torch.device) -> dict:
    """Where a short cached decode spends its time: the top operators by self device time and by self CPU time."""
    from torch.profiler import ProfilerActivity, profile

    from training.inference.generate import generate_batch

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with profile(activities=activities) as prof:
        begin = time.perf_counter()
        generate_batch(model, prompts, 16, use_cache=True)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        wall = time.perf_counter() - begin
    events = prof.key_averages()
    device_key = "self_device_time_total" if dev.type == "cuda" else "self_cpu_time_total"
    top = lambda key: [(e.key, e.count, round(getattr(e, key) / 1e3, 2))  # noqa: E731
                       for e in sorted(events, key=lambda e: -getattr(e, key))[:12]]
    return {"wall_ms": round(wall * 1e3, 1), "top_self_device_ms": top(device_key),
            "top_self_cpu_ms": top("self_cpu_time_total")}


def markdown(record: dict) -> str:
    """The result file: one table per section, then the MFU goal."""
    lines = [f"# gpu_check ({record['total_seconds']} s)", ""]
    for name, section in record["sections"].items():
        lines += [f"## {name}: {section['status']}", "", "| key | value |", "|---|---|"]
        for key, value in section.items():
            if key in ("status", "traceback"):
                continue
            lines.append(f"| {key} | {json.dumps(value, default=str) if isinstance(value, (dict, list)) else value} |")
        lines.append("")
    mfus = [s.get("mfu") for n, s in record["sections"].items() if n.startswith("train") and s.get("mfu")]
    if mfus:
        verdict = "met" if max(mfus) >= MFU_GOAL else "not met"
        lines.append(f"Goal: at least {MFU_GOAL:.0%} MFU for clover-1b at seq 8192 on one H100/H200: "
                     f"best {max(mfus):.1%}, {verdict}.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="gpu_check")
    parser.add_argument("--dry-run", action="store_true", help="clover-tiny on the CPU: the same code in seconds")
    parser.add_argument("--micro-batch", type=int, default=4, help="clover-1b sequences of 8192 tokens per step")
    parser.add_argument("--steps", type=int, default=30, help="measured steps after warm-up")
    parser.add_argument("--budget-s", type=float, default=420, help="sections that would start later are skipped")
    parser.add_argument("--sections", default="environment,flash,train_eager,train_eager_gate_off,memory,generation,memory_phases,"
                        "train_compiled,train_compiled_selective_ac")
    args = parser.parse_args()
    plan = Plan.for_args(args)
    report = Report(Path(args.out), time.perf_counter(), args.budget_s)
    wanted = set(args.sections.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        vocab = model_config(plan.train_model).vocab_size
        rows = plan.micro_batch * (plan.warmup_steps + plan.steps) * 2 + 64
        data = write_token_shards(work / "tokens", rows=rows, seq_len=plan.seq_len, vocab=vocab, shards=2,
                                  row_group_rows=8, repetitive_rows=tuple(range(0, rows, 23)))
        sections = {  # the cheap and essential first: a run cut short still has them
            "environment": lambda: environment(plan),
            "flash": lambda: flash_vs_sdpa(plan),
            "train_eager": lambda: train_throughput(plan, data, work, compile_blocks=False),
            "train_eager_gate_off": lambda: train_throughput(plan, data, work, compile_blocks=False, gate=False),
            "memory": lambda: memory_per_layer(plan, work),
            "generation": lambda: generation(plan),
            "memory_phases": lambda: memory_phases(plan),
            "train_compiled": lambda: (train_throughput(plan, data, work, compile_blocks=True) if not plan.dry_run
                                       else {"skipped": "torch.compile is exercised on the GPU only"}),
            "train_compiled_selective_ac": lambda: (
                train_throughput(plan, data, work, compile_blocks=not plan.dry_run, ac_every=2)),
        }
        for name, fn in sections.items():
            if name in wanted:
                report.run(name, fn)
    print((Path(args.out) / "gpu_check.md").read_text())
    failed = [n for n, s in report.sections.items() if s["status"] == "failed"]
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
