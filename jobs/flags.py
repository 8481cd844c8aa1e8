"""Command-line flags generated from the config dataclasses, for every `clover` command.

A command declares its config dataclass and its arguments as `Option`s (the same type a Spark stage
declares in dataprep/stages.py): an Option with a `key` is a named flag that sets that dotted config
key, and its help and shown default come from the config field (`metadata["help"]`, the default), so
neither is written twice. An Option without a key is a plain argument (an input, --out, --device).
Precedence is the same for every command: dataclass defaults, then `--config`, then `--set`, then the
named flags.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dataprep.stages import Option
from jobs.common import stage_config, stage_parser

__all__ = ["Command", "Option", "add_options", "config_field", "config_flags"]


def config_field(cls: type, key: str) -> tuple[dataclasses.Field, Any, Any]:
    """(field, type, default) of a dotted config key such as `ingest.text_field`."""
    *parents, leaf = key.split(".")
    instance = cls()
    for part in parents:
        instance = getattr(instance, part)
    found = {f.name: f for f in dataclasses.fields(instance)}[leaf]
    return found, typing.get_type_hints(type(instance))[leaf], getattr(instance, leaf)


def _dest(key: str) -> str:
    return key.replace(".", "__")


def _comma_list(item_type: type):
    def parse(text: str) -> list:
        return [item_type(part) for part in text.split(",") if part.strip()]
    parse.__name__ = f"comma-separated {item_type.__name__}"  # argparse names the type in its errors
    return parse


def _settings_for_type(tp: Any, default: Any) -> tuple[dict, str | None]:
    """(argparse settings, the default as shown in help: None to show none) for a config field's type."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    if tp is bool:  # a switch: absent leaves the config's value (None), present sets it
        return {"action": "store_true", "default": None}, None
    if typing.get_origin(tp) is list:
        (item_type,) = typing.get_args(tp)
        shown = ",".join(map(str, default)) if default else None
        return {"type": _comma_list(item_type), "metavar": "A,B,..."}, shown
    shown = repr(default) if default not in ("", None) else None
    return ({"type": tp} if tp in (int, float) else {}), shown


def add_option(parser: argparse.ArgumentParser, config: type | None, option: Option) -> None:
    """One argument: with a key, its help, default shown and type come from the config field."""
    settings = dict(option.kwargs)
    if option.key is None:
        default = settings.get("default")
        shown = f" (default {default})" if default not in (None, False, "") and option.help else ""
        settings.setdefault("help", f"{option.help}{shown}" if option.help else None)
        parser.add_argument(option.flag, **settings)
        return
    found, tp, default = config_field(config, option.key)
    generated, shown = _settings_for_type(tp, default)
    described = option.help or found.metadata.get("help", "")
    settings = {**generated, **settings, "dest": _dest(option.key)}
    if settings.get("action") is None and "choices" not in settings:
        settings.setdefault("metavar", option.flag.lstrip("-").upper().replace("-", "_"))
    if shown is None or settings.get("required"):  # a required flag's default never applies
        settings.setdefault("help", described)
    settings.setdefault("help", f"{described} (default {shown})")
    parser.add_argument(option.flag, **settings)


def add_options(parser: argparse.ArgumentParser, config: type | None, options: Sequence[Option]) -> None:
    for option in options:
        add_option(parser, config, option)


def config_flags(options: Sequence[Option], args: argparse.Namespace) -> dict[str, Any]:
    """The config keys the named flags set (None: not given, so --config and --set stand)."""
    return {o.key: getattr(args, _dest(o.key)) for o in options if o.key is not None}


@dataclass(frozen=True)
class Command:
    """A `clover` command that is not a Spark stage: its description, config dataclass and arguments."""

    description: str
    config: type
    options: tuple[Option, ...] = ()

    def parser(self, prog: str) -> argparse.ArgumentParser:
        parser = stage_parser(prog, self.description)
        add_options(parser, self.config, self.options)
        return parser

    def configure(self, args: argparse.Namespace) -> Any:
        """Defaults, then --config, then --set, then the named flags."""
        return stage_config(self.config, args, config_flags(self.options, args))

    def parse(self, argv: list[str] | None, prog: str) -> tuple[argparse.Namespace, Any]:
        args = self.parser(prog).parse_args(argv)
        return args, self.configure(args)
