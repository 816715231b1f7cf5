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
from tunewise.evaluation.baselines import is_baseline
from tunewise.evaluation.compare import calibration, compare_to_best, pairwise_pvalues, separation, versus_baselines
from tunewise.report import diagnose, pilot_verdict
from tunewise.report.cost_model import StrategyCost, break_evens, pareto_front, strategy_cost
from tunewise.report.recommend import Recommendation, TrivialCheck, recommend
from tunewise.report.seeds import seed_spread
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
    labels: list[str] = field(default_factory=list)  # classification: the task's label set
    label_names: dict[str, str] = field(default_factory=dict)  # stored label -> name shown to models
    metric_reason: str | None = None  # why the primary metric decided (metrics.choose_primary)
    baselines: dict[str, str] = field(default_factory=dict)  # trivial baseline id -> what it does
    trivial: dict[str, dict[str, Any]] = field(default_factory=dict)  # compare.versus_baselines()
    per_class: list[dict[str, Any]] = field(default_factory=list)  # diagnose.per_class_truth() of the leaders
    spread: dict[str, dict[str, Any]] = field(default_factory=dict)  # seeds.seed_spread(): across `seeds: N`

    @property
    def done(self) -> list[dict[str, Any]]:
        return [r for r in self.results if r["status"] == "done"]

    @property
    def candidates(self) -> list[str]:
        """Finished strategies, best first on the primary metric; the trivial baselines left out."""
        return [c["strategy"] for c in self.comparison if c["strategy"] not in self.baselines]

    def model_of(self, result: dict[str, Any]) -> str | None:
        return _backend_model(result, self.run["config"])

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
        spread = seed_spread(store.results(run["id"]), run["config"].get("seed", 0))  # the other seeds' cells
        pilot = pilot_verdict.load_pilot(run_dir)
        cells = {r["strategy"]: r for r in store.results(run["id"])} if pilot else {}  # the pilot's sized cells
    finally:
        store.close()
    config = run["config"]
    prices, constraints = _sections(config, settings or {}, "report settings")
    metric = done[0]["metrics"]["primary"] if done else "accuracy"
    a = Analysis(run_dir=run_dir, run=run, results=results, predictions=predictions,
                 train_logs={k: v for k, v in logs.items() if v}, kind=_kind(run_dir, metric), metric=metric,
                 n_test=max((r["metrics"].get("n", 0) for r in done), default=0), prices=prices,
                 constraints=constraints, labels=_labels(run_dir, done), label_names=_label_names(run_dir),
                 metric_reason=done[0]["metrics"].get("primary_reason") if done else None,
                 baselines={r["strategy"]: (r["cost"].get("details") or {}).get("baseline", r["strategy"])
                            for r in done if is_baseline(r)}, spread=spread)
    seed = config.get("seed", 0) if seed is None else seed
    on = {"metric": metric, "labels": a.labels}
    a.comparison = compare_to_best(predictions, a.kind, seed=seed, **on)
    a.pvalues = pairwise_pvalues(predictions, a.kind, seed=seed, **on)
    a.trivial = versus_baselines(predictions, list(a.baselines), a.kind, seed=seed, **on)
    a.calibration = {s: calibration(rows) for s, rows in predictions.items()}
    gpu = bool(run.get("environment", {}).get("cuda"))
    a.costs = [strategy_cost(r, _backend_model(r, config), prices, gpu) for r in done if not is_baseline(r)]
    predicted = pilot_verdict.predicted_costs(pilot, cells, a.model_of, prices, gpu) if pilot else []
    a.pvalues.update(pilot_verdict.pilot_pvalues(predicted, a.costs))
    a.trivial.update(pilot_verdict.predicted_versus_baselines(predicted, [r for r in done if is_baseline(r)], metric))
    a.costs += predicted
    a.front = pareto_front(a.costs)
    a.break_evens = break_evens(a.costs, a.front)
    sep = None
    if len(a.candidates) > 1:
        first, second = a.candidates[:2]
        sep = {**separation(predictions, first, second, a.kind, **on), "first": first, "second": second}
    curve_file = run_dir / CURVE_FILE
    a.curve = json.loads(curve_file.read_text(encoding="utf-8")) if curve_file.is_file() else None
    details = {r["strategy"]: (r["cost"].get("details") or {}) for r in done}
    best = a.candidates[0] if a.candidates else None
    values = {c["strategy"]: c["mean"] for c in a.comparison if c["strategy"] in a.baselines}
    check = TrivialCheck(a.trivial, a.baselines, diagnose.what_would_help(a, best), values) if a.trivial else None
    a.recommendation = recommend(a.costs, constraints, a.pvalues, a.n_test, metric, details, sep, check, spread,
                                 predicted=pilot_verdict.predicted_phrases(pilot) if pilot else None)
    if pilot:  # the verdict speaks of the full training size
        pilot_verdict.speak_of_full_size(a.recommendation, pilot, a.costs)
    leader = a.recommendation.choice or best
    rival = next((s for s in a.candidates if s != leader), None)
    a.per_class = diagnose.per_class_truth(results, [s for s in (leader, rival) if s])
    return a


def _labels(run_dir: Path, done: list[dict[str, Any]]) -> list[str]:
    splits = run_dir / "splits.json"
    if splits.is_file():
        labels = json.loads(splits.read_text(encoding="utf-8")).get("labels")
        if labels:
            return list(labels)
    return next((list(r["metrics"]["confusion"]["labels"]) for r in done if r["metrics"].get("confusion")), [])


def _label_names(run_dir: Path) -> dict[str, str]:
    splits = run_dir / "splits.json"
    return dict(json.loads(splits.read_text(encoding="utf-8")).get("label_names") or {}) if splits.is_file() else {}


def _kind(run_dir: Path, metric: str) -> str:
    splits = run_dir / "splits.json"
    if splits.is_file():
        kind = json.loads(splits.read_text(encoding="utf-8")).get("kind")
        if kind:
            return kind
    return "generation" if metric in ("exact_match", "token_f1") else "classification"


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
