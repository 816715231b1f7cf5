"""Cells as Ray tasks (`tunewise run CONFIG --executor ray [--address ADDRESS]`); Ray schedules, tunewise does not.

Each cell runs `run_cell` in a Ray worker process (https://docs.ray.io/en/latest/ray-core/tasks.html) with the
resources its strategy declares: by default 1 CPU, and for fine-tuning 1 GPU when the cluster has GPUs and
`device` is not cpu; `executor.resources` in the config overrides them per family or strategy id. The worker
runs torch on as many threads as it reserved CPUs. The driver (`Run`) alone writes the store: it calls
`cell_started` as it submits each cell, waits on all of them with `ray.wait`, and stores each result as it
arrives (the overall progress bar ticks there). A worker that dies (killed, out of memory) is retried by Ray
up to `executor.max_retries` times, then the cell counts as failed; the other cells go on.

Artifacts: a worker writes the cell's folder RUN/strategies/<cell id>/ itself, so RUN must be on a filesystem
every worker sees (one machine: always; a cluster: a shared mount). Predictions and metrics come back to the
driver through Ray's object store as the task's result.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunewise.config import ResourcesConfig
from tunewise.errors import UserError
from tunewise.runs.cell import Cell, CellResult, run_cell
from tunewise.runs.executors import Executor
from tunewise.runs.session import Session

if TYPE_CHECKING:
    from tunewise.runs.folder import Run

INSTALL = "--executor ray needs Ray, which is not installed: pip install 'tunewise[ray]'"
SOURCE_ROOT = Path(__file__).resolve().parents[2]  # the folder holding the tunewise package
_SESSION: dict[str, Session] = {}  # per worker process: the last config's session (task and models loaded once)


def require_ray() -> None:
    """UserError naming the extra when Ray is not installed (checked before any run folder is made)."""
    if importlib.util.find_spec("ray") is None:
        raise UserError(INSTALL)


def resources_for(family: str, strategy_id: str, overrides: dict[str, ResourcesConfig], gpus: bool
                  ) -> dict[str, Any]:
    """Ray task options of one cell: num_cpus (cores), num_gpus, memory (bytes). Defaults per family (1 CPU;
    fine-tuning also 1 GPU when `gpus`), then `overrides[family]`, then `overrides[strategy_id]`."""
    out: dict[str, Any] = {"num_cpus": 1, "num_gpus": 1 if family == "finetuning" and gpus else 0}
    for key in (family, strategy_id):
        r = overrides.get(key)
        if r is None:
            continue
        if r.num_cpus is not None:
            out["num_cpus"] = r.num_cpus
        if r.num_gpus is not None:
            out["num_gpus"] = r.num_gpus
        if r.memory_mb is not None:
            out["memory"] = int(r.memory_mb * 2**20)
    return out


def cell_task(cell: Cell, run_dir: str, config: dict[str, Any], stored: list[dict[str, Any]], yes: bool
              ) -> CellResult:
    """The body of one Ray task: `run_cell` in the worker, with torch on the worker's reserved CPU count and
    the worker's session reused across the cells of one config (each model loads once per worker)."""
    import ray
    import torch

    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    torch.set_num_threads(max(1, int(cpus)))
    key = run_dir + json.dumps(config, sort_keys=True)
    if key not in _SESSION:
        _SESSION.clear()
        _SESSION[key] = Session(config, f"{run_dir}/config.yaml", yes=yes, announce=False)
    return run_cell(cell, run_dir, config, stored=stored, yes=yes, session=_SESSION[key])


class RayExecutor(Executor):
    """Runs every cell as a Ray task. `address`: a running cluster ('auto', 'ray://HOST:10001', HOST:6379), or
    None to start a local Ray instance for the run (shut down after it); when Ray is already initialised in
    this process (a test, a notebook) that instance is used as is. `max_retries`: re-runs of a cell whose
    worker died (None: the config's `executor.max_retries`). Raises UserError when Ray is not installed."""

    def __init__(self, address: str | None = None, max_retries: int | None = None):
        require_ray()
        self.address, self.max_retries = address, max_retries

    def execute(self, run: Run, cells: Sequence[Cell], progress: Any = None) -> None:
        import ray

        started = not ray.is_initialized()
        if started:
            self._init(ray, run)
        try:
            self._run_all(ray, run, cells)
        finally:
            if started:
                ray.shutdown()

    def _init(self, ray, run: Run) -> None:
        address = self.address or run.config.executor.address
        path = os.pathsep.join(p for p in (str(SOURCE_ROOT), os.environ.get("PYTHONPATH")) if p)
        env = {"PYTHONPATH": path, "TOKENIZERS_PARALLELISM": "false"}  # workers import this tunewise
        kwargs: dict[str, Any] = {} if address else {"include_dashboard": False}
        try:
            ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR,
                     runtime_env={"env_vars": env}, **kwargs)
        except ConnectionError as err:
            raise UserError(f"--address {address}: no Ray cluster there ({str(err).splitlines()[0]}); start one "
                            "with `ray start --head`, or leave --address out to start Ray for this run") from None

    def _run_all(self, ray, run: Run, cells: Sequence[Cell]) -> None:
        task = ray.remote(cell_task)
        gpus = ray.cluster_resources().get("GPU", 0) > 0 and run.config.device != "cpu"
        retries = run.config.executor.max_retries if self.max_retries is None else self.max_retries
        config = ray.put(run.config_dict)  # once in the object store, not once per task
        pending: dict[Any, Cell] = {}
        try:
            for cell in cells:
                strategy = run.strategy(cell.strategy)
                opts = resources_for(strategy.family, strategy.config.id, run.config.executor.resources, gpus)
                run.cell_started(cell)
                ref = task.options(**opts, max_retries=retries, retry_exceptions=False, name=f"tunewise {cell.id}")
                pending[ref.remote(cell, str(run.dir), config, run.stored(cell), run.yes)] = cell
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    cell = pending.pop(ref)
                    run.cell_finished(cell, self._result(ray, ref, run, cell, retries))
        except (UserError, KeyboardInterrupt, SystemExit):
            for ref, cell in pending.items():  # the cells still queued or running stop; resume reruns them
                with contextlib.suppress(Exception):  # Ray may be going down with the Ctrl-C; the store matters
                    ray.cancel(ref, force=True)
                run.cell_aborted(cell, KeyboardInterrupt())
            raise

    @staticmethod
    def _result(ray, ref, run: Run, cell: Cell, retries: int) -> CellResult:
        """The task's CellResult; a user mistake in the cell is re-raised after `cell_aborted`; a worker that
        died more than `retries` times makes a failed result, so the other cells go on."""
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as err:
            cause = err.cause
            if isinstance(cause, UserError):
                run.cell_aborted(cell, cause)
                raise UserError(str(cause)) from None
            error = f"{type(cause).__name__}: {cause}".splitlines()[0]
        except ray.exceptions.RayError as err:  # worker or node died on every attempt, task cancelled, ...
            error = f"the Ray worker died on all {retries + 1} attempts ({type(err).__name__})"
        strategy = run.strategy(cell.strategy)
        return CellResult(cell.id, strategy.name, strategy.family, run.model_for(strategy.backend_kind),
                          strategy.backend_kind, cell.seed, cell.train_size, str(run.dir / "strategies" / cell.id),
                          status="failed", error=error)
