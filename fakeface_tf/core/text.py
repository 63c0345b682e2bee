"""How numbers are written for people (summaries, tables, the model card): one rule everywhere."""

from __future__ import annotations

import math
import reprlib

import numpy as np


def format_value(value, ci=None, missing: str = "unavailable") -> str:
    """A metric for people: 3 decimals, `missing` for None/NaN, anything else as text. With
    `ci` = (lo, hi) and both ends known, the interval follows: `0.123 [0.100, 0.150]`."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return missing
    text = f"{value:.3f}" if isinstance(value, (float, np.floating)) else str(value)
    if ci and not any(c is None or math.isnan(c) for c in ci):
        text += f" [{ci[0]:.3f}, {ci[1]:.3f}]"
    return text


def markdown_table(headers, rows) -> str:
    """A Markdown table: `headers`, then one line per row with each value by `format_value`."""
    lines = ["| " + " | ".join(map(str, headers)) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(format_value(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


class _ShortRepr(reprlib.Repr):
    """reprlib's bounded repr; an int too long to print in full is named by its digit count
    (repr() itself refuses ints over 4,300 digits)."""

    def repr_int(self, x, level):
        if x.bit_length() > 4 * self.maxlong:
            return f"<an integer of about {int(x.bit_length() * 0.30103) + 1} digits>"
        return super().repr_int(x, level)


_REPR = _ShortRepr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxlong, _REPR.maxother = 3, 80, 40, 80
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = _REPR.maxfrozenset = 4


def short(value, width: int = 64) -> str:
    """A value echoed in an error message: its repr on one line, cut to at most `width`
    characters ("..." marks the cut). Built with reprlib, so a huge or deeply nested value
    (a YAML bomb, a 5,000-digit number) costs no more than a small one."""
    text = _REPR.repr(value)
    return text if len(text) <= width else text[:max(0, width - 3)] + "..."


def flat_config(values: dict, prefix: str = "") -> dict:
    """The config as {"section.key": value}, values as TensorBoard takes them (bool, int, float,
    str; anything else, lists included, as text)."""
    out = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(flat_config(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value if isinstance(value, (bool, int, float, str)) else str(value)
    return out
