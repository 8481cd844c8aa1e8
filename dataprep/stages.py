"""The stage registry: a Spark stage is declared once, in its own module, and everything else derives from it.

`clover STAGE`, `spark-submit jobs/spark_stage.py STAGE`, `clover validate`, the config reference and the
stage list of `clover --help` read `STAGES`; none keeps a list of its own. A new stage is one module in
dataprep/ that calls `register(Stage(...))` (see docs/architecture.md for a worked example).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# the validation frames of a dataset: (spark, root, record) -> {suite name: (DataFrame, expectations)}
Frames = Callable[[Any, str, dict], dict]


@dataclass(frozen=True)
class Option:
    """A named flag of the stage's command. With `key` it sets that config key (its help and default come
    from the config field); without, it is an argument of the stage's run function, named by its dest."""

    flag: str
    key: str | None = None
    help: str | None = None
    kwargs: dict = field(default_factory=dict)  # extra argparse settings (choices, metavar, required, type)


# the trained tokenizer, which the stages that encode text read
TOKENIZER_OPTION = Option("--tokenizer", help="directory from clover train-tokenizer", kwargs={"required": True})


@dataclass(frozen=True)
class Stage:
    name: str
    summary: str  # one line for `clover --help`
    description: str  # the command's --help
    config: type  # its config dataclass, the one source of defaults
    run: Callable[[Any, argparse.Namespace, Any], Any]  # (spark, args, cfg) -> StageReport
    describe: Callable[[Any, Any, argparse.Namespace], str]  # (report, cfg, args) -> the summary line it prints
    inputs: tuple[str, str]  # (positional: "input" or "inputs" for one or more, its help)
    out_help: str  # what --out holds: the output layout
    writes: str  # the kind of dataset it writes: "documents", "tokens", "pairs", "tokenizer"
    validates: tuple[str, ...] = ()  # the dataset kinds whose records `frames` validates
    frames: Frames | None = None
    options: tuple[Option, ...] = ()
    gated_input: bool = True  # its input must have passed validation (--allow-unvalidated)
    own_suite: bool = True  # its output is validated (--no-validate)
    spark_partitions: bool = True  # it writes partitioned output (--partitions)
    prepare: Callable[[Any, argparse.Namespace], None] | None = None  # a last config step that needs the flags
    module: str = ""  # where it is declared, for the config reference
    step: int = 100  # its place in the pipeline, for listings (curate 10, dedup 20, ...)


STAGES: dict[str, Stage] = {}


def register(stage: Stage) -> Stage:
    """Called once by the module that declares the stage."""
    if stage.name in STAGES and STAGES[stage.name] is not stage:
        raise ValueError(f"stage {stage.name!r} is registered twice")
    STAGES[stage.name] = stage
    return stage


def discover() -> dict[str, Stage]:
    """Every stage of the dataprep package, found by importing its modules (no list to keep)."""
    import dataprep

    for module in pkgutil.iter_modules(dataprep.__path__):
        importlib.import_module(f"dataprep.{module.name}")
    return dict(sorted(STAGES.items(), key=lambda item: (item[1].step, item[0])))


def frames_for(kind: str) -> Frames | None:
    """The validation frames of a Clover dataset kind, from the stage that writes it."""
    for stage in discover().values():
        if kind in stage.validates:
            return stage.frames
    return None


def dataset_kinds() -> dict[str, tuple[str, ...]]:
    """Each kind of validated dataset (documents, pairs, tokens) -> the record kinds whose suites check it."""
    kinds: dict[str, tuple[str, ...]] = {}
    for stage in discover().values():
        if stage.validates:
            kinds[stage.writes] = kinds.get(stage.writes, ()) + stage.validates
    return kinds
