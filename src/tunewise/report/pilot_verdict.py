"""What a pilot (`tunewise run --pilot`, pilot.py) adds to the verdict: fine-tuning at the full size, predicted.

RUN/pilot.json holds, per fine-tuning strategy, the score its learning curve predicts at the full training
split (with a bootstrap interval). Here those predictions become the strategy's entry in the one verdict
(recommend.py): quality = the prediction; latency and per-query cost as measured at the largest pilot size;
training time scaled linearly from the pilot's largest size to the full size (stated, an estimate). Predicted
scores have no per-example outcomes, so they are compared with others by their intervals (normal
approximation), not by a paired test.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tunewise.evaluation.compare import ALPHA
from tunewise.evaluation.learning_curve import unpaired_pvalue
from tunewise.report import fmt
from tunewise.report.cost_model import StrategyCost, strategy_cost

PILOT_FILE = "pilot.json"


def load_pilot(run_dir: str | Path) -> dict[str, Any] | None:
    path = Path(run_dir) / PILOT_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def predicted_rows(pilot: dict[str, Any]) -> list[dict[str, Any]]:
    """results.json rows of status 'predicted': one per predicted strategy, at the full training size."""
    metric = pilot["metric"]
    return [{"strategy": s, "family": "finetuning", "status": "predicted", "train_size": pilot["full_size"],
             "metrics": {"primary": metric, metric: {k: p[k] for k in ("value", "low", "high")}},
             "prediction": {"method": "inverse power law a - b * n^(-c), percentile bootstrap over test examples",
                            **{k: p[k] for k in ("a", "b", "c", "fits", "cells", "points")},
                            "pilot_sizes": pilot["sizes"], "pilot_seconds": pilot["seconds"]}}
            for s, p in pilot["strategies"].items()]


def predicted_costs(pilot: dict[str, Any], results: dict[str, dict[str, Any]], model_of, prices, gpu: bool
                    ) -> list[StrategyCost]:
    """One StrategyCost per predicted strategy (see the module docstring); `results` by cell id (all cells),
    `model_of(result)` the backend model of a stored result."""
    out = []
    for s, p in pilot["strategies"].items():
        largest = results[p["cells"][-1]]
        scale = pilot["full_size"] / max(p["points"][-1]["size"], 1)
        cost = {**largest["cost"], "train_seconds": (largest["cost"].get("train_seconds") or 0.0) * scale,
                "train_tokens": int((largest["cost"].get("train_tokens") or 0) * scale)}
        metrics = {"primary": pilot["metric"], pilot["metric"]: {k: p[k] for k in ("value", "low", "high")}}
        c = strategy_cost({**largest, "strategy": s, "cost": cost, "metrics": metrics}, model_of(largest), prices, gpu)
        c.notes.append(f"quality predicted at {pilot['full_size']:,} training examples from the pilot; training "
                       f"time scaled from {p['points'][-1]['size']:,} examples")
        out.append(c)
    return out


def pilot_pvalues(predicted: list[StrategyCost], others: list[StrategyCost]) -> dict[tuple[str, str], float]:
    """Both orders of (predicted strategy, any other) -> p from their intervals (unpaired normal approximation)."""
    q = {c.strategy: {"value": c.quality, "low": c.quality_low, "high": c.quality_high} for c in predicted + others}
    out = {}
    for a in predicted:
        for b in predicted + others:
            if a.strategy != b.strategy:
                out[a.strategy, b.strategy] = out[b.strategy, a.strategy] = unpaired_pvalue(q[a.strategy],
                                                                                          q[b.strategy])
    return out


def predicted_phrases(pilot: dict[str, Any]) -> dict[str, str]:
    """strategy -> 'is expected to reach accuracy 91.0% (95% CI 88.0–93.0%) at 8,000 training examples'."""
    metric, n = pilot["metric"], pilot["full_size"]
    return {s: f"is expected to reach {fmt.metric_name(metric)} {fmt.interval(p, metric)} at {n:,} training "
               "examples (predicted by its learning curve from the pilot)" for s, p in pilot["strategies"].items()}


def pilot_sentence(pilot: dict[str, Any], costs: list[StrategyCost]) -> str:
    """'At 8,000 training examples lora is expected to reach 91.0% [88.0, 93.0]; zero-shot stays at 69.0%;
    the pilot cost 6.0 min.' (the best prompting strategy as measured; predictions at the full size)."""
    metric = pilot["metric"]
    parts = [f"{s} is expected to reach {fmt.score(metric, p['value'])} [{fmt.score(metric, p['low'])}, "
             f"{fmt.score(metric, p['high'])}]" for s, p in sorted(pilot["strategies"].items(),
                                                                     key=lambda kv: -kv[1]["value"])]
    prompts = [c for c in costs if c.family == "prompting"]
    if prompts:
        best = max(prompts, key=lambda c: c.quality)
        parts.append(f"{best.strategy} stays at {fmt.score(metric, best.quality)}")
    head = f"At {pilot['full_size']:,} training examples " if pilot["strategies"] else "No learning curve fitted; "
    tail = [f"the pilot cost {fmt.duration(pilot['seconds'])}"]
    tail += [f"{s} has no prediction ({why})" for s, why in pilot.get("unpredicted", {}).items()]
    return head + "; ".join(parts + tail) + "."


def predicted_versus_baselines(predicted: list[StrategyCost], baselines: list[dict[str, Any]], metric: str,
                               alpha: float = ALPHA) -> dict[str, dict[str, Any]]:
    """compare.versus_baselines() for predicted strategies: each against every trivial baseline's stored result
    (in the order given), by their intervals (unpaired normal approximation) instead of a paired test."""
    out = {}
    for c in predicted:
        q, verdict = {"value": c.quality, "low": c.quality_low, "high": c.quality_high}, None
        for b in baselines:
            bq = b["metrics"][metric]
            p = unpaired_pvalue(q, bq)
            verdict = {"beats": c.quality > bq["value"] and p < alpha, "baseline": b["strategy"], "value": c.quality,
                       "baseline_value": bq["value"], "pvalue": p, "method": "unpaired normal approximation"}
            if not verdict["beats"]:
                break
        if verdict:
            out[c.strategy] = verdict
    return out


def speak_of_full_size(rec, pilot: dict[str, Any], costs: list[StrategyCost]) -> None:
    """Open the recommendation's reasons with the pilot's sentence and say in a caveat how it was predicted."""
    rec.reasons.insert(0, pilot_sentence(pilot, costs))
    rec.caveats.append(f"Fine-tuning scores at {pilot['full_size']:,} training examples are predicted from a pilot at "
                       f"{', '.join(map(str, pilot['sizes']))} examples (inverse power law, bootstrap interval), not "
                       "measured; they are compared with other strategies by their intervals, not by a paired test.")
