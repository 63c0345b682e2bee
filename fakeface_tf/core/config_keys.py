"""Typed config sections from a YAML mapping: every key checked, every value coerced to its type.

An unknown key is an error suggesting the nearest known one (usually a typo; or the right key
in the wrong section), a value of the wrong type an error naming its dotted key. Keys and
values that were renamed still load (MOVED_KEYS, OLD_VALUES), so old configs keep working.
`config.py` defines the sections; this module only reads mappings into them.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import typing

from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.core.text import short
from fakeface_tf.core.yaml_loading import MAX_INT_CHARS

# Values that were renamed, per key (old -> new): configs written before still load.
OLD_VALUES = {"training.cache_frozen": {True: "auto", False: "off"}}
# Keys that moved (old -> new): configs written before still load, and --set takes either.
MOVED_KEYS = {"mixed_precision": "training.mixed_precision"}


def known_keys(cls, prefix: str = "") -> list[str]:
    """Every key of dataclass `cls` as written in YAML or --set: sections and dotted leaves."""
    hints, keys = typing.get_type_hints(cls), []
    for f in dataclasses.fields(cls):
        dotted = f"{prefix}{f.name}"
        keys.append(dotted)
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            keys += known_keys(hint, f"{dotted}.")
    return keys


def unknown_key(dotted: str, keys: list[str]) -> FakefaceError:
    """The error for an unknown key, suggesting the nearest of `keys` (usually a typo)."""
    dotted = str(dotted)
    close = difflib.get_close_matches(dotted, keys, n=1) if len(dotted) < 100 else []
    if not close:  # the right key in the wrong section: epochs -> training.epochs
        leaf = dotted.rsplit(".", 1)[-1]
        close = [k for k in keys if k.rsplit(".", 1)[-1] == leaf][:1]
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return FakefaceError(f"unknown config key {short(dotted)}{hint}")


def build(cls, values: dict, where: str = "", root=None):
    """Make dataclass `cls` from a dict, naming the first unknown or mistyped key. `where` is
    the dotted section `cls` sits at in dataclass `root` (default `cls`), whose keys are
    suggested for an unknown one."""
    root = root or cls
    if not isinstance(values, dict):
        raise FakefaceError(f"{where or 'config'}: expected a mapping, got {short(values)}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        dotted = f"{where}.{key}" if where else key
        if key not in names:
            raise unknown_key(dotted, known_keys(root))
        kwargs[key] = _coerce(hints[key], value, dotted, root)
    return cls(**kwargs)


def _coerce(hint, value, dotted: str, root):
    renamed = OLD_VALUES.get(dotted, {})
    if isinstance(value, bool) and value in renamed:
        value = renamed[value]
    if dataclasses.is_dataclass(hint):
        return build(hint, value or {}, dotted, root)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "on", "off", "1", "0"):
            return value.lower() in ("true", "yes", "on", "1")
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and len(value.strip()) <= MAX_INT_CHARS:
            try:
                return int(value)
            except ValueError:
                pass
    elif hint is float:  # finite only: 1e999 would pass every `> 0` check as inf
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if math.isfinite(float(value)):
                return float(value)
        elif isinstance(value, str):
            try:
                if math.isfinite(float(value)):
                    return float(value)
            except ValueError:
                pass
    elif hint is str:
        if value is None:
            return ""
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    raise FakefaceError(
        f"config key '{dotted}' expects {getattr(hint, '__name__', hint)}, got {short(value)}"
    )


def move_old_keys(values):
    """A copy of a config mapping with top-level keys that moved (MOVED_KEYS) put in their
    section; giving both the old and the new key with different values is an error."""
    if not isinstance(values, dict) or not any(old in values for old in MOVED_KEYS):
        return values
    values = copy.deepcopy(values)
    for old, new in MOVED_KEYS.items():
        section, leaf = new.split(".")
        node = values.get(section) or {}
        if old not in values or not isinstance(node, dict):
            continue
        value = values.pop(old)
        if node.setdefault(leaf, value) != value:
            raise FakefaceError(f"config key '{old}' moved to '{new}': give only '{new}'")
        values[section] = node
    return values
