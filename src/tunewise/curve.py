"""Data efficiency: fine-tune at several training-set sizes and record quality against examples.

`run_curve(RUN, sizes)` re-runs the fine-tuning strategies of a finished run with `task.max_train_examples`
set to each size (same seed, so the same test examples), each as its own run under RUN/curve/, and writes
RUN/curve.json: one point per (strategy, size), the run's own full-size results as the last point, and
its prompting strategies and trivial baselines as horizontal references (they do not depend on the
training-set size). The report draws it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tunewise.config import config_to_dict, parse_config
from tunewise.errors import UserError
from tunewise.experiment import open_run, run_experiment
from tunewise.registry import get_strategy
from tunewise.report.analysis import CURVE_FILE


def _point(result: dict[str, Any], size: int | None, run: str) -> dict[str, Any]:
    m = result["metrics"]
    q = m[m["primary"]]
    return {"strategy": result["strategy"], "size": size,
            "train_examples": result["cost"].get("train_examples") or size, "value": q["value"], "low": q["low"],
            "high": q["high"], "run": run}


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = sorted({int(s) for s in text.replace(" ", "").split(",") if s})
    except ValueError:
        raise UserError(f"--sizes: give whole numbers separated by commas, such as 16,64,256 (got '{text}')") from None
    if not sizes or sizes[0] <= 0:
        raise UserError("--sizes: give one or more positive numbers of training examples, such as 16,64,256")
    return sizes


def run_curve(run_dir: str | Path, sizes: list[int]) -> Path:
    """Fine-tune the run's fine-tuning strategies at each size; return the path of RUN/curve.json."""
    run_dir = Path(run_dir)
    store, run = open_run(run_dir)
    results = store.results(run["id"])
    store.close()
    config = parse_config(run["config"], f"{run_dir}/config")
    tuned = [s for s in config.strategies if get_strategy(s.name).family == "finetuning"]
    if not tuned:
        raise UserError(f"{run_dir}: the run has no fine-tuning strategy; a data-efficiency curve needs one")
    done = {r["strategy"]: r for r in results if r["status"] == "done"}
    full = max((done[s.id]["cost"].get("train_examples") or 0 for s in tuned if s.id in done), default=0)
    curve_file = run_dir / CURVE_FILE
    curve = json.loads(curve_file.read_text(encoding="utf-8")) if curve_file.is_file() else {"points": []}
    have = {(p["strategy"], p["size"]) for p in curve["points"] if p.get("size") is not None}
    data = config_to_dict(config)
    data["strategies"] = [s.model_dump(mode="json") for s in tuned]
    data["output_dir"] = str(run_dir / "curve")
    for size in sizes:
        if full and size >= full:
            continue  # the run itself is the full-size point
        todo = [s for s in data["strategies"] if (s["id"], size) not in have]
        if not todo:
            continue
        sub = parse_config({**data, "strategies": todo, "task": {**data["task"], "max_train_examples": size}},
                           f"curve size {size}")
        sub_dir = run_experiment(sub)
        for r in json.loads((sub_dir / "results.json").read_text(encoding="utf-8")):
            if r["status"] == "done" and r["family"] != "baseline":  # the trivial baselines are the run's own
                curve["points"].append(_point(r, size, str(sub_dir.relative_to(run_dir))))
        _write(curve_file, curve, done, tuned, run)
    _write(curve_file, curve, done, tuned, run)
    return curve_file


def _write(path: Path, curve: dict[str, Any], done: dict[str, dict], tuned, run: dict[str, Any]) -> None:
    """Written after every size, so an interrupted curve keeps what it measured and resumes from there."""
    tuned_ids = {s.id for s in tuned}
    points = [p for p in curve["points"] if p.get("size") is not None]
    points += [_point(done[s], None, ".") for s in tuned_ids if s in done]  # the run's own, full-size points
    metric = next((r["metrics"]["primary"] for r in done.values()), "accuracy")
    curve = {"metric": metric, "run": run["id"], "points": points,
             "baselines": [{**{k: v for k, v in _point(r, None, ".").items() if k not in ("size", "train_examples")},
                            "family": r["family"]}
                           for s, r in done.items() if s not in tuned_ids and r["family"] in ("prompting", "baseline")]}
    path.write_text(json.dumps(curve, indent=1), encoding="utf-8")
