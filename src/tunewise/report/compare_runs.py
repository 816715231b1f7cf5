"""`tunewise compare RUN_A RUN_B`: the same strategies in two runs side by side, with differences.

When both runs scored the same test examples, each strategy's change is tested on them (paired:
McNemar for classification, bootstrap otherwise), so "B is better" comes with a p-value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table

from tunewise.evaluation.compare import compare_to_best
from tunewise.report import fmt
from tunewise.report.analysis import Analysis, analyze

IGNORED_KEYS = {"output_dir"}


@dataclass
class RunComparison:
    a: Analysis
    b: Analysis
    rows: list[dict[str, Any]] = field(default_factory=list)
    config_changes: list[tuple[str, Any, Any]] = field(default_factory=list)
    same_test_set: bool = False


def _config_changes(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """Changed keys; strategies only in one run are listed once by id, not option by option."""
    sa = {s["id"]: s for s in a.get("strategies", []) if isinstance(s, dict) and "id" in s}
    sb = {s["id"]: s for s in b.get("strategies", []) if isinstance(s, dict) and "id" in s}
    out = [("strategies", "-", f"added {k}") for k in sb if k not in sa]
    out += [("strategies", k, "removed") for k in sa if k not in sb]

    def rest(c: dict[str, Any], keep: dict[str, Any]) -> dict[str, Any]:
        d = {k: v for k, v in c.items() if k not in IGNORED_KEYS and k != "strategies"}
        return fmt.flatten("", {**d, "strategies": {k: v for k, v in keep.items() if k in sa and k in sb}})
    fa, fb = rest(a, sa), rest(b, sb)
    return out + [(k, fa.get(k), fb.get(k)) for k in sorted(set(fa) | set(fb))
                  if fa.get(k) != fb.get(k) and not k.startswith("prices.api.")]


def compare_runs(run_a: str | Path, run_b: str | Path) -> RunComparison:
    a, b = analyze(run_a), analyze(run_b)
    rc = RunComparison(a, b, config_changes=_config_changes(a.run["config"], b.run["config"]))
    ids_a = {s: [r["example_id"] for r in rows] for s, rows in a.predictions.items()}
    ids_b = {s: [r["example_id"] for r in rows] for s, rows in b.predictions.items()}
    first = next(iter(ids_a.values()), None)
    rc.same_test_set = bool(first) and any(set(v) == set(first) for v in ids_b.values())
    names = list(dict.fromkeys([r["strategy"] for r in a.results + b.results if r["family"] != "baseline"]))
    for sid in names:
        ca, cb = a.cost_of(sid), b.cost_of(sid)
        row: dict[str, Any] = {"strategy": sid, "a": ca, "b": cb, "diff": None, "pvalue": None}
        if ca and cb:
            row["diff"] = cb.quality - ca.quality
            if rc.same_test_set and sid in a.predictions and sid in b.predictions:
                pair = compare_to_best({"A": a.predictions[sid], "B": b.predictions[sid]}, a.kind,
                                       seed=a.run["config"].get("seed", 0), metric=a.metric, labels=a.labels)
                row["pvalue"] = pair[1]["pvalue"] if len(pair) > 1 else None
        rc.rows.append(row)
    return rc


def comparison_table(rc: RunComparison) -> Table:
    metric = rc.a.metric
    table = Table(title=f"A = {rc.a.run['id']}   B = {rc.b.run['id']}", title_justify="left")
    for col in ("strategy", f"{metric} A (95% CI)", f"{metric} B (95% CI)", "B - A",
                "paired test" if rc.same_test_set else "test", "cost / 1k queries A → B", "latency A → B",
                "one-off A → B"):
        table.add_column(col, justify="left" if col == "strategy" else "right")
    for row in rc.rows:
        ca, cb = row["a"], row["b"]
        table.add_row(
            row["strategy"], _q(ca), _q(cb),
            f"{100 * row['diff']:+.1f} points" if row["diff"] is not None else "-",
            fmt.pvalue(row["pvalue"]) if row["pvalue"] is not None else
            ("-" if rc.same_test_set else "different test sets"),
            _pair(ca and fmt.money(ca.per_1k_usd), cb and fmt.money(cb.per_1k_usd)),
            _pair(ca and fmt.ms(ca.latency_s), cb and fmt.ms(cb.latency_s)),
            _pair(ca and fmt.money(ca.one_off_usd), cb and fmt.money(cb.one_off_usd)))
    return table


def _q(c) -> str:
    if c is None:
        return "not run / failed"
    return fmt.interval({"value": c.quality, "low": c.quality_low, "high": c.quality_high}).replace("95% CI ", "")


def _pair(x: str | None, y: str | None) -> str:
    return f"{x or '-'} → {y or '-'}"


def summary_lines(rc: RunComparison) -> list[str]:
    """The verdict of each run and what changed between their configs, for under the table."""
    out = [f"A verdict: {rc.a.recommendation.headline if rc.a.recommendation else '-'}",
           f"B verdict: {rc.b.recommendation.headline if rc.b.recommendation else '-'}"]
    if rc.config_changes:
        out.append("config changes (A → B): " + "; ".join(
            f"{k}: {vb}" if k == "strategies" and va == "-" else f"{k}: {va} {vb}" if k == "strategies"
            else f"{k}: {va!r} → {vb!r}" for k, va, vb in rc.config_changes[:20])
                   + (f"; … {len(rc.config_changes) - 20} more" if len(rc.config_changes) > 20 else ""))
    else:
        out.append("config: the same (apart from output_dir)")
    return out
