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
import typing
from typing import Any

from dataprep.stages import Option, Stage, discover
from jobs.common import (
    add_spark_arguments,
    add_validation_arguments,
    exit_on_config_error,
    stage_config,
    stage_parser,
    validation_exit,
)


def config_field(cls: type, key: str) -> tuple[dataclasses.Field, Any, Any]:
    """(field, type, default) of a dotted config key such as `ingest.text_field`."""
    *parents, leaf = key.split(".")
    instance = cls()
    for part in parents:
        instance = getattr(instance, part)
    found = {f.name: f for f in dataclasses.fields(instance)}[leaf]
    return found, typing.get_type_hints(type(instance))[leaf], getattr(instance, leaf)


def _add_option(parser: argparse.ArgumentParser, stage: Stage, option: Option) -> None:
    settings = dict(option.kwargs)
    if option.key is not None:
        found, tp, default = config_field(stage.config, option.key)
        described = option.help or found.metadata.get("help", "")
        settings.setdefault("help", f"{described} (default {default!r})" if default not in ("", None) else described)
        if tp in (int, float):
            settings.setdefault("type", tp)
        settings["dest"] = option.key.replace(".", "__")
    else:
        settings.setdefault("help", option.help)
    parser.add_argument(option.flag, **settings)


def build_parser(stage: Stage, prog: str) -> argparse.ArgumentParser:
    parser = stage_parser(prog, stage.description)
    positional, positional_help = stage.inputs
    parser.add_argument(positional, nargs="+" if positional == "inputs" else None, metavar="INPUT",
                        help=positional_help)
    parser.add_argument("--out", required=True, help=stage.out_help)
    for option in stage.options:
        _add_option(parser, stage, option)
    add_spark_arguments(parser, partitions=stage.spark_partitions)
    add_validation_arguments(parser, gated_input=stage.gated_input, own_suite=stage.own_suite)
    return parser


def stage_flags(stage: Stage, args: argparse.Namespace) -> dict[str, Any]:
    """The config keys the named flags set (None: not given)."""
    flags = {o.key: getattr(args, o.key.replace(".", "__")) for o in stage.options if o.key is not None}
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


def _run(stage: Stage, argv: list[str] | None, prog: str) -> int:
    from dataprep.spark import spark_session

    args = build_parser(stage, prog).parse_args(argv)
    cfg = stage_config(stage.config, args, stage_flags(stage, args))
    if stage.prepare is not None:
        stage.prepare(cfg, args)
    if stage.own_suite and not args.no_validate:
        _import_while_spark_starts("great_expectations")
    spark = spark_session(spark_settings(cfg, args), f"clover-{stage.name}")
    result = stage.run(spark, args, cfg)
    print(stage.describe(result, cfg, args))
    return validation_exit(result) if stage.own_suite else 0
