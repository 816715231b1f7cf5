"""Statistics over per-example results: bootstrap intervals, paired tests, calibration, sample sizes.

Everything is seeded, so a report rebuilt from the same store shows the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def bootstrap_ci(values: np.ndarray, statistic: Callable, seed: int = 0, n_boot: int = 1000,
                 level: float = 0.95, index: bool = False) -> dict[str, float]:
    """{'value', 'low', 'high'}: the statistic and its percentile-bootstrap interval.

    With index=True the statistic receives resampled *indices* (for metrics such as macro-F1 that do
    not decompose into per-example values); otherwise resampled values.
    """
    values = np.asarray(values)
    n = len(values)
    if n == 0:
        return {"value": float("nan"), "low": float("nan"), "high": float("nan")}
    point = float(statistic(np.arange(n) if index else values))
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(n_boot, n))
    stats = np.array([statistic(d if index else values[d]) for d in draws])
    alpha = (1 - level) / 2
    low, high = np.quantile(stats, [alpha, 1 - alpha])
    return {"value": point, "low": float(low), "high": float(high)}


# McNemar's chi-square is a poor approximation when few examples are discordant; below this many
# discordant pairs the exact binomial test is used (the usual rule of thumb, as in statsmodels' docs).
EXACT_BELOW = 25


def mcnemar(b: int, c: int, exact: bool | None = None) -> dict[str, float | str]:
    """McNemar's test on the two discordant counts of a paired 2x2 table.

    b: examples the first system got right and the second wrong; c: the reverse. `exact=None` picks
    the exact binomial test when b + c < EXACT_BELOW, else chi-square with continuity correction.
    Returns {'statistic', 'pvalue', 'method'} (statistic: min(b, c) for exact, chi-square otherwise).
    """
    from scipy.stats import binom, chi2

    n = b + c
    if exact is None:
        exact = n < EXACT_BELOW
    if n == 0:
        return {"statistic": 0.0, "pvalue": 1.0, "method": "McNemar exact" if exact else "McNemar chi2"}
    if exact:
        k = min(b, c)
        return {"statistic": float(k), "pvalue": float(min(1.0, 2 * binom.cdf(k, n, 0.5))),
                "method": "McNemar exact"}
    stat = (abs(b - c) - 1) ** 2 / n
    return {"statistic": float(stat), "pvalue": float(chi2.sf(stat, 1)), "method": "McNemar chi2"}


def paired_bootstrap(a: np.ndarray, b: np.ndarray, seed: int = 0, n_boot: int = 2000,
                     level: float = 0.95) -> dict[str, float | str]:
    """Paired bootstrap of mean(a) - mean(b) over the same examples (see `bootstrap_difference`)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    d = a - b
    n = len(d)
    if n == 0:
        return {"diff": float("nan"), "low": float("nan"), "high": float("nan"), "pvalue": 1.0,
                "method": "paired bootstrap"}
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, n, size=(n_boot, n))].mean(axis=1)
    return bootstrap_difference(float(d.mean()), means, level)


def bootstrap_difference(observed: float, draws: np.ndarray, level: float = 0.95) -> dict[str, float | str]:
    """{'diff', 'low', 'high', 'pvalue', 'method'} from bootstrap draws of a paired difference.

    The percentile interval of the draws, and a two-sided p-value under the null of no difference: the
    draws are shifted to be centred on zero and we count how often they land at least as far out as the
    observed difference (Efron & Tibshirani's shift method), with the +1 correction so it is never 0.
    """
    alpha = (1 - level) / 2
    low, high = np.quantile(draws, [alpha, 1 - alpha])
    extreme = np.abs(draws - observed) >= abs(observed) - 1e-12
    pvalue = 1.0 if observed == 0 else float((1 + extreme.sum()) / (1 + len(draws)))
    return {"diff": observed, "low": float(low), "high": float(high), "pvalue": min(1.0, pvalue),
            "method": "paired bootstrap"}


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 10) -> float:
    """ECE: the example-weighted mean |accuracy - confidence| over equal-width confidence bins.

    Bins are (0, 0.1], (0.1, 0.2], ... (confidence 0 falls in the first), as in Guo et al. 2017.
    """
    confidence, correct = np.asarray(confidence, dtype=float), np.asarray(correct, dtype=float)
    n = len(confidence)
    if n == 0:
        return float("nan")
    bins = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    ece = 0.0
    for k in range(n_bins):
        mask = bins == k
        if mask.any():
            ece += mask.sum() / n * abs(correct[mask].mean() - confidence[mask].mean())
    return float(ece)


def examples_to_separate(diffs: np.ndarray, alpha: float = 0.05, power: float = 0.8) -> int | None:
    """Test examples needed for a paired difference of this size to reach significance.

    Normal approximation for a paired difference d_i = score_A,i - score_B,i with mean delta and
    standard deviation sigma: a two-sided test at level alpha with the given power needs
        n = ((z_{1-alpha/2} + z_{power}) * sigma / delta) ** 2
    (1.96 + 0.84 = 2.80 for alpha 0.05 and power 0.8, so n = 7.85 * sigma^2 / delta^2).
    None when the two systems agree on average (delta = 0): no number of examples separates them.
    """
    from scipy.stats import norm

    d = np.asarray(diffs, dtype=float)
    if len(d) < 2 or d.mean() == 0:
        return None
    sigma = d.std(ddof=1)
    z = norm.ppf(1 - alpha / 2) + norm.ppf(power)
    return int(np.ceil((z * sigma / abs(d.mean())) ** 2))
