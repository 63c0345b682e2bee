"""Fairness intervals that stay honest at zero: Wilson rates, Newcombe differences against the
published table, Katz ratios, no zero width on groups with no errors, and the printed table."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from fakeface_tf.analysis import fairness_metrics, fairness_output
from fakeface_tf.analysis.fairness_intervals import absolute, katz_ratio, newcombe, wilson


def test_zero_of_74_gets_a_wilson_interval_up_to_about_five_percent():
    assert wilson(0, 74) == pytest.approx((0.0, 0.049350), abs=1e-6)
    groups = pd.DataFrame({"age": ["60-69"] * 74 + ["20-29"] * 10})
    t, p = np.zeros(84, int), np.zeros(84)
    p[-1] = 1  # one 20-29 face called fake: 60-69 has none
    table = fairness_metrics.group_metrics(t, p, groups)
    row = table[table["group"] == "60-69"].iloc[0]
    assert (row.n, row.fpr, row.fpr_lo) == (74, 0.0, 0.0)
    assert row.fpr_hi == pytest.approx(0.049350, abs=1e-6)
    assert (row.accuracy_lo, row.accuracy_hi) == pytest.approx((1 - 0.049350, 1.0), abs=1e-6)


# Newcombe RG (1998) Stat Med 17:873-890, Table II, method 10, to 4 decimals
NEWCOMBE_TABLE_II = [
    ((56, 70, 48, 80), (0.0524, 0.3339)),   # (a)
    ((9, 10, 3, 10), (0.1705, 0.8090)),     # (b)
    ((5, 56, 0, 29), (-0.0381, 0.1926)),    # (d)
    ((0, 10, 0, 20), (-0.1611, 0.2775)),    # (e)
    ((10, 10, 0, 20), (0.6791, 1.0000)),    # (g)
]


@pytest.mark.parametrize("counts, published", NEWCOMBE_TABLE_II)
def test_newcombe_matches_the_published_table(counts, published):
    k1, n1, k2, n2 = counts
    difference, lo, hi = newcombe(*counts)
    assert difference == pytest.approx(k1 / n1 - k2 / n2)
    assert (lo, hi) == pytest.approx(published, abs=5e-5)


def test_katz_ratio_plain_and_with_the_half_correction():
    # 20/100 vs 10/100: exp(ln 2 +- 1.96 sqrt(1/20 - 1/100 + 1/10 - 1/100))
    assert katz_ratio(20, 100, 10, 100) == pytest.approx((2.0, 0.98656, 4.05448), abs=1e-5)
    # every face called real on both sides: no cell to vary without the 0.5 added to each
    assert katz_ratio(74, 74, 245, 245) == pytest.approx((1.0, 0.97625, 1.01483), abs=1e-5)
    assert all(math.isnan(x) for x in katz_ratio(3, 10, 0, 10))  # p2 = 0: no ratio


def test_absolute_value_of_an_interval():
    assert absolute(0.0, -0.1611, 0.2775) == (0.0, 0.0, 0.2775)
    assert absolute(-0.2, -0.3339, -0.0524) == (0.2, 0.0524, 0.3339)


def zero_error_table(n_per=12):
    """Real faces only, none called fake, every face found: no group has any event."""
    rows = [(g, r, a) for g in ("Male", "Female") for r in ("White", "Black", "Asian")
            for a in ("0-2", "3-9", "70+") for _ in range(n_per)]
    groups = pd.DataFrame(rows, columns=["gender", "race", "age"])
    return np.zeros(len(groups), int), np.zeros(len(groups)), groups


def test_no_zero_width_interval_on_groups_of_ten_or_more_without_events():
    t, p, groups = zero_error_table()
    report = fairness_metrics.fairness_report(t, p, groups)
    table = report["groups"]
    assert (table["n"] >= 10).all() and (table["fpr"] == 0).all()
    for rate in fairness_metrics.RATE_NAMES:
        known = table[rate].notna()
        assert (table.loc[known, f"{rate}_hi"] > table.loc[known, f"{rate}_lo"]).all(), rate
    assert table["fnr"].isna().all()  # no fakes: unavailable, not [0, 0]
    for c in report["comparisons"]:
        for key in ("dir", "fpr_difference", "no_face_difference", "aod_fpr_half"):
            lo, hi = c[key + "_ci"]
            assert hi > lo, (c["name"], key)
        assert c["equalized_odds"]["ci"][1] > 0
        assert c["flags"] == []
    for name, odds in report["equalized_odds"].items():
        assert odds["value"] == 0 and odds["ci"][1] > 0, name


def test_a_gap_in_the_unprivileged_sides_favour_is_not_flagged():
    rng = np.random.default_rng(1)
    groups = pd.DataFrame({"gender": rng.choice(["Male", "Female"], 600)})
    t = np.zeros(600, int)
    p = (rng.random(600) < np.where(groups["gender"] == "Male", 0.4, 0.05)).astype(float)
    gender = fairness_metrics.binary_comparisons(t, p, groups)[0]
    assert gender["fpr_difference_ci"][1] < 0  # Female called fake clearly less often
    assert gender["flags"] == []
    flipped = fairness_metrics.binary_comparisons(
        t, p, groups.assign(gender=groups["gender"].map({"Male": "Female", "Female": "Male"})))[0]
    assert flipped["fpr_difference_ci"][0] > 0 and flipped["dir"] < 0.8 and flipped["dir_ci"][1] < 1
    assert any("FPR gap" in f for f in flipped["flags"])
    assert any("below the 4/5 rule" in f for f in flipped["flags"])


def summary_of(t, p, groups):
    report = fairness_metrics.fairness_report(t, p, groups)
    return fairness_output.summary({**report, "model": "m", "rows": len(t), "part": "all rows",
                                    "threshold": 0.5})


def test_summary_prints_the_comparison_table_when_comparisons_exist():
    t, p, groups = zero_error_table()
    lines = summary_of(t, p, groups).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Binary comparisons ("))
    assert "FPR gap [95% CI]" in lines[start + 1]
    rows = lines[start + 2:]
    assert [row.split()[0] for row in rows] == ["Female", "others", "Black", "age", "age", "age",
                                                "Flags:"]
    assert "0.000 [-0.034, 0.034]" in rows[0]  # 0 of 108 vs 0 of 108: Newcombe, not [0, 0]
    assert rows[-1] == "Flags: none: no gap's interval excludes zero"


def test_summary_says_in_one_line_why_there_are_no_comparisons():
    t, p, groups = zero_error_table()
    text = summary_of(t, p, groups[["race"]].rename(columns={"race": "skin"}))
    lines = [line for line in text.splitlines() if "comparisons" in line]
    assert lines == ["Binary comparisons: none available: Female vs Male (no gender column); "
                     "others vs White (no race column); Black vs others (no race column); "
                     "age 0-2 vs others (no age column); age 3-9 vs others (no age column); "
                     "age 70+ vs others (no age column)"]
