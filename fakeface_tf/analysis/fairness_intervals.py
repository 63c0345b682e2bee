"""95 % intervals for the fairness report that stay honest at zero events.

A percentile bootstrap of a group with no errors resamples only zeros and gives 0 [0, 0]; 0 of
74 real faces called fake is as consistent with a true rate of 4 % as with 0 %. So:

- a rate (k of n): the Wilson score interval (scipy's `binomtest(...).proportion_ci`);
  0 of 74 gives [0, 0.049];
- a difference of two independent rates: Newcombe's hybrid score interval (method 10 of
  Newcombe 1998, Stat Med 17:873-890), built from the two Wilson intervals;
- a sum of independent differences (the average odds difference): the same square-and-add
  (MOVER) step over every Wilson interval involved;
- a ratio of two rates (the disparate impact ratio): the Katz log interval, with 0.5 added to
  every cell of the 2x2 table where one cell is zero (so it never collapses);
- the absolute value of a difference (equalized odds): the interval's image under |.|.
"""

from __future__ import annotations

import math

from scipy.stats import binomtest, norm

CONFIDENCE = 0.95
Z = float(norm.ppf(0.5 + CONFIDENCE / 2))
METHODS = {
    "rate": "Wilson score",
    "difference": "Newcombe hybrid score (method 10), from the two Wilson intervals",
    "aod": "square-and-add (MOVER) over the four Wilson intervals, halved",
    "ratio": "Katz log, with 0.5 added to every cell when one cell is zero",
}
NAN_INTERVAL = (math.nan, math.nan)


def wilson(k: int, n: int) -> tuple[float, float]:
    """Wilson score 95 % interval of k successes in n trials; NaN, NaN when n is 0."""
    if n <= 0:
        return NAN_INTERVAL
    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=CONFIDENCE, method="wilson")
    return float(ci.low), float(ci.high)


def newcombe(k1: int, n1: int, k2: int, n2: int) -> tuple[float, float, float]:
    """p1 - p2 with Newcombe's hybrid score interval (method 10): with Wilson intervals
    (l1, u1) and (l2, u2), lower = d - sqrt((p1 - l1)^2 + (u2 - p2)^2) and upper =
    d + sqrt((u1 - p1)^2 + (p2 - l2)^2). NaN where either side has no trials."""
    if n1 <= 0 or n2 <= 0:
        return (math.nan,) + NAN_INTERVAL
    return square_and_add([(k1, n1, +1), (k2, n2, -1)])


def square_and_add(terms) -> tuple[float, float, float]:
    """sum(sign * p) over independent rates given as (k, n, sign), with the MOVER interval:
    each rate's distance to the Wilson bound on the side it pushes the sum, squared, added,
    rooted. Two terms of opposite sign are Newcombe's method 10."""
    estimate, low, high = 0.0, 0.0, 0.0
    for k, n, sign in terms:
        p = k / n
        lo, hi = wilson(k, n)
        estimate += sign * p
        low += (p - lo) ** 2 if sign > 0 else (hi - p) ** 2
        high += (hi - p) ** 2 if sign > 0 else (p - lo) ** 2
    return estimate, estimate - math.sqrt(low), estimate + math.sqrt(high)


def katz_ratio(k1: int, n1: int, k2: int, n2: int) -> tuple[float, float, float]:
    """p1 / p2 with the Katz log interval, exp(log r' +- z sqrt(1/k1 - 1/n1 + 1/k2 - 1/n2)),
    computed on counts with 0.5 added to each cell (k + 0.5 of n + 1) when any of k1, n1 - k1,
    k2, n2 - k2 is zero, so a side with no events (or all events) still has a width. The point
    is the plain k1/n1 / (k2/n2); NaN where a side has no trials or p2 is 0."""
    if n1 <= 0 or n2 <= 0 or k2 == 0:
        return (math.nan,) + NAN_INTERVAL
    ratio = (k1 / n1) / (k2 / n2)
    if 0 in (k1, n1 - k1, k2, n2 - k2):
        k1, n1, k2, n2 = k1 + 0.5, n1 + 1, k2 + 0.5, n2 + 1
    spread = Z * math.sqrt(1 / k1 - 1 / n1 + 1 / k2 - 1 / n2)
    centre = math.log((k1 / n1) / (k2 / n2))
    return ratio, math.exp(centre - spread), math.exp(centre + spread)


def absolute(estimate: float, low: float, high: float) -> tuple[float, float, float]:
    """|d| and the image of d's interval under |.|: [0, max(|low|, |high|)] when it holds 0."""
    if math.isnan(estimate):
        return (math.nan,) + NAN_INTERVAL
    top = max(abs(low), abs(high))
    return abs(estimate), (0.0 if low <= 0 <= high else min(abs(low), abs(high))), top
