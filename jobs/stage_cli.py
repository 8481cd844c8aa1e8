"""The command of every registered Spark stage, generated from its `Stage` and its config dataclass.

Precedence is the same for every stage: dataclass defaults, then `--config`, then `--set`, then the named
flags. A flag's help and default come from the config field it sets, so they cannot drift.

    clover STAGE ARGS...                       (jobs/cli.py)
    spark-submit jobs/spark_stage.py STAGE ARGS...
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import threading
from typing import Any

from dataprep.stages import Stage, discover
from jobs.common import (
    add_spark_arguments,
    add_validation_arguments,
    exit_on_config_error,
    stage_config,
    stage_parser,
    validation_exit,
)
from jobs.flags import add_options, config_flags
from schemas import storage


def build_parser(stage: Stage, prog: str) -> argparse.ArgumentParser:
    parser = stage_parser(prog, stage.description)
    positional, positional_help = stage.inputs
    parser.add_argument(positional, nargs="+" if positional == "inputs" else None, metavar="INPUT",
                        help=positional_help)
    parser.add_argument("--out", required=True, help=stage.out_help)
    add_options(parser, stage.config, stage.options)
    add_spark_arguments(parser, partitions=stage.spark_partitions)
    add_validation_arguments(parser, gated_input=stage.gated_input, own_suite=stage.own_suite)
    return parser


def stage_flags(stage: Stage, args: argparse.Namespace) -> dict[str, Any]:
    """The config keys the named flags set (None: not given)."""
    flags = config_flags(stage.options, args)
    if any(f.name == "spark" for f in dataclasses.fields(stage.config)):
        flags["spark.master"] = args.master
        if stage.spark_partitions:
            flags["spark.partitions"] = args.partitions
    return flags


def spark_settings(cfg: Any, args: argparse.Namespace):
    """The stage's own Spark settings, or just the master for a config without them."""
    from dataprep.spark import SparkConfig

    return cfg.spark if hasattr(cfg, "spark") else SparkConfig(master=args.master or "")


def run_stage(name: str, argv: list[str] | None = None, prog: str | None = None) -> int:
    stage = discover()[name]
    return exit_on_config_error(_run)(stage, argv, prog or f"clover {name}")


def _import_while_spark_starts(module: str) -> None:
    """Great Expectations takes seconds to import and the JVM seconds to start: overlap them. pyspark is
    imported first, on this thread, so that the two imports share no module."""
    import pyspark.sql  # noqa: F401

    threading.Thread(target=importlib.import_module, args=(module,), daemon=True).start()


def parse_stage(stage: Stage, argv: list[str], prog: str) -> tuple[argparse.Namespace, Any]:
    """The stage's arguments and config (defaults < --config < --set < flags), its last config step done."""
    args = build_parser(stage, prog).parse_args(argv)
    cfg = stage_config(stage.config, args, stage_flags(stage, args))
    if stage.prepare is not None:
        stage.prepare(cfg, args)
    return args, cfg


def _run(stage: Stage, argv: list[str] | None, prog: str) -> int:
    from dataprep.spark import spark_session

    args, cfg = parse_stage(stage, argv, prog)
    storage.check_unlocked(args.out)  # before seconds of Spark start-up, which a refusal would waste
    if stage.own_suite and not args.no_validate:
        _import_while_spark_starts("great_expectations")
    spark = spark_session(spark_settings(cfg, args), f"clover-{stage.name}", storage.total_bytes(getattr(args, stage.inputs[0])))
    result = stage.run(spark, args, cfg)
    print(stage.describe(result, cfg, args))
    return validation_exit(result) if stage.own_suite else 0
