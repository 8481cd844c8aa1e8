"""Arguments and config handling shared by every stage entry point."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, TypeVar

from quality.gate import UnvalidatedDataset
from schemas.config import ConfigError, load_config, parse_set_option
from schemas.storage import OutputLocked

T = TypeVar("T")


def stage_parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_config_arguments(parser)
    return parser


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """--config and --set, which every command has: defaults < --config < --set < the named flags."""
    parser.add_argument("--config", help="YAML config file; --set and the named flags override it")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override any config key (dotted, see docs/config-reference.md); VALUE is read as YAML")


def add_spark_arguments(parser: argparse.ArgumentParser, partitions: bool = True) -> None:
    parser.add_argument("--master", help="Spark master; without it, spark-submit's, else local[*]")
    if partitions:
        parser.add_argument("--partitions", type=int, help="output partitions; without it, derived from the input size")
    add_verbose_argument(parser)


class _Verbose(argparse.Action):
    """Sets CLOVER_VERBOSE=1, which dataprep.spark.verbose() reads where Spark and GX are set up."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=False, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        os.environ["CLOVER_VERBOSE"] = "1"
        setattr(namespace, self.dest, True)


def add_verbose_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--verbose", action=_Verbose,
                        help="also Spark's start-up warnings and Great Expectations' progress bars (quiet without it; "
                             "CLOVER_VERBOSE=1 does the same)")


def add_validation_arguments(parser: argparse.ArgumentParser, gated_input: bool = True, own_suite: bool = True) -> None:
    if own_suite:
        parser.add_argument("--no-validate", action="store_true", help="skip this stage's validation suite")
    if gated_input:
        parser.add_argument("--allow-unvalidated", action="store_true",
                            help="accept an input whose validation failed or is missing (recorded in the output)")


def validation_exit(report) -> int:
    """Print the stage's validation summary; 1 when it failed."""
    outcome = report.extra.get("validation")
    if outcome is None:
        return 0
    print(outcome["table"])
    return 0 if outcome["success"] else 1


def stage_config(cls: type[T], args: argparse.Namespace, flags: dict[str, Any]) -> T:
    """Defaults, then --config, then --set, then the stage's named flags."""
    overrides = dict(parse_set_option(item) for item in args.set)
    overrides.update({k: v for k, v in flags.items() if v is not None})
    return load_config(cls, args.config, overrides)


def exit_on_config_error(func):
    """Print a config error as one clear line and exit 2, instead of a traceback."""

    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (ConfigError, FileNotFoundError, UnvalidatedDataset, OutputLocked) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2

    return wrapper
