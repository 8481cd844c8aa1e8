"""YAML configs over dataclasses: every default lives in a dataclass, YAML and CLI flags override it,
and an unknown key or a wrong type is an error that names the key."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


# On a dataclass value the loader built by merging a user's mapping onto a default: the names of the
# fields it took from that default, not from the user.
DEFAULTED = "_defaulted_fields"


class ConfigError(ValueError):
    """A config file or override that does not fit the config dataclass."""


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, key: str, default: Any, complete: bool = False) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(value, inner, key, default, complete)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"'{key}' must be a mapping, got {type(value).__name__} {value!r}")
        return _build(tp, value, key, base=default if dataclasses.is_dataclass(default) else None, complete=complete)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"'{key}' must be a mapping, got {type(value).__name__} {value!r}")
        _, value_type = args
        merged = {} if complete else dict(default or {})  # a recorded mapping is whole; a user's edits the default
        for name, item in value.items():
            if item is None:  # null removes an entry (for example, disables a threshold)
                merged.pop(name, None)
            else:
                merged[str(name)] = _convert(_as_text(item) if value_type is str else item, value_type,
                                             f"{key}.{name}", merged.get(name), complete)
        return merged
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"'{key}' must be a list, got {type(value).__name__} {value!r}")
        (item_type,) = args
        return [_convert(item, item_type, f"{key}[{i}]", None) for i, item in enumerate(value)]
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is Any or (isinstance(tp, type) and isinstance(value, tp) and not (tp is int and isinstance(value, bool))):
        return value
    raise ConfigError(f"'{key}' must be {_type_name(tp)}, got {type(value).__name__} {value!r}")


def _as_text(value: Any) -> Any:
    """A YAML scalar as the string a free-form setting map holds (`spark.conf`: `true`, not True)."""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value) if isinstance(value, (int, float)) else value


def _build(cls: type[T], data: dict, prefix: str = "", base: T | None = None, complete: bool = False) -> T:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"'{prefix}.{unknown[0]}'" if prefix else f"'{unknown[0]}'"
        raise ConfigError(f"unknown config key {where} (known: {', '.join(sorted(fields))})")
    merged_onto_default = base is not None
    base = base if merged_onto_default else cls()
    kwargs = {}
    for name in fields:
        current = getattr(base, name)
        if name in data:
            key = f"{prefix}.{name}" if prefix else name
            kwargs[name] = _convert(data[name], hints[name], key, current, complete)
        else:
            kwargs[name] = current
    built = cls(**kwargs)
    if merged_onto_default:  # the fields the user left, which a later default may still replace (quality.signals)
        object.__setattr__(built, DEFAULTED, frozenset(fields) - set(data))
    return built


def _set_dotted(cls: type, data: dict, dotted: str, value: Any) -> None:
    """Set `a.b.c` in `data`, walking `cls`'s fields: under a plain mapping field (such as spark.conf)
    the rest of the key is one entry name, dots included (`--set spark.conf.spark.ui.enabled=false`)."""
    node, tp, parts = data, cls, dotted.split(".")
    while len(parts) > 1:
        part = parts.pop(0)
        hint = typing.get_type_hints(tp).get(part) if dataclasses.is_dataclass(tp) else None
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"cannot set '{dotted}': '{part}' is not a mapping")
        tp = hint
        if typing.get_origin(hint) is dict:
            if not dataclasses.is_dataclass(typing.get_args(hint)[1]):
                parts = [".".join(parts)]
            elif len(parts) > 1:  # the entry's name, then its dataclass's fields
                node, tp = node.setdefault(parts.pop(0), {}), typing.get_args(hint)[1]
    node[parts[0]] = value


def parse_set_option(assignment: str) -> tuple[str, Any]:
    """`a.b=value` from the command line; the value is read as YAML (numbers, booleans, lists)."""
    if "=" not in assignment:
        raise ConfigError(f"--set expects KEY=VALUE, got {assignment!r}")
    key, raw = assignment.split("=", 1)
    return key.strip(), yaml.safe_load(raw)


def load_config(cls: type[T], path: str | None = None, overrides: dict[str, Any] | None = None) -> T:
    """Defaults from `cls`, then the YAML file, then dotted-key overrides (CLI flags)."""
    data: dict = {}
    if path:
        with open(path, encoding="utf-8") as handle:
            loaded = yaml.safe_load(handle)
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
        data = loaded or {}
    for dotted, value in (overrides or {}).items():  # None is --set KEY=null: it removes a mapping's entry
        _set_dotted(cls, data, dotted, value)
    try:
        return _build(cls, data)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}" if path else str(err)) from None


def build_config(cls: type[T], data: dict) -> T:
    """A config from a plain dict a stage recorded (`to_dict`) in its report: its mappings are taken whole, so
    a threshold disabled with null stays disabled (a user's YAML or --set edits the default mappings instead)."""
    return _build(cls, data, complete=True)


def to_dict(cfg: Any) -> dict:
    """Plain dict of a config, for reports and manifests."""
    return dataclasses.asdict(cfg)


def reference(cls: type, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(key, type, default, help) for every leaf of a config class: the generated config reference."""
    rows = []
    hints = typing.get_type_hints(cls)
    instance = cls()
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        value = getattr(instance, f.name)
        if dataclasses.is_dataclass(hints[f.name]):
            rows.extend(reference(hints[f.name], f"{key}."))
        else:
            shown = value if not isinstance(value, dict) else f"{len(value)} entries"
            tp = hints[f.name]
            type_name = tp.__name__ if isinstance(tp, type) else str(tp).replace("typing.", "")
            rows.append((key, type_name, repr(shown), f.metadata.get("help", "")))
    return rows
