"""`tunewise report RUN`: one self-contained HTML file (inline CSS, JS and SVG; no network) plus results.csv.

The page opens with the verdict, then the sortable leaderboard, the charts, training curves, confusion
matrices, the examples on which strategies disagree, and the setup (config, environment, prices).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from jinja2 import Environment, FileSystemLoader, select_autoescape

from tunewise.evaluation.metrics import companions
from tunewise.prices import PRICES_AS_OF, api_price
from tunewise.report import figures, fmt
from tunewise.report.analysis import Analysis, analyze, disagreements, load_settings
from tunewise.report.cost_model import BATCHED
from tunewise.report.diagnose import collapse_text, collapsed
from tunewise.report.recommend import forgetting_text
from tunewise.report.seeds import spread_text
from tunewise.report.selection import budget_line, selections

TEMPLATES = Path(__file__).parent / "templates"
REPORT_FILE = "report.html"
NBSP = "\u00a0"


@dataclass
class ReportFiles:
    html: Path
    csv: Path
    analysis: Analysis
    mlflow_run: str | None = None


def build_report(run_dir: str | Path, settings: str | Path | None = None,
                 mlflow_uri: str | None = None, log_mlflow: bool = False) -> ReportFiles:
    """Write RUN/report.html and RUN/results.csv (and log to MLflow when asked); return their paths."""
    from tunewise.report.export import log_mlflow as to_mlflow
    from tunewise.report.export import write_csv

    a = analyze(run_dir, load_settings(settings))
    html = a.run_dir / REPORT_FILE
    html.write_text(render(a), encoding="utf-8")
    files = ReportFiles(html=html, csv=write_csv(a), analysis=a)
    if log_mlflow or mlflow_uri:
        files.mlflow_run = to_mlflow(a, mlflow_uri, [html, files.csv])
    return files


def render(a: Analysis) -> str:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True),
                      trim_blocks=True, lstrip_blocks=True)
    return env.get_template("report.html.j2").render(**context(a))


def context(a: Analysis) -> dict[str, Any]:
    from tunewise import __version__

    rec, k = a.recommendation, a.constraints
    rows, total = disagreements(a)
    return {
        "version": __version__, "run": a.run,
        "task": a.run["config"].get("task", {}).get("name") or a.run["id"].split("-", 2)[-1],
        "created": time.strftime("%Y-%m-%d %H:%M", time.localtime(a.run["created_at"])),
        "generated": time.strftime("%Y-%m-%d %H:%M"), "run_dir": str(a.run_dir), "n_test": a.n_test,
        "n_done": len(a.done), "n_total": len(a.results), "rec": rec,
        "constraint_summary": _constraints(k, a.metric),
        "metric_name": fmt.metric_name(a.metric), "metric_reason": a.metric_reason,
        "baselines": [(sid, text) for sid, text in a.baselines.items()],
        "collapsed": [collapse_text(r["strategy"], rec_) for r in a.done if (rec_ := collapsed(r))],
        "per_class": a.per_class, "label": lambda x: f"{a.label_names[x]} ({x})" if x in a.label_names else x,
        "test_name": "McNemar's test" if a.kind == "classification" else "paired bootstrap",
        "columns": COLUMNS(a), "rows": [_row(a, r) for r in _ordered(a)],
        "pareto_svg": figures.pareto(a), "breakeven_svg": figures.break_even(a),
        "break_evens": [b["sentence"] for b in a.break_evens], "curve_svg": figures.curve(a),
        "forgetting": [(r["strategy"], forgetting_text(r["cost"]["details"]["forgetting"])) for r in a.done
                       if (r["cost"].get("details") or {}).get("forgetting")],
        "truncated": truncated_inputs(a.done, a.n_test),
        "selection_budget": budget_line(a.run["config"]), "selections": selections(a.done),
        "losses": figures.losses(a), "confusions": [_confusion(r) for r in a.done if r["metrics"].get("confusion")],
        "disagreements": rows, "disagreement_total": total, "strategy_names": list(a.predictions),
        "environment": _environment(a), "prices": _prices(a),
        "config_yaml": yaml.safe_dump(_display_config(a.run["config"]), sort_keys=False, allow_unicode=True),
    }


def _second(a: Analysis) -> str:
    """The metric shown beside the primary one (metrics.companions)."""
    done = a.done
    beside = companions(done[0]["metrics"]) if done else []
    return beside[0] if beside else ("macro_f1" if a.kind == "classification" else "token_f1")


def truncated_inputs(done: list[dict[str, Any]], n_test: int) -> list[tuple[str, str]]:
    """(strategy, 'N of M test inputs' [+ training examples]) for each strategy that cut any input."""
    out = []
    for r in done:
        details = r["cost"].get("details") or {}
        parts = [f"{details['truncated_inputs']} of {n_test} test inputs"] if details.get("truncated_inputs") else []
        if details.get("truncated_train_examples"):
            parts.append(f"{details['truncated_train_examples']} training examples")
        if parts:
            out.append((r["strategy"], " and ".join(parts)))
    return out


def COLUMNS(a: Analysis) -> list[dict[str, str]]:  # noqa: N802 - reads as a table definition
    second = fmt.metric_name(_second(a))
    unit = "" if a.metric in fmt.COEFFICIENTS else ", %"
    cols = [("strategy", "text"), (f"{fmt.metric_name(a.metric)} (95% CI{unit})", "number"),
            ("vs best (points, p)", "number"), (second, "number"), ("calibration error (ECE)", "number"),
            ("one-off cost", "number"), ("cost per 1,000 queries", "number"),
            (f"cost per month ({fmt.count(a.constraints.monthly_queries)} queries)", "number"),
            ("latency per query", "number"), ("train time", "number"), ("trainable params", "number"),
            ("peak memory", "number"), ("artifact size", "number")]
    return [{"label": label, "type": kind} for label, kind in cols]


def _ordered(a: Analysis) -> list[dict[str, Any]]:
    rank = {c["strategy"]: i for i, c in enumerate(a.comparison)}
    return sorted(a.results, key=lambda r: (r["status"] != "done", rank.get(r["strategy"], 1e9)))


def _cell(text: Any, sort: Any = None, cls: str = "", badges: list | None = None, swatch: str | None = None,
          title: str | None = None, sub: str | None = None):
    return {"text": text, "sort": sort, "cls": cls, "badges": badges or [], "swatch": swatch, "title": title,
            "sub": sub}


def _row(a: Analysis, r: dict[str, Any]) -> dict[str, Any]:
    sid, col = r["strategy"], figures.palette(a)
    chosen = a.recommendation and a.recommendation.choice == sid
    if r["status"] != "done":
        cells = [_cell(sid, sid, "name", swatch=col[sid], sub=r["family"]),
                 _cell(f"{r['status']}: {(r.get('error') or '')[:120]}", "", "muted")]
        cells += [_cell("", "") for _ in range(len(COLUMNS(a)) - 2)]
        return {"strategy": sid, "cls": "failed", "cells": cells}
    m, c, cost, cmp = r["metrics"], r["cost"], a.cost_of(sid), a.compared(sid) or {}
    second_name = _second(a)
    second = m.get(second_name)
    if cost is None:  # a trivial baseline: no cost, never recommended
        return _baseline_row(a, r, vs_best(cmp), second, second_name)
    badges = ([{"text": "recommended", "cls": "rec"}] if chosen else []) + \
        ([{"text": "Pareto", "cls": ""}] if sid in a.front else []) + \
        ([{"text": "collapsed", "cls": "collapsed"}] if collapsed(r) else []) + \
        ([{"text": "no better than baseline", "cls": "weak"}] if (a.trivial.get(sid) or {}).get("beats") is False
         else [])
    vs = vs_best(cmp)
    cal = a.calibration.get(sid)
    params = c.get("trainable_params") or 0
    monthly = cost.monthly(a.constraints.monthly_queries, a.constraints.horizon_months)
    return {"strategy": sid, "cls": "recommended" if chosen else "", "cells": [
        _cell(sid, sid, "name", badges=badges, swatch=col[sid], sub=r["family"]),
        _cell(fmt.short_interval(m[m["primary"]], m["primary"]), m[m["primary"]]["value"], "num",
              sub=spread_text(a.spread.get(sid)) or None, title=a.spread.get(sid) and "across seeds: mean ± std"),
        vs,
        _second_cell(second, second_name),
        _cell(f"{cal['ece']:.3f}" if cal else "-", cal["ece"] if cal else "", "num"),
        _cell(fmt.money(cost.one_off_usd), cost.one_off_usd, "num"),
        _cell(fmt.money(cost.per_1k_usd), cost.per_1k_usd, "num"),
        _cell(fmt.money(monthly), monthly, "num"),
        _cell(f"{1000 * cost.latency_s:,.1f} ms", 1000 * cost.latency_s, "num", title=f"from {cost.latency_from}",
              sub="serving" if cost.latency_from != BATCHED else "batched"),
        _cell(fmt.duration(cost.train_seconds), cost.train_seconds, "num"),
        _cell(_params(params, c.get("trainable_share") or 0), params, "num"),
        _cell(f"{c.get('peak_rss_mb', 0):,.0f} MiB", c.get("peak_rss_mb", 0), "num"),
        _cell(f"{c.get('artifact_mb', 0):,.1f} MiB", c.get("artifact_mb", 0), "num"),
    ]}


def vs_best(cmp: dict[str, Any]) -> dict[str, Any]:
    if cmp.get("is_best"):
        return _cell("best", 0.0)
    p = fmt.pvalue(cmp.get("pvalue")).replace(" ", NBSP)
    return _cell(f"{100 * cmp.get('diff', 0):+.1f} pts, {p}", cmp.get("diff"), "num wrap",
                 [{"text": "tied", "cls": "tied"}] if cmp.get("tied") else [], title=cmp.get("method"))


def _second_cell(second: dict[str, float] | None, name: str) -> dict[str, Any]:
    return _cell(fmt.score(name, second["value"]) if second else "-", second["value"] if second else "", "num",
                 title=f"95% CI {fmt.short_interval(second, name)}" if second else None)


def _baseline_row(a: Analysis, r: dict[str, Any], vs: dict[str, Any], second, second_name: str) -> dict[str, Any]:
    """A trivial baseline: its scores and what it does; it costs nothing and is never recommended."""
    sid, m = r["strategy"], r["metrics"]
    cells = [_cell(sid, sid, "name", badges=[{"text": "baseline", "cls": "baseline"}],
                   swatch=figures.palette(a)[sid], sub=a.baselines.get(sid, "baseline")),
             _cell(fmt.short_interval(m[m["primary"]], m["primary"]), m[m["primary"]]["value"], "num"), vs,
             _second_cell(second, second_name)]
    cells += [_cell("-", 0, "num muted") for _ in range(len(COLUMNS(a)) - len(cells))]  # costs nothing: sorts as 0
    return {"strategy": sid, "cls": "baseline", "cells": cells}


def _params(n: int, share: float) -> str:
    if not n:
        return "0"
    return f"{n / 1e6:,.2f} M ({100 * share:.2f}%)" if n >= 1e4 else f"{n:,} ({100 * share:.3f}%)"


def _confusion(r: dict[str, Any]) -> dict[str, Any]:
    conf = r["metrics"]["confusion"]
    top = max((n for row in conf["matrix"] for n in row), default=1) or 1
    rows = []
    for label, counts in zip(conf["labels"], conf["matrix"], strict=True):
        cells = []
        for j, n in enumerate(counts):
            share = n / top
            hue = "29,122,70" if conf["labels"][j] == label else "180,35,24"  # diagonal green, errors red
            cells.append({"n": n, "bg": f"rgba({hue},{0.08 + 0.8 * share:.2f})" if n else "#fff",
                          "fg": "#fff" if share > 0.55 else "#1f2933"})
        rows.append({"label": label, "cells": cells})
    return {"strategy": r["strategy"], "labels": conf["labels"], "rows": rows}


def _constraints(k, metric: str) -> str:
    parts = [f"{fmt.count(k.monthly_queries)} queries/month"]
    if k.min_quality is not None:
        parts.append(f"{metric} ≥ {fmt.pct(k.min_quality)}")
    if k.max_latency_ms is not None:
        parts.append(f"latency ≤ {k.max_latency_ms:g} ms")
    if k.budget_per_month is not None:
        parts.append(f"budget {fmt.money(k.budget_per_month)}/month")
    parts.append(f"one-off costs spread over {k.horizon_months} months")
    if k.needs_new_knowledge:
        parts.append("needs new knowledge")
    if k.task_changes_often:
        parts.append("task changes often")
    return ", ".join(parts)


def _environment(a: Analysis) -> list[tuple[str, str]]:
    env = dict(a.run.get("environment") or {})
    names = {"cpu_count": "CPU threads", "cuda": "GPU", "device": "device setting"}
    out = [(names.get(key, key), "none (CPU only)" if key == "cuda" and not val else str(val))
           for key, val in env.items()]
    return out + [("model", str(a.run["config"].get("model"))), ("encoder", str(a.run["config"].get("encoder")))]


def _prices(a: Analysis) -> list[tuple[str, str]]:
    p = a.prices
    out = [("GPU", f"{fmt.money(p.gpu_per_hour)}/hour"), ("CPU", f"{fmt.money(p.cpu_per_hour)}/hour"),
           ("electricity", f"{fmt.money(p.electricity_per_kwh)}/kWh (GPU {p.gpu_watts:g} W, CPU {p.cpu_watts:g} W)"
            if p.electricity_per_kwh is not None else "not counted")]
    for model in {a.run["config"].get("model"), a.run["config"].get("encoder")} - {None}:
        found = api_price(model, p.api)
        if found:
            key, price, _ = found
            out.append((f"API {key}", f"{fmt.money(price.input)} in / {fmt.money(price.output)} out per million tokens"
                        + (f"; training {fmt.money(price.training)}/million" if price.training is not None else "")))
    out.append(("price defaults", f"as of {PRICES_AS_OF}; override under prices: in the config"))
    return out


def _display_config(config: dict[str, Any]) -> dict[str, Any]:
    """The resolved config, with the long default API price table shortened to the models it names."""
    shown = dict(config)
    prices = dict(shown.get("prices") or {})
    if "api" in prices:
        used = {str(config.get("model", "")).lower(), str(config.get("encoder", "")).lower()}
        prices["api"] = {k: v for k, v in prices["api"].items() if any(k.lower() in u for u in used)} or \
            f"{len(prices['api'])} dated default entries (none used by this run's models)"
        shown["prices"] = prices
    return shown
