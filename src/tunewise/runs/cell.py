"""The unit of work of a run: a cell is one strategy at one seed and one training-set size.

A `Cell` is plain, picklable data; `run_cell` executes one and returns a `CellResult` (metrics, cost,
prediction rows, training-log records, its artifact folder). It writes only the cell's artifact folder,
never the store: the driver (`Run`, in the process that opened the run) alone writes the store. So
`run_cell` runs as well in a fresh process (a Ray task) given the cell, the run folder and the resolved
config dict, as in the driver's own loop with its session (task and backends already loaded).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunewise.backends.context import count_truncated
from tunewise.errors import UserError
from tunewise.evaluation.metrics import evaluate, per_example_score
from tunewise.foundation import write_atomic
from tunewise.runs.distributed import announce
from tunewise.runs.measure import measure_after_fit, serving_latency
from tunewise.runs.memory import LATENCY, CellMemory, warmup_size
from tunewise.runs.session import Session
from tunewise.strategies.base import STATS_FILE, fit_or_load
from tunewise.strategies.prompting._extract import extraction_summary

CHUNK = 64  # examples per predict() call: a progress tick and, in the local driver, a durable commit each
TRAIN_LOG_FILE = "train_log.json"  # next to fit.json: the training curve of the saved fit


@dataclass(frozen=True)
class Cell:
    """One strategy (its config as JSON-able data) at a seed and a training-set size (None: the full
    training split). `id` names its result: the strategy id for the run's own cell (the config's seed, the
    full split), else e.g. `lora@seed=1`, `lora@n=256`, `lora@seed=1,n=256`."""

    strategy: dict[str, Any] = field(hash=False)
    seed: int
    train_size: int | None = None
    id: str = ""

    @classmethod
    def of(cls, strategy: dict[str, Any], run_seed: int, seed: int | None = None,
           train_size: int | None = None) -> Cell:
        seed = run_seed if seed is None else seed
        tags = ([f"seed={seed}"] if seed != run_seed else []) + ([f"n={train_size}"] if train_size else [])
        return cls(strategy, seed, train_size, strategy["id"] + ("@" + ",".join(tags) if tags else ""))


@dataclass
class CellResult:
    """What `run_cell` returns; the driver stores it. `predictions` holds the rows not already handed to
    `on_predictions`; `train_log` is the fit's full training curve (None: unknown, keep the stored one)."""

    id: str
    name: str
    family: str
    backend_model: str
    backend_kind: str
    seed: int
    train_size: int | None
    artifact: str
    status: str = "done"  # "done" | "failed"
    error: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    cost: dict[str, Any] = field(default_factory=dict)
    predictions: list[dict[str, Any]] = field(default_factory=list)
    train_log: list[dict[str, Any]] | None = None


def run_cell(cell: Cell, run_dir: str | Path, config: dict[str, Any], *, stored: Sequence[dict[str, Any]] = (),
             on_predictions: Callable[[list[dict[str, Any]]], None] | None = None, yes: bool = False,
             session: Session | None = None, progress: Any = None) -> CellResult:
    """Execute one cell: fit its strategy, or reload the saved fit from run_dir/strategies/<cell id>/
    (fit.json); measure forgetting when the strategy asks; predict the test examples not in `stored` (rows
    already in the store) in chunks of 64; evaluate on all of them; return the result.

    `config`: the run's resolved config dict; `session`: the driver's, to reuse its task and backends
    (a fresh process builds its own from `config`). `on_predictions(rows)` receives each chunk's rows as
    they are scored (the local driver stores them; without it they come back in the result). `yes`:
    consent to paid steps. Raises UserError for a user mistake and lets KeyboardInterrupt through; any
    other error in the strategy becomes a failed result, so the other cells go on."""
    session = session or Session(config, f"{run_dir}/config.yaml", yes=yes, announce=False)
    task = session.task(cell.train_size)
    strategy = session.strategy(cell.strategy)
    backend = session.backend_for(strategy)
    art = Path(run_dir) / "strategies" / cell.id
    art.mkdir(parents=True, exist_ok=True)
    records: list[dict[str, Any]] = []
    ctx = session.context(art, cell.seed, progress=progress, log=records.append)
    mem = CellMemory(session.backends.loaded)  # the cell's own memory, not the process's (runs/memory.py)
    ctx.backends = mem.track(ctx.backends)
    mem.use(backend)
    result = CellResult(cell.id, strategy.name, strategy.family, session.model_for(strategy.backend_kind),
                        strategy.backend_kind, cell.seed, cell.train_size, str(art))
    rows = list(stored)
    try:
        with mem:
            # under `accelerate launch` the other processes join this training (runs/distributed.py)
            predictor, fitted = fit_or_load(strategy, backend, task, ctx, before_fit=lambda: announce(cell, strategy))
            result.train_log = _train_log(art, records if fitted else None)
            if measure_after_fit(strategy, backend, predictor, ctx):  # forgetting: after fit, timed apart
                ctx.save_stats()
            for chunk in _predict(predictor, task, cell.id, {r["example_id"] for r in rows}, progress):
                rows += chunk
                (on_predictions or result.predictions.extend)(chunk)
            if serving_latency(strategy, predictor, task, ctx, session.backends.loaded().values()):
                ctx.save_stats()  # the serving path, one query at a time (runs/measure.py)
        rows.sort(key=lambda r: r["position"])
        by_id = {r["example_id"]: r for r in rows}
        result.metrics = evaluate(task, task.test, [by_id[e.id]["output"] for e in task.test], seed=session.seed,
                                  metric=session.config.metric)
        result.cost = cell_cost(ctx.stats, rows, backend, mem.figures(), art)
        result.cost["details"].update(extraction_summary(r["trace"] for r in rows))  # reasoning strategies only
        result.cost["details"]["truncated_inputs"] = count_truncated(r["trace"] for r in rows)  # backends/context.py
    except (UserError, KeyboardInterrupt, SystemExit):
        raise
    except Exception as err:  # a bug or resource failure in one cell must not lose the others
        result.status, result.error = "failed", f"{type(err).__name__}: {err}".splitlines()[0]
        if result.train_log is None and records:
            result.train_log = records
    return result


def _train_log(art: Path, records: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """A new fit's records are saved next to fit.json; a reloaded fit returns the saved ones (None when an
    older run saved none)."""
    path = art / TRAIN_LOG_FILE
    if records is not None:
        write_atomic(path, json.dumps(records))
        return records
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # none saved (an older run), or torn by a crash: the store keeps its copy
        return None


def _predict(predictor, task, cell_id: str, done: set[str], progress):
    """Yield the prediction rows of the test examples not in `done`: first a warm-up batch (runs/memory.py; its
    rows marked `warmup`), then one chunk of CHUNK at a time."""
    position = {e.id: i for i, e in enumerate(task.test)}
    todo = [e for e in task.test if e.id not in done]
    bar = None if progress is None else progress.add_task(f"score {cell_id}", total=len(task.test),
                                                          completed=len(done))
    warm = warmup_size(len(todo))
    for start in [0, *range(warm, len(todo), CHUNK)] if warm else range(0, len(todo), CHUNK):
        chunk = todo[start:warm] if warm and start == 0 else todo[start:start + CHUNK]
        t0 = time.perf_counter()
        preds = predictor.predict(chunk, on_batch=None if bar is None else lambda n: progress.advance(bar, n))
        per_example = (time.perf_counter() - t0) / len(chunk)
        yield [{"example_id": e.id, "position": position[e.id], "input": e.input, "target": e.target,
                "output": p.output, "score": per_example_score(task, e, p.output), "scores": p.scores,
                "prompt_tokens": p.prompt_tokens, "completion_tokens": p.completion_tokens,
                "latency_s": per_example, "trace": p.trace, "warmup": start < warm}
               for e, p in zip(chunk, preds, strict=True)]
        if bar is not None:
            progress.update(bar, completed=len(done) + start + len(chunk))
    if bar is not None:
        progress.update(bar, visible=False)


def _dir_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*")
               if f.is_file() and f.name not in (STATS_FILE, TRAIN_LOG_FILE)) / 2**20


_COST_KEYS = {"trainable_params", "total_params", "train_seconds", "train_tokens", "train_examples", "epochs_run"}


def _latency(rows: list[dict]) -> tuple[float, dict[str, Any]]:
    """Seconds per example after the warm-up batch (runs/memory.py) of the rows scored now (those with a
    `warmup` mark; resumed rows from the store have none), and the parts; the mean of all rows when none
    was timed after a warm-up (too few examples, or all of them already stored)."""
    fresh = [r for r in rows if "warmup" in r]
    warm, timed = [r for r in fresh if r["warmup"]], [r for r in fresh if not r["warmup"]]
    use = timed or rows
    per_example = sum(r["latency_s"] or 0 for r in use) / max(len(use), 1)
    return per_example, {"method": LATENCY if timed else "mean over all examples (no warm-up batch)",
                         "warmup_examples": len(warm), "warmup_seconds": sum(r["latency_s"] or 0 for r in warm),
                         "timed_examples": len(timed), "scoring_seconds": sum(r["latency_s"] or 0 for r in fresh)}


def cell_cost(stats: dict, rows: list[dict], backend, memory: dict[str, Any], art: Path) -> dict[str, Any]:
    """The cost profile of a cell: one-off (training) and per-query figures, each with its unit in its name.
    `memory`: `CellMemory.figures()`; latency per example is measured after a warm-up batch (`_latency`)."""
    n = max(len(rows), 1)
    seconds_per_example, latency = _latency(rows)
    total = stats.get("total_params") or backend.count_parameters()
    trainable = stats.get("trainable_params", 0)
    return {
        "trainable_params": trainable, "total_params": total,
        "trainable_share": trainable / total if total else 0.0,
        "train_seconds": stats.get("train_seconds", 0.0), "train_tokens": stats.get("train_tokens", 0),
        "train_examples": stats.get("train_examples", 0), "epochs_run": stats.get("epochs_run"),
        "prompt_tokens_per_example": sum(r["prompt_tokens"] or 0 for r in rows) / n,
        "completion_tokens_per_example": sum(r["completion_tokens"] or 0 for r in rows) / n,
        "seconds_per_example": seconds_per_example, "scoring_seconds": latency["scoring_seconds"],
        "peak_rss_mb": memory["peak_rss_mb"], "peak_device_mb": memory["peak_device_mb"],
        "artifact_mb": _dir_mb(art),
        # Whatever else the strategy recorded (demonstrations, extraction failures, forgetting, ...).
        "details": {**{k: v for k, v in stats.items() if k not in _COST_KEYS}, "memory": memory["memory"],
                    "latency": latency},
    }
