"""The report's charts, built from an Analysis: Pareto front, break-even, training losses, data efficiency."""

from __future__ import annotations

from typing import Any

from tunewise.report import fmt
from tunewise.report.analysis import Analysis
from tunewise.report.charts import Mark, Series, axis_for, chart, colors

FAINT = "#9aa5b1"


def compact(n: float) -> str:
    """Axis labels for query counts: 0, 500, 20k, 1.5M."""
    if n >= 1e9:
        return f"{n / 1e9:g}B"
    if n >= 1e6:
        return f"{n / 1e6:g}M"
    if n >= 1e3:
        return f"{n / 1e3:g}k"
    return f"{n:g}"


def palette(a: Analysis) -> dict[str, str]:
    names = [r["strategy"] for r in a.results]
    return colors(names + [c.strategy for c in a.costs if c.strategy not in names])  # + a pilot's predicted ones


def pareto(a: Analysis) -> str | None:
    """Quality against cost per 1,000 queries, one point per strategy with its 95% interval."""
    if not a.costs:
        return None
    col, chosen = palette(a), a.recommendation.choice if a.recommendation else None
    xs = [c.per_1k_usd for c in a.costs]
    positive = [v for v in xs if v > 0]
    log = bool(positive) and len(positive) == len(xs) and max(positive) / min(positive) > 20
    x = axis_for(xs, log=log, zero=not log, fmt=fmt.money)
    y = axis_for([v for c in a.costs for v in (c.quality_low, c.quality_high)], fmt=lambda v: f"{100 * v:g}%")
    series = [Series(c.strategy, [(c.per_1k_usd, c.quality)], col[c.strategy], line=False,
                     errors=[(c.quality_low, c.quality_high)], hollow=c.strategy not in a.front,
                     labels=[c.strategy + (" (recommended)" if c.strategy == chosen else "")]) for c in a.costs]
    marks = [Mark(c.per_1k_usd, c.quality, "", col[c.strategy]) for c in a.costs if c.strategy == chosen]
    return chart(series, x, y, "cost per 1,000 queries (USD" + (", log scale)" if log else ")"),
                 f"{a.metric} (95% CI)", "Quality against cost per query", marks=marks, legend=False)


def break_even(a: Analysis) -> str | None:
    """Total cost (one-off + queries × cost per query) against the number of queries served."""
    shown = [c for c in a.costs if c.strategy in a.front] or a.costs
    if len(shown) < 2 and not a.break_evens:
        shown = a.costs
    if not shown:
        return None
    k = a.constraints
    volume = k.monthly_queries * k.horizon_months
    crossings = [b["queries"] for b in a.break_evens]
    span = max(volume, *(1.3 * q for q in crossings), 0) or 10_000
    if volume and span > 20 * volume:  # a far-off crossing would flatten the part the user cares about
        span = max(20 * volume, min(1.3 * q for q in crossings))
    col = palette(a)
    ends = [v for c in shown for v in (c.one_off_usd, c.total(span)) if v > 0]
    # Log-log when costs differ by orders of magnitude: each line is then flat at its one-off cost and turns
    # upward once queries dominate, so every crossing stays visible instead of being squashed at zero.
    log = bool(ends) and max(ends) / min(ends) > 100
    xs = [span * 10 ** (-4 + 4 * i / 48) for i in range(49)] if log else [0, span]
    floor = max(ends) / 1e5 if log else 0
    series = [Series(c.strategy, [(q, max(c.total(q), floor)) for q in xs], col[c.strategy], markers=False)
              for c in shown]
    x = axis_for(xs, log=log, zero=not log, pad=0, fmt=compact)
    y = axis_for([p[1] for s in series for p in s.points], log=log, zero=not log, fmt=fmt.money)
    by = {c.strategy: c for c in shown}
    marks = [Mark(b["queries"], by[b["pays_off"]].total(b["queries"]), fmt.count(b["queries"]))
             for b in a.break_evens if b["queries"] <= span and b["pays_off"] in by and b["versus"] in by]
    label = f"{k.horizon_months} months at {compact(k.monthly_queries)}/month"
    vlines = [(volume, label)] if 0 < volume <= span else []
    scale = " (log scale)" if log else ""
    return chart(series, x, y, "queries served" + scale, "total cost (USD" + (", log scale)" if log else ")"),
                 "Total cost against queries served", marks=marks, vlines=vlines)


def losses(a: Analysis) -> dict[str, str]:
    """One small chart per trained strategy: training loss, and validation loss when it was logged."""
    out, col = {}, palette(a)
    for sid, log in a.train_logs.items():
        key = "epoch" if all("epoch" in r for r in log) else "step"
        train = [(r[key], r["loss"]) for r in log if "loss" in r]
        evals = [(r[key], r["eval_loss"]) for r in log if "eval_loss" in r]
        if not train and not evals:
            continue
        series = [Series("training loss", train, col.get(sid, "#4e79a7"), markers=len(train) < 3)]
        if evals:
            series.append(Series("validation loss", evals, "#333", dashed=True))
        pts = train + evals
        x = axis_for([p[0] for p in pts], pad=0.02)
        y = axis_for([p[1] for p in pts], zero=True)
        out[sid] = chart(series, x, y, key, "loss", f"Training loss of {sid}", width=420, height=260)
    return out


def curve(a: Analysis) -> str | None:
    """Quality against training examples for fine-tuning; prompting strategies and trivial baselines as
    horizontal lines."""
    c: dict[str, Any] | None = a.curve
    if not c or not c.get("points"):
        return None
    col = palette(a)
    by: dict[str, list[dict[str, Any]]] = {}
    for p in sorted(c["points"], key=lambda p: p["train_examples"]):
        by.setdefault(p["strategy"], []).append(p)
    sizes = [p["train_examples"] for p in c["points"]]
    lo_x, hi_x = min(sizes), max(sizes)
    series = [Series(s, [(p["train_examples"], p["value"]) for p in pts], col.get(s, "#4e79a7"),
                     errors=[(p["low"], p["high"]) for p in pts]) for s, pts in by.items()]
    for b in c.get("baselines", []):
        name = f"{b['strategy']} ({b.get('family', 'prompting')})"
        series.append(Series(name, [(lo_x, b["value"]), (hi_x, b["value"])],
                             col.get(b["strategy"], FAINT), markers=False, dashed=True))
    values = [v for p in c["points"] for v in (p["low"], p["high"])] + [b["value"] for b in c.get("baselines", [])]
    x = axis_for(sizes, log=hi_x / max(lo_x, 1) > 8, pad=0.05)
    y = axis_for(values, fmt=lambda v: f"{100 * v:g}%")
    return chart(series, x, y, "training examples" + (" (log scale)" if x.log else ""),
                 f"{c.get('metric', a.metric)} (95% CI)", "Quality against training examples", width=800, height=380)
