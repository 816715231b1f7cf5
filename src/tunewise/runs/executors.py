"""Executors run a driver's cells: where `run_cell` executes, never who writes the store.

An executor calls back into the driver (`Run`, in the process that opened the run) for every cell:
`run.cell_started(cell)` before it starts, `run.cell_finished(cell, result)` with its result, and
`run.cell_aborted(cell, error)` when a user mistake or an interrupt stops it; only those write the store.
`LocalExecutor` runs the cells one after another in this process; `RayExecutor` (runs/ray_executor.py) runs
the same `run_cell` in Ray tasks, from the cell, `run.dir`, `run.config_dict` and `run.stored(cell)`.
`executor_for(config, kind, address)` picks one (`--executor`, `--address`, the config's `executor:`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tunewise.errors import UserError
from tunewise.runs.cell import Cell, run_cell

if TYPE_CHECKING:
    from tunewise.config import ExperimentConfig
    from tunewise.runs.folder import Run


class Executor(ABC):
    """Runs cells for a driver; see the module docstring for the calls it owes the driver."""

    @abstractmethod
    def execute(self, run: Run, cells: Sequence[Cell], progress: Any = None) -> None:
        """Run every cell, reporting each to `run`; re-raise UserError and KeyboardInterrupt after
        `run.cell_aborted`. `progress` is the driver's rich Progress (for in-process bars), or None."""


class LocalExecutor(Executor):
    """One cell after another in this process, sharing the run's task and loaded backends. Predictions
    reach the store as each chunk of 64 examples is scored, so an interrupt loses at most one chunk."""

    def execute(self, run: Run, cells: Sequence[Cell], progress: Any = None) -> None:
        for cell in cells:
            run.cell_started(cell)
            try:
                result = run_cell(cell, run.dir, run.config_dict, stored=run.stored(cell), yes=run.yes,
                                  on_predictions=run.prediction_sink(cell), session=run, progress=progress)
            except (UserError, KeyboardInterrupt, SystemExit) as err:
                run.cell_aborted(cell, err)
                raise
            run.cell_finished(cell, result)


def executor_for(config: ExperimentConfig, kind: str | None = None, address: str | None = None) -> Executor:
    """The executor of `kind` ('local' | 'ray'; None: the config's `executor.kind`), for a Ray cluster at
    `address` (None: the config's). UserError for an unknown kind, an address without Ray, or Ray missing."""
    kind = kind or config.executor.kind
    if kind == "local":
        if address:
            raise UserError("--address names a Ray cluster; give it together with --executor ray")
        return LocalExecutor()
    if kind != "ray":
        raise UserError(f"--executor {kind}: unknown executor; use local or ray")
    from tunewise.runs.ray_executor import RayExecutor

    return RayExecutor(address)
