"""`tunewise run`: the matrix of the config's strategies, each fitted, scored on the test split and
stored, through the run API (`tunewise.runs`); resumable."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.markup import escape

from tunewise.pilot import run_pilot
from tunewise.progress import console
from tunewise.runs import Executor, Run, distributed, executor_for

if TYPE_CHECKING:
    from tunewise.config import ExperimentConfig


def run_experiment(config: ExperimentConfig | None = None, resume: str | Path | None = None, *, yes: bool = False,
                   executor: Executor | str | None = None, address: str | None = None) -> Path | None:
    """Run (or, with `resume`, finish) an experiment and return its run folder.

    `executor`: an Executor, or 'local' | 'ray' (None: the config's `executor.kind`); `address`: the Ray
    cluster (`--address`). A resumed run may use another executor than the one that started it.
    `yes`: agree to paid steps (provider fine-tuning) without asking. Raises UserError before anything
    starts when a strategy cannot run on the task or its backend, or the executor cannot start (Ray missing).
    Under `accelerate launch` / `torchrun` only the main process runs the experiment; the others join its
    trainings (runs/distributed.py) and return None."""
    if resume is None and config is None:
        raise ValueError("give a config or a run folder to resume")
    device = config.device if config is not None else "auto"
    if distributed.launched() and not distributed.is_main():
        distributed.follow(device)  # joins the main process's trainings only (accelerate launch)
        return None
    if config is not None and not isinstance(executor, Executor):
        executor = executor_for(config, executor, address)  # Ray missing: fail before a folder is made
    leader = distributed.Leader(device) if distributed.launched() else None
    try:
        run = Run.open(resume, yes=yes) if resume is not None else Run.create(config, yes=yes)
    except BaseException:
        if leader is not None:
            leader.stop()  # the followers learn there is no run
        raise
    try:
        if leader is not None:
            leader.share(run)
        if not isinstance(executor, Executor):
            executor = executor_for(run.config, executor, address)
        run.write_splits()
        run.write_baselines()  # checks `metric:` against the task before any strategy starts
        console.print(f"[bold]task[/] {run.task().summary()}")
        if run.label_warning():
            console.print(f"[yellow]warning:[/] {escape(run.label_warning())}", highlight=False, soft_wrap=True)
        console.print(f"[bold]run folder[/] {run.dir}")
        if run.config.pilot is not None:  # fine-tuning at pilot sizes, predicted at the full size
            run_pilot(run, run.config.pilot, executor)
        else:
            cells = run.cells()
            run.prepare(run.strategy(c.strategy) for c in cells)  # fail before anything starts
            run.execute(cells, executor)
        run.finish()
    finally:
        if leader is not None:
            leader.stop()
        run.close()
    return run.dir
