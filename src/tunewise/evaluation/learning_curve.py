"""Learning curves: fit quality against the number of training examples, predict it at a larger size.

The model is the inverse power law score(n) = a - b * n^(-c) (a: the score the curve levels off at, b > 0
the gap at n = 1, c > 0 how fast it closes), fitted by non-linear least squares with bounds
(`scipy.optimize.curve_fit`, trust-region reflective). It is the model that predicted best in Figueroa et
al. 2012, "Predicting sample size required for classification performance" (BMC Medical Informatics and
Decision Making 12:8), and the one of Hestness et al. 2017 ("Deep learning scaling is predictable,
empirically"). The interval of a prediction is a percentile bootstrap: the test examples are resampled (the
same draw at every size, since every size is scored on the same examples), the score at each size
recomputed, the curve refitted and the prediction taken again.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

MIN_SIZES = 3  # three parameters need three distinct sizes


def inverse_power_law(n, a: float, b: float, c: float):
    """score(n) = a - b * n^(-c); `n` a number or an array of training-set sizes (examples)."""
    return a - b * np.power(np.asarray(n, dtype=float), -c)


@dataclass(frozen=True)
class CurveFit:
    """Fitted parameters of `inverse_power_law`: a (asymptote, metric units), b (gap at n = 1), c (decay)."""

    a: float
    b: float
    c: float

    def predict(self, n: float) -> float:
        """The fitted score at `n` training examples."""
        return float(inverse_power_law(n, self.a, self.b, self.c))

    def reaches(self, score: float) -> float | None:
        """The smallest number of training examples at which the curve reaches `score` (1.0 when it already
        does at one example); None when it levels off below it (a <= score)."""
        if self.predict(1.0) >= score:
            return 1.0
        if self.a <= score or self.b <= 0:
            return None
        return float((self.b / (self.a - score)) ** (1.0 / self.c))


def fit_inverse_power_law(sizes: Sequence[float], scores: Sequence[float], upper: float = 1.0) -> CurveFit:
    """Fit a - b * n^(-c) to (size, score) points; `upper` bounds the asymptote a (1.0 for metrics in [0, 1]).

    Bounds: 0 <= a <= upper, b >= 0, 0.01 <= c <= 3. Raises ValueError with fewer than MIN_SIZES distinct
    sizes, RuntimeError when the least-squares search does not converge."""
    from scipy.optimize import OptimizeWarning, curve_fit

    x, y = np.asarray(sizes, dtype=float), np.asarray(scores, dtype=float)
    if len(set(x.tolist())) < MIN_SIZES:
        raise ValueError(f"a learning curve needs scores at {MIN_SIZES} or more distinct training sizes")
    hi = min(upper, max(float(y.max()), 1e-6))
    start = (hi, max(hi - float(y.min()), 1e-3) * float(x.min()) ** 0.5, 0.5)
    with warnings.catch_warnings():  # "covariance could not be estimated" on exact fits: we use no covariance
        warnings.simplefilter("ignore", OptimizeWarning)
        params, _ = curve_fit(inverse_power_law, x, y, p0=start, bounds=([0.0, 0.0, 0.01], [upper, np.inf, 3.0]),
                              maxfev=20000)
    return CurveFit(*map(float, params))


def predict_with_interval(sizes: Sequence[int], score_at: Callable[[int, np.ndarray], float], n_examples: int,
                          target: float, n_boot: int = 200, seed: int = 0, level: float = 0.95,
                          upper: float = 1.0) -> dict:
    """Fit the curve to the scores at `sizes` and predict the score at `target` training examples.

    `score_at(size_index, idx)` returns the metric of the strategy trained at sizes[size_index] over the test
    examples `idx` (an int array into the n_examples scored examples; a per-example metric's mean, or a
    set-level metric such as macro-F1 recomputed on the draw). Returns {'value', 'low', 'high'} (metric
    units, the interval a `level` percentile bootstrap over `n_boot` paired draws), the fitted 'a', 'b',
    'c', 'target' and 'fits' (how many draws converged). Raises ValueError as fit_inverse_power_law."""
    everyone = np.arange(n_examples)
    observed = [score_at(i, everyone) for i in range(len(sizes))]
    fit = fit_inverse_power_law(sizes, observed, upper)
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_boot):
        idx = rng.integers(0, n_examples, n_examples)
        try:
            draws.append(fit_inverse_power_law(sizes, [score_at(i, idx) for i in range(len(sizes))], upper)
                         .predict(target))
        except RuntimeError:  # a draw on which the search does not converge is left out (counted in 'fits')
            continue
    point = min(max(fit.predict(target), 0.0), upper)
    alpha = (1 - level) / 2
    low, high = (np.quantile(draws, [alpha, 1 - alpha]) if draws else (point, point))
    return {"value": point, "low": float(max(low, 0.0)), "high": float(min(high, upper)), "a": fit.a, "b": fit.b,
            "c": fit.c, "target": target, "fits": len(draws), "observed": [float(v) for v in observed]}


def unpaired_pvalue(a: dict, b: dict, level: float = 0.95) -> float:
    """Two-sided p-value that two scores {'value', 'low', 'high'} differ, from their intervals read as normal
    (se = width / (2 z)): for a predicted score, which has no per-example outcomes to pair."""
    from scipy.stats import norm

    z = norm.ppf(1 - (1 - level) / 2)
    se = math.hypot((a["high"] - a["low"]) / (2 * z), (b["high"] - b["low"]) / (2 * z))
    if se == 0:
        return 1.0 if a["value"] == b["value"] else 0.0
    return float(2 * norm.sf(abs(a["value"] - b["value"]) / se))


def geometric_sizes(largest: int, count: int = 4, smallest: int = 8) -> list[int]:
    """`count` training-set sizes spaced geometrically from `smallest` up to `largest` (whole examples,
    distinct, ascending); fewer when the range holds fewer whole numbers."""
    if largest <= smallest:
        return [max(1, largest)]
    ratio = (largest / smallest) ** (1 / (count - 1)) if count > 1 else 1.0
    return sorted({min(largest, round(smallest * ratio ** i)) for i in range(count)} | {largest})
