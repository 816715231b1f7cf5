"""Percentile bootstrap intervals over examples (seeded, so a report is reproducible)."""

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
