"""From a pilot to full size: `tunewise run --pilot FRACTION` (or `pilot:` in the config).

Each fine-tuning strategy is trained at SIZES training-set sizes spaced geometrically up to FRACTION x the
training split (cells `<strategy>@n=<size>`, the run's seed and test examples), a learning curve is fitted
per strategy (evaluation/learning_curve.py: inverse power law, paired bootstrap interval) and its score
predicted at the full training split; prompting strategies run once, as they are (their own cells). RUN/
pilot.json holds the predictions (results.json lists them as `predicted` rows, the verdict speaks of the full
size from them) and RUN/curve.json the measured points (the report draws them; `tunewise curve` adds sizes).
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np

from tunewise.errors import UserError
from tunewise.evaluation.compare import Paired
from tunewise.evaluation.label_metrics import SET_METRICS, confusion_stack
from tunewise.evaluation.learning_curve import MIN_SIZES, geometric_sizes, predict_with_interval
from tunewise.progress import console
from tunewise.report.analysis import CURVE_FILE, analyze
from tunewise.report.crossover import crossover_lines
from tunewise.report.pilot_verdict import PILOT_FILE
from tunewise.runs import Executor, Run

SIZES = 4  # training-set sizes per fine-tuning strategy within the pilot
N_BOOT = 200  # bootstrap draws per predicted score


def pilot_sizes(n_train: int, fraction: float, n_labels: int = 0) -> list[int]:
    """SIZES sizes spaced geometrically from max(8, 2 x labels) to fraction x n_train (examples). Raises
    UserError when that range holds fewer than MIN_SIZES distinct sizes (the pilot is too small to fit)."""
    largest = int(fraction * n_train)
    smallest = max(8, 2 * n_labels)
    sizes = geometric_sizes(largest, SIZES, smallest)
    if len(sizes) < MIN_SIZES:
        raise UserError(f"pilot: {fraction:g} of {n_train:,} training examples is {largest:,}, too few for "
                        f"{MIN_SIZES} training sizes from {smallest}; raise --pilot (at most 1) or give more "
                        "training data")
    return sizes


def run_pilot(run: Run, fraction: float, executor: Executor | None = None) -> dict[str, Any]:
    """Run the pilot's cells (prompting once, fine-tuning at each pilot size), fit and predict; write and
    return RUN/pilot.json's content. Raises UserError when the pilot is too small (see pilot_sizes)."""
    task = run.task()
    full = len(task.train)
    sizes = pilot_sizes(full, fraction, len(task.labels) if task.kind == "classification" else 0)
    tuned = [s.id for s in run.config.strategies if run.strategy(s).family == "finetuning"]
    if not tuned:
        raise UserError("--pilot: the run has no fine-tuning strategy to predict at full size; add one "
                        "(such as lora or setfit) or run without --pilot")
    cells = [c for c in run.cells() if c.strategy["id"] not in tuned]
    cells += [run.cell(s, train_size=n) for s in tuned for n in sizes]
    run.prepare(run.strategy(c.strategy) for c in cells)  # fail before anything starts
    console.print(f"[bold]pilot[/] {', '.join(tuned)} at {', '.join(map(str, sizes))} "
                  f"training examples (up to {fraction:g} of {full:,}); predictions at {full:,}")
    start = time.perf_counter()
    run.execute(cells, executor)
    seconds = time.perf_counter() - start
    results = {r["strategy"]: r for r in run.store.results(run.id)}
    done = [r for r in results.values() if r["status"] == "done"]
    metric = done[0]["metrics"]["primary"] if done else "accuracy"
    pilot: dict[str, Any] = {"fraction": fraction, "full_size": full, "sizes": sizes, "metric": metric,
                             "seconds": seconds, "strategies": {}, "unpredicted": {}}
    for s in tuned:
        ids = [run.cell(s, train_size=n).id for n in sizes]
        if any(results.get(i, {}).get("status") != "done" for i in ids):
            pilot["unpredicted"][s] = "a pilot size did not finish"
            continue
        try:
            pilot["strategies"][s] = _predict(run, ids, sizes, full, metric, task.kind, task.labels, results)
        except (ValueError, RuntimeError) as err:
            pilot["unpredicted"][s] = f"the learning curve could not be fitted ({err})"
    (run.dir / PILOT_FILE).write_text(json.dumps(pilot, indent=1), encoding="utf-8")
    _announce(pilot)
    _write_curve(run, pilot, results, tuned)
    rec = analyze(run.dir).recommendation  # the one verdict, speaking of the full size
    console.print(f"[bold]verdict[/] {rec.headline} {rec.reasons[0] if rec.reasons else ''}", soft_wrap=True)
    return pilot


def _predict(run: Run, ids: list[str], sizes: list[int], full: int, metric: str, kind: str, labels: list[str],
             results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    paired = Paired({i: run.store.predictions(run.id, i) for i in ids}, kind, metric, labels)

    def score_at(i: int, idx: np.ndarray) -> float:
        if paired.set_level:
            counts = confusion_stack(paired.y_true[idx], paired.preds[ids[i]][idx], len(paired.labels))
            return float(SET_METRICS[metric](counts)[0])
        return float(paired.scores[ids[i]][idx].mean())

    out = predict_with_interval(sizes, score_at, len(paired.ids), full, n_boot=N_BOOT, seed=run.seed)
    out["cells"] = ids
    out["points"] = [{"size": n, **{k: results[i]["metrics"][metric][k] for k in ("value", "low", "high")}}
                     for n, i in zip(sizes, ids, strict=True)]
    out["train_seconds"] = sum(results[i]["cost"].get("train_seconds") or 0.0 for i in ids)
    return out


def _write_curve(run: Run, pilot: dict[str, Any], results: dict[str, dict[str, Any]], tuned: list[str]) -> None:
    """RUN/curve.json in `tunewise curve`'s format: the pilot's measured points, prompting and baselines as
    references (a later `tunewise curve` keeps these points and adds its sizes)."""
    metric = pilot["metric"]

    def point(r: dict[str, Any]) -> dict[str, Any]:
        q = r["metrics"][metric]
        return {"strategy": r["strategy"].split("@", 1)[0], "value": q["value"], "low": q["low"],
                "high": q["high"], "run": "."}

    points = [{**point(results[run.cell(s, train_size=n).id]), "size": n, "train_examples": n}
              for s in tuned for n in pilot["sizes"] if results.get(run.cell(s, train_size=n).id, {}).get(
                  "status") == "done"]
    refs = [{**point(r), "family": r["family"]} for r in results.values()
            if r["status"] == "done" and "@" not in r["strategy"] and r["family"] in ("prompting", "baseline")]
    curve = {"metric": metric, "run": run.id, "points": points, "baselines": refs}
    (run.dir / CURVE_FILE).write_text(json.dumps(curve, indent=1), encoding="utf-8")
    for line in crossover_lines(curve):  # where fine-tuning overtakes the best prompt, as `tunewise curve` says
        console.print(f"[bold]crossover[/] {line}", soft_wrap=True)


def _announce(pilot: dict[str, Any]) -> None:
    for s, p in pilot["strategies"].items():
        measured = ", ".join(f"{q['value']:.3f} at {q['size']}" for q in p["points"])
        console.print(f"[bold]pilot[/] {s}: {pilot['metric']} {measured} -> predicted {p['value']:.3f} "
                      f"[{p['low']:.3f}, {p['high']:.3f}] at {pilot['full_size']:,} training examples")
    for s, why in pilot["unpredicted"].items():
        console.print(f"[yellow]pilot[/] {s}: no prediction: {why}")
    console.print(f"[bold]pilot[/] took {pilot['seconds']:.0f} s (wall time of its cells)")
