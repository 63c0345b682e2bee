"""How numbers are written for people (summaries, tables, the model card): one rule everywhere."""

from __future__ import annotations

import math

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
