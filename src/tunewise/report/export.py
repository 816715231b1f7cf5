"""Machine-readable exports of an analysed run: RUN/results.csv and, optionally, MLflow runs."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from tunewise.errors import UserError
from tunewise.evaluation.metrics import companions
from tunewise.report import fmt
from tunewise.report.analysis import Analysis
from tunewise.report.cost_model import StrategyCost
from tunewise.report.diagnose import collapsed

CSV_FILE = "results.csv"
CSV_COLUMNS = [
    "strategy", "name", "family", "status", "metric", "value", "low", "high", "second_metric", "second_value",
    "vs_best_diff", "vs_best_pvalue", "vs_best_test", "tied_with_best", "ece", "pareto", "recommended",
    "one_off_usd", "per_1k_queries_usd", "monthly_usd", "latency_ms", "latency_from", "train_seconds",
    "trainable_params", "total_params", "prompt_tokens_per_example", "completion_tokens_per_example", "peak_rss_mb",
    "artifact_mb",
    "priced_as", "n_test", "beats_baselines", "collapsed", "error",
]


def rows(a: Analysis) -> list[dict[str, Any]]:
    """One flat row per strategy: what results.csv and the MLflow metrics hold."""
    out = []
    for r in a.results:
        row: dict[str, Any] = {"strategy": r["strategy"], "name": r["name"], "family": r["family"],
                               "status": r["status"], "error": r.get("error") or ""}
        if r["status"] == "done":
            m, c = r["metrics"], r["cost"]
            cost, cmp, cal = a.cost_of(r["strategy"]), a.compared(r["strategy"]) or {}, a.calibration.get(r["strategy"])
            second = (companions(m) or ["token_f1"])[0]
            if cost is None:  # a trivial baseline: free, and no model behind it
                cost = StrategyCost(r["strategy"], r["family"], 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, "free (trivial baseline)")
            row.update({
                "metric": m["primary"], **{k: m[m["primary"]][k] for k in ("value", "low", "high")},
                "second_metric": second, "second_value": m.get(second, {}).get("value"),
                "vs_best_diff": cmp.get("diff"), "vs_best_pvalue": cmp.get("pvalue"),
                "vs_best_test": cmp.get("method") or "", "tied_with_best": cmp.get("tied"),
                "ece": cal["ece"] if cal else None, "pareto": r["strategy"] in a.front,
                "recommended": bool(a.recommendation and a.recommendation.choice == r["strategy"]),
                "one_off_usd": cost.one_off_usd, "per_1k_queries_usd": cost.per_1k_usd,
                "monthly_usd": cost.monthly(a.constraints.monthly_queries, a.constraints.horizon_months),
                "latency_ms": 1000 * cost.latency_s, "latency_from": cost.latency_from,
                "train_seconds": cost.train_seconds,
                "priced_as": cost.priced_as, "n_test": m.get("n"),
                "beats_baselines": (a.trivial.get(r["strategy"]) or {}).get("beats"), "collapsed": bool(collapsed(r)),
                **{k: c.get(k) for k in ("trainable_params", "total_params", "prompt_tokens_per_example",
                                         "completion_tokens_per_example", "peak_rss_mb", "artifact_mb")},
            })
        out.append(row)
    return out


def write_csv(a: Analysis) -> Path:
    path = a.run_dir / CSV_FILE
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows(a):
            writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return path


def log_mlflow(a: Analysis, uri: str | None, artifacts: list[Path]) -> str:
    """One parent MLflow run for the tunewise run (params, verdict, report files) and one nested run per
    strategy (its options as params, quality and cost as metrics). Returns the parent run's id."""
    try:
        import mlflow
    except ImportError:
        raise UserError("--mlflow needs MLflow: pip install 'tunewise[mlflow]'") from None
    try:
        return _log(mlflow, a, uri, artifacts)
    except mlflow.exceptions.MlflowException as err:  # bad URI, unreachable server, file store refused
        raise UserError(f"--mlflow: {str(err).splitlines()[0]}") from None


def _log(mlflow, a: Analysis, uri: str | None, artifacts: list[Path]) -> str:
    if uri:
        mlflow.set_tracking_uri(uri)
    config = a.run["config"]
    mlflow.set_experiment(f"tunewise-{a.run['id'].split('-', 2)[-1]}")
    numeric = ("value", "low", "high", "second_value", "vs_best_pvalue", "ece", "one_off_usd", "per_1k_queries_usd",
               "monthly_usd", "latency_ms", "train_seconds", "trainable_params", "peak_rss_mb", "artifact_mb")
    with mlflow.start_run(run_name=a.run["id"]) as parent:
        shared = {k: v for k, v in config.items() if k not in ("strategies", "prices")}
        params = {k: v for k, v in fmt.flatten("", shared).items() if v is not None}
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        mlflow.set_tags({"tunewise.run_dir": str(a.run_dir), "tunewise.recommended":
                         (a.recommendation.choice or "none") if a.recommendation else "none"})
        for path in artifacts:
            mlflow.log_artifact(str(path))
        by_id = {s["id"]: s for s in config.get("strategies", [])}
        for row in rows(a):
            with mlflow.start_run(run_name=row["strategy"], nested=True):
                mlflow.log_params({k: str(v)[:500] for k, v in fmt.flatten("", by_id.get(row["strategy"], {})).items()})
                mlflow.set_tags({"family": row["family"], "status": row["status"]})
                mlflow.log_metrics({k: float(row[k]) for k in numeric if row.get(k) is not None})
        return parent.info.run_id
