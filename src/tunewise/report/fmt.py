"""Number formatting for people: money, counts, percentages and durations, always with their unit."""

from __future__ import annotations

import math
from typing import Any


def money(usd: float | None) -> str:
    """$1,234 / $12.34 / $0.23 / $0.00042 (two significant digits below a cent) / under $0.0001 / $0."""
    if usd is None or (isinstance(usd, float) and math.isnan(usd)):
        return "-"
    if usd == 0:
        return "$0"
    if abs(usd) >= 100:
        return f"${usd:,.0f}"
    if abs(usd) >= 0.01:
        return f"${usd:,.2f}"
    return f"${usd:.2g}" if abs(usd) >= 1e-4 else "under $0.0001"


def count(n: float | None) -> str:
    """A query count rounded to two significant digits: 41,000 / 1.2 million / 830."""
    if n is None or math.isinf(n) or math.isnan(n):
        return "-"
    if n < 100:
        return f"{n:,.0f}"
    digits = int(math.floor(math.log10(n))) - 1
    rounded = round(n, -digits)
    if rounded >= 1e9:
        return f"{rounded / 1e9:.2g} billion"
    if rounded >= 1e6:
        return f"{rounded / 1e6:.2g} million"
    return f"{rounded:,.0f}"


def pct(x: float | None, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{100 * x:.{digits}f}%"


METRIC_NAMES = {"accuracy": "accuracy", "macro_f1": "macro-F1", "balanced_accuracy": "balanced accuracy",
                "mcc": "MCC", "exact_match": "exact match", "token_f1": "token F1"}
COEFFICIENTS = {"mcc"}  # metrics in [-1, 1] shown as a coefficient (0.42), not a percentage


def metric_name(metric: str) -> str:
    return METRIC_NAMES.get(metric, metric)


def score(metric: str | None, x: float | None) -> str:
    """A metric's value: a percentage, or a coefficient for MCC."""
    if metric in COEFFICIENTS and x is not None and not (isinstance(x, float) and math.isnan(x)):
        return f"{x:.3f}"
    return pct(x)


def interval(m: dict[str, float] | None, metric: str | None = None) -> str:
    """'86.1% (95% CI 80.6–91.7%)' for a metric dict with value, low and high ('0.412 (95% CI 0.301–0.520)'
    for MCC)."""
    if not m:
        return "-"
    return f"{score(metric, m['value'])} (95% CI {score(metric, m['low'])}–{score(metric, m['high'])})"


def short_interval(m: dict[str, float] | None, metric: str | None = None) -> str:
    """'86.1% (80.6–91.7)': for table cells whose header says '(95% CI)'; '0.412 (0.301–0.520)' for MCC."""
    if not m:
        return "-"
    if metric in COEFFICIENTS:
        return f"{m['value']:.3f} ({m['low']:.3f}–{m['high']:.3f})"
    return f"{pct(m['value'])} ({100 * m['low']:.1f}–{100 * m['high']:.1f})"


def ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    value = 1000 * seconds
    return f"{value:.1f} ms" if value < 100 else f"{value:,.0f} ms"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def pvalue(p: float | None) -> str:
    if p is None:
        return "-"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def flatten(prefix: str, value: Any) -> dict[str, Any]:
    """Nested config as dotted keys (`lora.rank`); a list of dicts with an `id` is keyed by those ids."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(flatten(f"{prefix}.{k}" if prefix else str(k), v))
        return out
    if isinstance(value, list) and all(isinstance(v, dict) and "id" in v for v in value):
        return flatten(prefix, {v["id"]: {k: x for k, x in v.items() if k != "id"} for v in value})
    return {prefix: value}
