"""The spread of each strategy's primary metric across seeds (`seeds: N` / `--seeds N`).

A run with N seeds stores, beside each strategy's own result (the run's seed, id = strategy id), the cells
`<id>@seed=<s>` at the full training split. Their primary metric, as a share (0.85 = 85%, or a coefficient
such as MCC), gives the spread across seeds: mean, sample standard deviation (n - 1 in the denominator) and
range. The leaderboard and report show it beside each interval; the verdict (recommend.py) does not call a
strategy the winner when its seeds disagree by more than its lead over the next.
"""

from __future__ import annotations

import statistics
from typing import Any

from tunewise.evaluation.baselines import is_baseline
from tunewise.report import fmt


def seed_spread(results: list[dict[str, Any]], run_seed: int) -> dict[str, dict[str, Any]]:
    """For each strategy with 2 or more finished seed cells at the full training split: {"metric", "n",
    "seeds", "values", "mean", "std", "min", "max", "range"} of its primary metric (values in the metric's
    unit: a share for accuracy-like metrics). `results` are the store's rows (`Store.results`); the strategy's
    own row is the one at `run_seed` whose id has no '@'."""
    done = {r["strategy"]: r for r in results if r["status"] == "done" and r.get("train_size") is None}
    out: dict[str, dict[str, Any]] = {}
    for sid, own in done.items():
        if is_baseline(own) or own.get("seed") not in (None, run_seed) or "@" in sid:
            continue
        metric = own["metrics"]["primary"]
        cells = [own] + [r for r in done.values() if r["strategy"] == f"{sid}@seed={r.get('seed')}"]
        cells.sort(key=lambda r: r.get("seed") or 0)
        values = [float(r["metrics"][metric]["value"]) for r in cells if metric in r["metrics"]]
        if len(values) < 2:
            continue
        out[sid] = {"metric": metric, "n": len(values), "seeds": [r.get("seed") for r in cells],
                    "values": values, "mean": statistics.fmean(values), "std": statistics.stdev(values),
                    "min": min(values), "max": max(values), "range": max(values) - min(values)}
    return out


def spread_text(spread: dict[str, Any] | None) -> str:
    """'81.2% ± 1.3 pts (3 seeds)' (a coefficient: '0.412 ± 0.021 (3 seeds)'); '' without a spread."""
    if not spread:
        return ""
    metric, n = spread["metric"], spread["n"]
    if metric in fmt.COEFFICIENTS:
        return f"{spread['mean']:.3f} ± {spread['std']:.3f} ({n} seeds)"
    return f"{100 * spread['mean']:.1f}% ± {100 * spread['std']:.1f} pts ({n} seeds)"


def points(metric: str, x: float) -> str:
    """A difference of the metric: percentage points for a share, the coefficient's own units otherwise."""
    return f"{x:.3f}" if metric in fmt.COEFFICIENTS else f"{100 * x:.1f} points"


def seed_doubt(leader: Any, feasible: list[Any], spread: dict[str, dict[str, Any]] | None) -> dict[str, Any] | None:
    """When the leader's seeds disagree (range of its primary metric across seeds) by more than its lead over the
    next feasible strategy, {"leader", "next", "gap", "range", "n", "within"}: `within` are the strategies
    (StrategyCost) inside the leader's seed range, all of which a rerun at another seed could put first. None
    when there is no next strategy, no spread for the leader, or its seeds agree to within the gap."""
    s = (spread or {}).get(leader.strategy)
    others = sorted((c for c in feasible if c is not leader), key=lambda c: -c.quality)
    if not s or not others:
        return None
    gap = leader.quality - others[0].quality
    if s["range"] <= gap:
        return None
    within = [leader] + [c for c in others if c.quality >= leader.quality - s["range"]]
    return {"leader": leader.strategy, "next": others[0].strategy, "gap": gap, "range": s["range"], "n": s["n"],
            "metric": s["metric"], "within": within}


def doubt_headline(doubt: dict[str, Any], choice: Any) -> str:
    """The verdict's sentence when the seeds decide nothing: the leader is not called the winner."""
    kind = "prompt engineering" if choice.family == "prompting" else "fine-tuning"
    metric = doubt["metric"]
    return (f"No winner on quality: {doubt['leader']} leads {doubt['next']} by {points(metric, doubt['gap'])}, but "
            f"its {doubt['n']} seeds disagree by {points(metric, doubt['range'])} (range of "
            f"{fmt.metric_name(metric)} across seeds), so another seed could change the order. Use {choice.strategy} "
            f"({kind}): the cheapest at your volume of the {len(doubt['within'])} strategies within that spread.")


def doubt_reason(doubt: dict[str, Any], leader_quality: float) -> str:
    """Why a strategy other than the leader is named although the leader scores higher at the run's seed."""
    metric = doubt["metric"]
    return (f"{doubt['leader']} scores {fmt.score(metric, leader_quality)} at the run's seed, but across its "
            f"{doubt['n']} seeds it ranges over {points(metric, doubt['range'])}, more than its lead.")
