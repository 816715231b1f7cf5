"""The inverse-power-law learning curve: recovers a synthetic curve's parameters, its bootstrap interval
covers the true score at a larger size, and the crossover with a prompt's score is where the curve says."""

from __future__ import annotations

import numpy as np
import pytest

from tunewise.evaluation.learning_curve import (
    CurveFit,
    fit_inverse_power_law,
    geometric_sizes,
    inverse_power_law,
    predict_with_interval,
    unpaired_pvalue,
)

TRUE = (0.92, 1.1, 0.45)  # a, b, c


def test_fit_recovers_a_noiseless_curve():
    sizes = [8, 16, 32, 64, 128, 256]
    fit = fit_inverse_power_law(sizes, inverse_power_law(sizes, *TRUE))
    assert (fit.a, fit.b, fit.c) == pytest.approx(TRUE, rel=1e-3)


def _pilot(seed: int, sizes=(16, 64, 256, 1024), n_test: int = 5000, target: int = 8192) -> dict:
    rng = np.random.default_rng(seed)
    # per-example right/wrong outcomes of a classifier whose accuracy follows the true curve (binomial noise)
    outcomes = [(rng.random(n_test) < inverse_power_law(n, *TRUE)).astype(float) for n in sizes]
    return predict_with_interval(list(sizes), lambda i, idx: outcomes[i][idx].mean(), n_test, target=target,
                                 n_boot=100, seed=seed)


def test_fit_recovers_a_noisy_curve_and_the_interval_covers_the_truth():
    truth = inverse_power_law(8192, *TRUE)
    result = _pilot(0)
    assert result["a"] == pytest.approx(TRUE[0], abs=0.03)
    assert result["b"] == pytest.approx(TRUE[1], rel=0.25)
    assert result["c"] == pytest.approx(TRUE[2], abs=0.1)
    assert result["low"] <= truth <= result["high"]
    assert result["high"] - result["low"] < 0.08  # an interval, not everything
    assert result["fits"] > 90
    covered = [r["low"] <= truth <= r["high"] for r in map(_pilot, range(1, 5))]
    assert sum(covered) >= 3  # a 95% interval: rarely misses


def test_fit_needs_three_sizes():
    with pytest.raises(ValueError, match="3 or more"):
        fit_inverse_power_law([8, 8, 16], [0.5, 0.5, 0.6])


def test_crossover_with_a_prompt():
    fit = CurveFit(0.9, 2.0, 0.5)  # 0.9 - 2 / sqrt(n): reaches 0.7 at n = 100
    assert fit.reaches(0.7) == pytest.approx(100.0)
    assert fit.predict(fit.reaches(0.85)) == pytest.approx(0.85)
    assert fit.reaches(0.95) is None  # levels off below the prompt
    assert fit.reaches(-2.0) == 1.0  # already above it at one example


def test_unpaired_pvalue_from_intervals():
    a = {"value": 0.9, "low": 0.88, "high": 0.92}
    assert unpaired_pvalue(a, {"value": 0.6, "low": 0.58, "high": 0.62}) < 1e-6
    assert unpaired_pvalue(a, {"value": 0.895, "low": 0.85, "high": 0.94}) > 0.5


def test_geometric_sizes():
    assert geometric_sizes(64) == [8, 16, 32, 64]
    assert geometric_sizes(1000, count=4, smallest=10) == [10, 46, 215, 1000]
    assert geometric_sizes(5) == [5]
