"""Data efficiency: fine-tune at several training-set sizes and record quality against examples.

`run_curve(RUN, sizes)` executes, through the run API, one cell per (fine-tuning strategy, size) of a
finished run: the run's seed and test examples, the training split capped to `size` (seeded, stratified,
as `task.max_train_examples` does). The cells are stored in the run itself as `<strategy>@n=<size>` (the
leaderboard and report compare the run's own cells only) and RUN/curve.json gets one point per (strategy,
size), the run's own full-size results as the last point, and its prompting strategies as baselines (they
do not depend on the training-set size). The report draws it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tunewise.errors import UserError
from tunewise.report.analysis import CURVE_FILE
from tunewise.runs import Run


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
    run = Run.open(run_dir)
    try:
        tuned = [s.id for s in run.config.strategies if run.strategy(s).family == "finetuning"]
        if not tuned:
            raise UserError(f"{run_dir}: the run has no fine-tuning strategy; a data-efficiency curve needs one")
        done = {r["strategy"]: r for r in run.store.main_results(run.id) if r["status"] == "done"}
        full = max((done[s]["cost"].get("train_examples") or 0 for s in tuned if s in done), default=0)
        curve_file = run_dir / CURVE_FILE
        curve = json.loads(curve_file.read_text(encoding="utf-8")) if curve_file.is_file() else {"points": []}
        have = {(p["strategy"], p["size"]) for p in curve["points"] if p.get("size") is not None}
        run.prepare(run.strategy(run.entry(s)) for s in tuned)  # fail before the first size starts
        hint = f"tunewise curve {run_dir} --sizes {','.join(map(str, sizes))}"
        for size in sizes:
            if full and size >= full:
                continue  # the run itself is the full-size point
            cells = [run.cell(s, train_size=size) for s in tuned if (s, size) not in have]
            if not cells:
                continue
            run.execute(cells, resume_hint=hint)
            results = {r["strategy"]: r for r in run.store.results(run.id)}
            for cell in cells:
                if results.get(cell.id, {}).get("status") == "done":
                    curve["points"].append({**_point(results[cell.id], size, "."), "strategy": cell.strategy["id"]})
            _write(curve_file, curve, done, tuned, run.id)
        _write(curve_file, curve, done, tuned, run.id)
    finally:
        run.close()
    return curve_file


def _write(path: Path, curve: dict[str, Any], done: dict[str, dict], tuned: list[str], run_id: str) -> None:
    """Written after every size, so an interrupted curve keeps what it measured and resumes from there."""
    points = [p for p in curve["points"] if p.get("size") is not None]
    points += [_point(done[s], None, ".") for s in tuned if s in done]  # the run's own, full-size points
    metric = next((r["metrics"]["primary"] for r in done.values()), "accuracy")
    curve = {"metric": metric, "run": run_id, "points": points,
             "baselines": [{k: v for k, v in _point(r, None, ".").items() if k not in ("size", "train_examples")}
                           for s, r in done.items() if s not in tuned and r["family"] == "prompting"]}
    path.write_text(json.dumps(curve, indent=1), encoding="utf-8")
