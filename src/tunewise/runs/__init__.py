"""The run API: the one way through tunewise for every command that fits or scores a strategy.

- `resolve_config(path, overrides)`: a config file plus command-line options, resolved into one config.
- `Session(config)`: the config resolved once, the task loaded once (and once per capped training size),
  each backend loaded lazily and once (`BackendCache`, by model name and kind), strategies built and
  checked in one place; `fit()` for folds and trials that store nothing (`tunewise cv`, `tune`).
- `Run.create(config)` / `Run.open(folder)`: a session with a run folder and its store; `cells()`,
  `cell(id, seed=, train_size=)`, `execute(cells, executor)`, `predictor(cell)` (what `tunewise serve`
  serves), `write_baselines()` (the trivial baselines, stored as results that are not cells). The `Run`
  is the driver: the only writer of the store.
- `Cell` (strategy config, seed, training size: plain picklable data) and `run_cell(cell, run_dir,
  config, ...)`, which fits or reloads, measures forgetting after the fit, predicts, evaluates and
  returns a `CellResult`; executors (`LocalExecutor`, `RayExecutor` in runs/ray_executor.py, picked by
  `executor_for`) decide where cells run.
"""

from tunewise.runs.cell import CHUNK, Cell, CellResult, run_cell
from tunewise.runs.executors import Executor, LocalExecutor, executor_for
from tunewise.runs.folder import Run, environment
from tunewise.runs.session import Session, resolve_config

__all__ = ["CHUNK", "Cell", "CellResult", "Executor", "LocalExecutor", "Run", "Session", "environment",
           "executor_for", "resolve_config", "run_cell"]
