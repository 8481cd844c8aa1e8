"""The `clover` command: one subcommand per stage, each with its own --help."""

from __future__ import annotations

import atexit
import importlib
import os
import sys
import threading

# subcommand -> (module with main(argv, prog), one-line description); the Spark stages come from their registry.
# Each module but inspect's and validate's declares its arguments and config as `COMMAND` (jobs/flags.py), which
# the config reference reads.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("jobs.demo", "run the whole path on the built-in sample: data, validation, pretrain, DPO, export"),
    "make-sample": ("jobs.make_sample", "write the built-in dirty sample corpus (no download)"),
    "inspect": ("jobs.inspection", "a self-contained HTML report of what a stage kept, removed and why (no Spark)"),
    "validate": ("jobs.validate", "validate any Clover dataset with Great Expectations; exit 1 on failure"),
    "train-classifier": ("jobs.train_classifier", "train a fastText quality classifier and report precision/recall"),
    "ablate": ("jobs.ablate", "train one model per documents variant at an equal token budget and compare held-out loss"),
    "plan": ("jobs.plan", "parameters, FLOPs per token and per-GPU memory of a model preset"),
    "train": ("jobs.train", "pretrain a model preset with FSDP on validated token shards (one process; torchrun jobs/train.py for more)"),
    "dpo": ("jobs.dpo", "align a pretrained run with DPO on prepared preference pairs (torchrun jobs/dpo.py for more)"),
    "export": ("jobs.export", "export a run as a Hugging Face Llama directory (transformers, vLLM)"),
    "generate": ("jobs.generate", "print a completion from a run or an exported directory"),
    "quantize": ("jobs.quantize", "4-bit GPTQ of an exported model through llm-compressor (the quantize extra)"),
    "serve": ("jobs.serve", "serve a run or export as OpenAI-compatible chat and text completions (batched)"),
    "sample-candidates": ("jobs.sample_candidates", "generate candidate responses at several temperatures (resumable)"),
    "judge": ("jobs.judge", "judge candidates pairwise in both orders with an endpoint or local model (resumable)"),
    "review": ("jobs.review", "export pairs for human review; import decisions into a preference-pairs dataset"),
    "package": ("jobs.package", "build clover.zip for spark-submit --py-files (executors need the dependencies only)"),
}


def commands() -> dict[str, str]:
    """Every subcommand and its one-line description: the registered Spark stages, then the rest."""
    from dataprep.stages import discover

    return {**{name: stage.summary for name, stage in discover().items()},
            **{name: help_text for name, (_, help_text) in COMMANDS.items()}}


def usage() -> str:
    listed = commands()
    width = max(map(len, listed))
    lines = ["usage: clover COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_text}" for name, help_text in listed.items()]
    lines += ["", "Run 'clover COMMAND --help' for a command's arguments."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name in COMMANDS:
        return importlib.import_module(COMMANDS[name][0]).main(rest, prog=f"clover {name}")
    from dataprep.stages import discover

    if name in discover():
        from jobs.stage_cli import run_stage

        return run_stage(name, rest)
    print(f"clover: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
    return 2


def entry() -> None:
    """The `clover` executable: `main`, then an exit that skips only the interpreter's teardown of its
    modules. With Great Expectations, scipy and pandas loaded that teardown takes 0.7 s of a stage's run
    and changes nothing on disk. Everything else a normal exit does comes first: other threads are joined,
    exit handlers run (the Spark session stops, the driver's class archive is moved into place), and the
    output streams are flushed."""
    code = main()
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
