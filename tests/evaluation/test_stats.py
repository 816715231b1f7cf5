"""Paired tests, calibration and sample sizes against hand-computed values (and statsmodels when installed)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tunewise.evaluation.compare import calibration, compare_to_best, pairwise_pvalues, separation
from tunewise.evaluation.stats import (
    bootstrap_ci,
    examples_to_separate,
    expected_calibration_error,
    mcnemar,
    paired_bootstrap,
)


def test_mcnemar_exact_matches_the_binomial_by_hand():
    # b=3, c=10: p = 2 * P(X <= 3), X ~ Bin(13, 1/2) = 2 * (1 + 13 + 78 + 286) / 2**13
    result = mcnemar(3, 10)
    assert result["method"] == "McNemar exact"
    assert result["pvalue"] == pytest.approx(2 * 378 / 8192)
    assert mcnemar(10, 3)["pvalue"] == result["pvalue"]  # symmetric
    assert mcnemar(12, 12)["pvalue"] == 1.0  # capped at 1


def test_mcnemar_chi_square_with_continuity_correction():
    # b=30, c=12: (|30 - 12| - 1)^2 / 42 = 289 / 42; p from chi-square with 1 degree of freedom
    result = mcnemar(30, 12)
    assert result["method"] == "McNemar chi2"
    assert result["statistic"] == pytest.approx(289 / 42)
    assert result["pvalue"] == pytest.approx(0.008711912962379598, rel=1e-9)


def test_mcnemar_switches_to_chi_square_at_25_discordant_and_handles_none():
    assert mcnemar(12, 12)["method"] == "McNemar exact"
    assert mcnemar(13, 12)["method"] == "McNemar chi2"
    assert mcnemar(0, 0)["pvalue"] == 1.0


@pytest.mark.parametrize("b,c", [(0, 5), (3, 10), (7, 9), (12, 12), (30, 12), (40, 61), (100, 70)])
def test_mcnemar_agrees_with_statsmodels(b, c):
    sm = pytest.importorskip("statsmodels.stats.contingency_tables")
    exact = b + c < 25
    expected = sm.mcnemar([[50, b], [c, 50]], exact=exact, correction=True)
    assert mcnemar(b, c)["pvalue"] == pytest.approx(expected.pvalue, rel=1e-9)


def test_paired_bootstrap_identical_and_opposite():
    a = np.array([1, 0, 1, 1, 0, 1, 0, 1] * 5, dtype=float)
    same = paired_bootstrap(a, a)
    assert same["diff"] == 0 and same["pvalue"] == 1.0
    far = paired_bootstrap(np.ones(50), np.zeros(50), n_boot=999)
    assert far["diff"] == 1.0 and far["pvalue"] == pytest.approx(1 / 1000)
    mixed = paired_bootstrap(a, np.roll(a, 1), seed=3)
    assert mixed["low"] <= mixed["diff"] <= mixed["high"]
    assert mixed == paired_bootstrap(a, np.roll(a, 1), seed=3)  # seeded: a report is reproducible


def test_paired_bootstrap_detects_a_real_difference_but_not_noise():
    rng = np.random.default_rng(0)
    base = rng.random(400)
    assert paired_bootstrap(base + 0.1, base)["pvalue"] < 0.01
    noise = paired_bootstrap(base + rng.normal(0, 0.3, 400), base + rng.normal(0, 0.3, 400))
    assert noise["pvalue"] > 0.05


def test_ece_by_hand():
    # bin (0.8, 0.9]: confidence 0.9, accuracy 0.5 -> 0.4; bin (0.5, 0.6]: 0.6 vs 1.0 -> 0.4; each half the data
    assert expected_calibration_error([0.9, 0.9, 0.6, 0.6], [1, 0, 1, 1]) == pytest.approx(0.4)
    assert expected_calibration_error([1.0, 1.0, 0.5, 0.5], [1, 1, 1, 0]) == pytest.approx(0.0)
    assert expected_calibration_error([0.1, 0.0], [0, 0]) == pytest.approx(0.05)  # both in the first bin
    assert math.isnan(expected_calibration_error([], []))


def test_examples_to_separate_by_hand():
    # mean 0.1, sd (ddof 1) sqrt(19/99); n = ((1.959964 + 0.841621) * sd / 0.1)^2 = 150.6 -> 151
    diffs = np.array([1] * 15 + [-1] * 5 + [0] * 80, dtype=float)
    assert examples_to_separate(diffs) == 151
    assert examples_to_separate(np.zeros(10)) is None
    assert examples_to_separate(np.array([1.0])) is None


def test_bootstrap_ci_is_kept():
    ci = bootstrap_ci(np.array([1, 0, 1, 1]), np.mean)
    assert ci["value"] == 0.75 and ci["low"] <= 0.75 <= ci["high"]


def _rows(scores, ids=None):
    return [{"example_id": str(i if ids is None else ids[i]), "score": float(s), "target": "a", "output": "a"}
            for i, s in enumerate(scores)]


def test_compare_to_best_classification_marks_ties():
    best = [1] * 90 + [0] * 10
    close = [1] * 88 + [0] * 12
    poor = [1] * 50 + [0] * 50
    rows = compare_to_best({"close": _rows(close), "best": _rows(best), "poor": _rows(poor)}, "classification")
    assert [r["strategy"] for r in rows] == ["best", "close", "poor"]
    assert rows[0]["is_best"] and rows[0]["pvalue"] is None
    assert rows[1]["b"] == 2 and rows[1]["c"] == 0 and rows[1]["tied"]  # exact p = 0.5
    assert rows[1]["pvalue"] == pytest.approx(0.5)
    assert not rows[2]["tied"] and rows[2]["pvalue"] < 0.001
    assert rows[2]["diff"] == pytest.approx(-0.4)


def test_compare_uses_only_common_examples_and_generation_uses_bootstrap():
    a = _rows([1.0, 0.5, 0.0, 1.0], ids=["x", "y", "z", "w"])
    b = _rows([1.0, 0.5, 0.0], ids=["x", "y", "z"])
    rows = compare_to_best({"a": a, "b": b}, "generation")
    assert rows[0]["n"] == 3 and rows[1]["method"] == "paired bootstrap" and rows[1]["pvalue"] == 1.0
    assert pairwise_pvalues({"a": a, "b": b}, "generation")["a", "b"] == 1.0


def test_separation_reports_more_examples_needed():
    first = _rows([1] * 15 + [0] * 5 + [1] * 80)
    second = _rows([0] * 15 + [1] * 5 + [1] * 80)
    sep = separation({"first": first, "second": second}, "first", "second")
    assert sep["needed"] == 151 and sep["more"] == 51 and sep["diff"] == pytest.approx(0.1)


def test_calibration_from_label_probabilities():
    rows = [{"target": "a", "scores": {"a": 0.9, "b": 0.1}}, {"target": "b", "scores": {"a": 0.9, "b": 0.1}},
            {"target": "a", "scores": {"a": 1.2, "b": 0.8}}, {"target": "a", "scores": {"a": 0.6, "b": 0.4}}]
    cal = calibration(rows)
    assert cal["ece"] == pytest.approx(0.4)  # 1.2/(1.2+0.8) = 0.6 after normalising
    assert sum(b["count"] for b in cal["bins"]) == 4
    assert calibration([{"target": "a", "scores": None}]) is None
