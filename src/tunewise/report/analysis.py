"""Everything the report says about a run, computed once from its store: statistics, costs, verdict.

`analyze(run_dir)` reads the run folder (never trains or scores) and returns an `Analysis` that the HTML
report, results.csv, `tunewise compare` and the MLflow export all render from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tunewise.config import ConstraintsConfig, PricesConfig, Strict, format_validation_error
from tunewise.errors import UserError
from tunewise.evaluation.compare import calibration, compare_to_best, pairwise_pvalues, separation
from tunewise.report.cost_model import StrategyCost, break_evens, pareto_front, strategy_cost
from tunewise.report.recommend import Recommendation, recommend
from tunewise.store import open_run

CURVE_FILE = "curve.json"


class _Settings(Strict):
    prices: PricesConfig
    constraints: ConstraintsConfig


@dataclass
class Analysis:
    run_dir: Path
    run: dict[str, Any]
    results: list[dict[str, Any]]  # every strategy, finished or not, in run order
    predictions: dict[str, list[dict[str, Any]]]  # finished strategies only
    train_logs: dict[str, list[dict[str, Any]]]
    kind: str
    metric: str
    n_test: int
    prices: PricesConfig
    constraints: ConstraintsConfig
    comparison: list[dict[str, Any]] = field(default_factory=list)
    pvalues: dict[tuple[str, str], float] = field(default_factory=dict)
    calibration: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    costs: list[StrategyCost] = field(default_factory=list)
    front: list[str] = field(default_factory=list)
    break_evens: list[dict[str, Any]] = field(default_factory=list)
    recommendation: Recommendation | None = None
    curve: dict[str, Any] | None = None

    @property
    def done(self) -> list[dict[str, Any]]:
        return [r for r in self.results if r["status"] == "done"]

    def cost_of(self, strategy: str) -> StrategyCost | None:
        return next((c for c in self.costs if c.strategy == strategy), None)

    def compared(self, strategy: str) -> dict[str, Any] | None:
        return next((c for c in self.comparison if c["strategy"] == strategy), None)


def load_settings(path: str | Path | None) -> dict[str, Any]:
    """A YAML file with `prices:` and/or `constraints:` sections that override the run's own."""
    if path is None:
        return {}
    import yaml

    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: settings file not found (a YAML file with prices: and/or constraints:)")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise UserError(f"{p}: not valid YAML ({getattr(err, 'problem', None) or err}); fix the syntax") from None
    if not isinstance(data, dict) or set(data) - {"prices", "constraints"}:
        extra = sorted(set(data) - {"prices", "constraints"}) if isinstance(data, dict) else []
        raise UserError(f"{p}: expected only the sections prices: and constraints:"
                        + (f" (found {', '.join(map(str, extra))})" if extra else ""))
    return data


def _sections(config: dict[str, Any], settings: dict[str, Any], source: str
              ) -> tuple[PricesConfig, ConstraintsConfig]:
    prices = dict(config.get("prices") or {})
    override = dict(settings.get("prices") or {})
    if "api" in override:  # add to the run's table rather than replace it
        override["api"] = {**(prices.get("api") or {}), **override["api"]}
    prices.update(override)
    constraints = {**(config.get("constraints") or {}), **(settings.get("constraints") or {})}
    try:  # validated together so that errors name the section: prices.gpu_per_hour, constraints.x
        both = _Settings.model_validate({"prices": prices, "constraints": constraints})
        return both.prices, both.constraints
    except ValidationError as err:
        raise UserError(format_validation_error(err, source)) from None


def _backend_model(result: dict[str, Any], config: dict[str, Any]) -> str | None:
    """The model the result ran on, as the store recorded it; stores written before that column existed
    (migration 002) fall back to the run's causal model."""
    return result.get("backend_model") or config.get("model")


def analyze(run_dir: str | Path, settings: dict[str, Any] | None = None, seed: int | None = None) -> Analysis:
    run_dir = Path(run_dir)
    store, run = open_run(run_dir)
    try:
        results = store.main_results(run["id"])  # the run's own cells; curve cells are in curve.json
        done = [r for r in results if r["status"] == "done"]
        predictions = {r["strategy"]: store.predictions(run["id"], r["strategy"]) for r in done}
        logs = {r["strategy"]: store.train_log(run["id"], r["strategy"]) for r in results}
    finally:
        store.close()
    config = run["config"]
    prices, constraints = _sections(config, settings or {}, "report settings")
    metric = done[0]["metrics"]["primary"] if done else "accuracy"
    a = Analysis(run_dir=run_dir, run=run, results=results, predictions=predictions,
                 train_logs={k: v for k, v in logs.items() if v}, kind=_kind(run_dir, metric), metric=metric,
                 n_test=max((r["metrics"].get("n", 0) for r in done), default=0), prices=prices,
                 constraints=constraints)
    seed = config.get("seed", 0) if seed is None else seed
    a.comparison = compare_to_best(predictions, a.kind, seed=seed)
    a.pvalues = pairwise_pvalues(predictions, a.kind, seed=seed)
    a.calibration = {s: calibration(rows) for s, rows in predictions.items()}
    gpu = bool(run.get("environment", {}).get("cuda"))
    a.costs = [strategy_cost(r, _backend_model(r, config), prices, gpu) for r in done]
    a.front = pareto_front(a.costs)
    a.break_evens = break_evens(a.costs, a.front)
    sep = None
    if len(a.comparison) > 1:
        first, second = a.comparison[0]["strategy"], a.comparison[1]["strategy"]
        sep = {**separation(predictions, first, second), "first": first, "second": second}
    details = {r["strategy"]: (r["cost"].get("details") or {}) for r in done}
    a.recommendation = recommend(a.costs, constraints, a.pvalues, a.n_test, metric, details, sep)
    curve_file = run_dir / CURVE_FILE
    a.curve = json.loads(curve_file.read_text(encoding="utf-8")) if curve_file.is_file() else None
    return a


def _kind(run_dir: Path, metric: str) -> str:
    splits = run_dir / "splits.json"
    if splits.is_file():
        kind = json.loads(splits.read_text(encoding="utf-8")).get("kind")
        if kind:
            return kind
    return "classification" if metric == "accuracy" else "generation"


def disagreements(a: Analysis, limit: int = 100) -> tuple[list[dict[str, Any]], int]:
    """Test examples on which the finished strategies do not all give the same output, in test order."""
    names = list(a.predictions)
    if len(names) < 2:
        return [], 0
    by = {s: {r["example_id"]: r for r in rows} for s, rows in a.predictions.items()}
    rows = []
    for r in a.predictions[names[0]]:
        eid = r["example_id"]
        cells = [by[s].get(eid) for s in names]
        if any(c is None for c in cells) or len({c["output"] for c in cells}) < 2:
            continue
        rows.append({"id": eid, "input": r["input"], "target": r["target"],
                     "outputs": [{"strategy": s, "output": c["output"], "score": c["score"],
                                  "trace": _trace_text(c.get("trace"))} for s, c in zip(names, cells, strict=True)]})
    return rows[:limit], len(rows)


def _trace_text(trace: Any, limit: int = 4000) -> str | None:
    if not trace:
        return None
    text = json.dumps(trace, indent=1, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[:limit] + f"\n… ({len(text) - limit:,} more characters)"
