"""Read settings YAML (a config, a `--set` value, tune's search space) that may be hostile.

A config is a few lines of plain YAML, so whatever a real one never needs and a hostile one
abuses is refused as it is met: anchors and aliases, deep nesting, huge integers, files that
are large or not UTF-8. Every failure is one FakefaceError line naming the file (or the --set
key) and, where known, the line and column.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from fakeface_tf.core.errors import FakefaceError

# Bounds of a YAML config (read_yaml): real configs are ~1 KB, 3 levels deep, short numbers.
MAX_CONFIG_BYTES = 1 << 20
MAX_DEPTH = 20
MAX_INT_CHARS = 32


class _ConfigLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader without what a config never needs and a hostile file abuses: anchors
    and aliases (a few hundred bytes of nested aliases expand to gigabytes), nesting deeper
    than MAX_DEPTH (the composer recurses once per level) and integers longer than
    MAX_INT_CHARS characters (their conversion is quadratic). Each is refused as it is met,
    before anything is expanded or converted."""

    def __init__(self, stream):
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise yaml.composer.ComposerError(
                None, None, "YAML anchors and aliases (&name, *name) are not allowed in a config",
                event.start_mark)
        if self.depth >= MAX_DEPTH:
            raise yaml.composer.ComposerError(
                None, None, f"nested more than {MAX_DEPTH} levels deep", event.start_mark)
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_yaml_int(self, node):
        if len(node.value) > MAX_INT_CHARS:
            raise yaml.constructor.ConstructorError(
                None, None, f"a number of {len(node.value)} characters (at most {MAX_INT_CHARS})",
                node.start_mark)
        return super().construct_yaml_int(node)


_ConfigLoader.add_constructor("tag:yaml.org,2002:int", _ConfigLoader.construct_yaml_int)


def parse_yaml(text: str, where: str):
    """The value of YAML `text` through `_ConfigLoader`; any failure is a one-line FakefaceError
    naming `where` (the file, or the --set key) and the line and column where known."""
    try:
        return yaml.load(text, Loader=_ConfigLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = " ".join(str(exc.problem or exc.context or "").split())[:200]
        raise FakefaceError(f"{where}: not valid YAML ({at}{problem})") from None
    except Exception as exc:  # noqa: BLE001 - a value converter (dates, floats) on hostile text
        raise FakefaceError(f"{where}: not valid YAML ({type(exc).__name__}: "
                            f"{' '.join(str(exc).split())[:200]})") from None


def read_yaml(path: str | os.PathLike):
    """A YAML file of settings (a config, a search space) through `parse_yaml`: at most
    MAX_CONFIG_BYTES of UTF-8 text, or a one-line FakefaceError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FakefaceError(f"config file not found: {path}")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise FakefaceError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise FakefaceError(f"{path}: larger than {MAX_CONFIG_BYTES // 1024} KiB; a config is a "
                            "few lines of YAML")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FakefaceError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    return parse_yaml(text, str(path))
