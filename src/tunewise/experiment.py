"""The matrix: for each strategy fit -> predict the test split -> evaluate -> store; resumable."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

import torch

from tunewise.backends import load_backend
from tunewise.backends.context import count_truncated
from tunewise.config import ExperimentConfig, config_to_dict, dump_config, parse_config
from tunewise.data import Task, load_task
from tunewise.errors import UserError
from tunewise.evaluation.cost import PeakMemory, Timer
from tunewise.evaluation.metrics import evaluate, per_example_score
from tunewise.progress import console, make_progress
from tunewise.registry import get_strategy
from tunewise.store import Store
from tunewise.strategies.base import FitContext
from tunewise.strategies.prompting._extract import extraction_summary

DB_NAME = "tunewise.db"
CHUNK = 64  # examples per predict() call: a progress tick and a durable commit each


def environment(device: str) -> dict[str, Any]:
    import peft
    import transformers

    return {"python": platform.python_version(), "platform": platform.platform(),
            "torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
            "cpu_count": torch.get_num_threads(), "cuda": torch.cuda.get_device_name(0)
            if torch.cuda.is_available() else None, "device": device}


def open_run(run_dir: str | Path) -> tuple[Store, dict[str, Any]]:
    path = Path(run_dir)
    if not (path / DB_NAME).is_file():
        raise UserError(f"{path}: not a tunewise run folder (no {DB_NAME}); give the folder `tunewise run` "
                        "printed")
    store = Store(path / DB_NAME)
    run = store.run()
    if run is None:
        raise UserError(f"{path}: the run database holds no run")
    return store, run


def _new_run_dir(config: ExperimentConfig, task_name: str) -> Path:
    base = Path(config.output_dir) / f"{time.strftime('%Y%m%d-%H%M%S')}-{task_name}"
    run_dir, n = base, 1
    while run_dir.exists():
        n += 1
        run_dir = base.with_name(f"{base.name}-{n}")
    run_dir.mkdir(parents=True)
    return run_dir


def run_experiment(config: ExperimentConfig | None = None, resume: str | Path | None = None) -> Path:
    """Run (or finish) an experiment and return its run folder."""
    if resume is not None:
        store, run = open_run(resume)
        config = parse_config(run["config"], f"{resume}/config")
        run_dir, run_id = Path(resume), run["id"]
    assert config is not None
    task = load_task(config.task, seed=config.seed)
    strategies = [get_strategy(c.name)(c) for c in config.strategies]
    for s in strategies:
        if task.kind not in s.task_kinds:
            raise UserError(f"strategies.{s.config.id}: '{s.name}' works on {', '.join(s.task_kinds)} tasks, "
                            f"not {task.kind}; remove it or change task.kind")
    if resume is None:
        run_dir = _new_run_dir(config, task.name)
        run_id = run_dir.name
        (run_dir / "config.yaml").write_text(dump_config(config), encoding="utf-8")
        store = Store(run_dir / DB_NAME)
        store.create_run(run_id, config_to_dict(config), environment(config.device))
    _write_splits(run_dir, task)
    console.print(f"[bold]task[/] {task.summary()}")
    console.print(f"[bold]run folder[/] {run_dir}")
    backends = _load_backends(config, strategies)
    for s in strategies:  # fail before anything starts, not halfway through the matrix
        backends[s.backend_kind].require(s.config.id, s.backend_kind, s.needs)
    failures = []
    try:
        with make_progress() as progress:
            overall = progress.add_task("strategies", total=len(strategies))
            for s in strategies:
                if store.result_status(run_id, s.config.id) != "done":
                    err = _run_strategy(s, backends[s.backend_kind], task, config, store, run_id, run_dir,
                                        progress)
                    if err:
                        failures.append(err)
                progress.advance(overall)
                export(store, run_id, run_dir)
    except KeyboardInterrupt:
        store.set_run_status(run_id, "interrupted")
        console.print(f"\n[yellow]interrupted[/]: finished work is saved; continue with "
                      f"`tunewise run --resume {run_dir}`")
        raise
    store.set_run_status(run_id, "failed" if failures else "done")
    export(store, run_id, run_dir)
    store.close()
    return run_dir


def _load_backends(config: ExperimentConfig, strategies) -> dict[str, Any]:
    kinds = {s.backend_kind for s in strategies}
    names = {"causal": config.model, "encoder": config.encoder}
    backends = {}
    for kind in sorted(kinds):
        with console.status(f"loading {kind} model {names[kind]}"):
            start = time.perf_counter()
            backends[kind] = load_backend(names[kind], kind, config.device)
        console.print(f"[bold]loaded[/] {names[kind]} ({kind}) in {time.perf_counter() - start:.1f} s")
    return backends


def _write_splits(run_dir: Path, task: Task) -> None:
    splits = {"task": task.name, "kind": task.kind, "labels": task.labels, "instruction": task.instruction,
              **{name: [e.id for e in getattr(task, name)] for name in ("train", "validation", "test")}}
    (run_dir / "splits.json").write_text(json.dumps(splits, indent=1), encoding="utf-8")


def _run_strategy(strategy, backend, task: Task, config: ExperimentConfig, store: Store, run_id: str,
                  run_dir: Path, progress) -> str | None:
    sid = strategy.config.id
    art = run_dir / "strategies" / sid
    art.mkdir(parents=True, exist_ok=True)
    ctx = FitContext(artifact_dir=art, seed=config.seed, progress=progress,
                     log=lambda record: store.log_train(run_id, sid, record))
    store.start_result(run_id, sid, strategy.name, strategy.family)
    stats_file = art / "fit.json"
    try:
        with PeakMemory() as mem:
            predictor = strategy.load(backend, task, ctx) if stats_file.is_file() else None
            if predictor is not None:
                ctx.stats = json.loads(stats_file.read_text(encoding="utf-8"))
            else:
                store.clear_train_log(run_id, sid)
                with Timer() as fit_timer:
                    predictor = strategy.fit(backend, task, ctx)
                ctx.stats["train_seconds"] = fit_timer.seconds
                stats_file.write_text(json.dumps(ctx.stats, indent=1, default=str), encoding="utf-8")
            _predict(predictor, task, store, run_id, sid, progress)
        rows = store.predictions(run_id, sid)
        by_id = {r["example_id"]: r for r in rows}
        outputs = [by_id[e.id]["output"] for e in task.test]
        metrics = evaluate(task, task.test, outputs, seed=config.seed)
        cost = _cost(ctx.stats, rows, backend, mem.peak_mb, art)
        cost["details"].update(extraction_summary(r["trace"] for r in rows))  # reasoning strategies only
        cost["details"]["truncated_inputs"] = count_truncated(r["trace"] for r in rows)  # backends/context.py
        store.finish_result(run_id, sid, metrics, cost, str(art))
        primary = metrics[metrics["primary"]]
        cut = cost["details"]["truncated_inputs"]
        console.print(f"[green]done[/] {sid}: {metrics['primary']} {primary['value']:.3f} "
                      f"[{primary['low']:.3f}, {primary['high']:.3f}]"
                      + (f" [yellow]({cut} of {len(rows)} test inputs truncated to fit the model)[/]" if cut else ""))
        return None
    except UserError as err:
        store.fail_result(run_id, sid, str(err))
        raise
    except (KeyboardInterrupt, SystemExit):
        store.fail_result(run_id, sid, "interrupted by the user", status="interrupted")
        raise
    except Exception as err:  # a bug or resource failure in one strategy must not lose the others
        message = f"{type(err).__name__}: {err}".splitlines()[0]
        store.fail_result(run_id, sid, message)
        console.print(f"[red]failed[/] {sid}: {message} (the other strategies go on)")
        return f"{sid}: {message}"


def _predict(predictor, task: Task, store: Store, run_id: str, sid: str, progress) -> None:
    done = {r["example_id"] for r in store.predictions(run_id, sid)}
    position = {e.id: i for i, e in enumerate(task.test)}
    todo = [e for e in task.test if e.id not in done]
    bar = progress.add_task(f"score {sid}", total=len(task.test), completed=len(done))
    for start in range(0, len(todo), CHUNK):
        chunk = todo[start:start + CHUNK]
        t0 = time.perf_counter()
        preds = predictor.predict(chunk, on_batch=lambda n: progress.advance(bar, n))
        per_example = (time.perf_counter() - t0) / len(chunk)
        store.add_predictions(run_id, sid, [
            {"example_id": e.id, "position": position[e.id], "input": e.input, "target": e.target,
             "output": p.output, "score": per_example_score(task, e, p.output), "scores": p.scores,
             "prompt_tokens": p.prompt_tokens, "completion_tokens": p.completion_tokens,
             "latency_s": per_example, "trace": p.trace}
            for e, p in zip(chunk, preds, strict=True)])
        progress.update(bar, completed=len(done) + start + len(chunk))
    progress.update(bar, visible=False)


def _dir_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and f.name != "fit.json") / 2**20


def _cost(stats: dict, rows: list[dict], backend, peak_rss_mb: float, art: Path) -> dict[str, Any]:
    n = max(len(rows), 1)
    total = stats.get("total_params") or backend.count_parameters()
    trainable = stats.get("trainable_params", 0)
    return {
        "trainable_params": trainable, "total_params": total,
        "trainable_share": trainable / total if total else 0.0,
        "train_seconds": stats.get("train_seconds", 0.0), "train_tokens": stats.get("train_tokens", 0),
        "train_examples": stats.get("train_examples", 0), "epochs_run": stats.get("epochs_run"),
        "prompt_tokens_per_example": sum(r["prompt_tokens"] or 0 for r in rows) / n,
        "completion_tokens_per_example": sum(r["completion_tokens"] or 0 for r in rows) / n,
        "seconds_per_example": sum(r["latency_s"] or 0 for r in rows) / n,
        "peak_rss_mb": peak_rss_mb, "peak_device_mb": backend.peak_device_memory_mb(),
        "artifact_mb": _dir_mb(art),
        # Whatever else the strategy recorded (demonstrations, extraction failures, candidates, ...).
        "details": {k: v for k, v in stats.items() if k not in _COST_KEYS},
    }


_COST_KEYS = {"trainable_params", "total_params", "train_seconds", "train_tokens", "train_examples", "epochs_run"}


def export(store: Store, run_id: str, run_dir: Path) -> None:
    """Machine-readable copies next to the database: results.json and predictions/<strategy>.jsonl."""
    results = store.results(run_id)
    (run_dir / "results.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    pred_dir = run_dir / "predictions"
    pred_dir.mkdir(exist_ok=True)
    for r in results:
        if r["status"] == "done":
            with open(pred_dir / f"{r['strategy']}.jsonl", "w", encoding="utf-8") as f:
                for p in store.predictions(run_id, r["strategy"]):
                    f.write(json.dumps({k: p[k] for k in p if k != "run_id"}) + "\n")
