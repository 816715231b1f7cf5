"""Test-only Ray worker setup hook (runtime_env worker_process_setup_hook = "_ray_hooks.crash_once"): a cell
whose id is listed in RUN/CRASH_ONCE kills its worker process (os._exit) on its first attempt, mid-cell, after
the model loaded and before the fit; the retried attempt finds RUN/strategies/<cell id>/crashed and runs."""

from __future__ import annotations

import os

CRASH_FILE = "CRASH_ONCE"  # in the run folder: one cell id per line
MARKER = "crashed"  # in the cell's artifact folder: the first attempt died here


def crash_once() -> None:
    from tunewise.runs import cell as cell_module

    original = cell_module.fit_or_load

    def fit_or_load(strategy, backend, task, ctx):
        art = ctx.artifact_dir
        listed = art.parent.parent / CRASH_FILE
        if listed.is_file() and art.name in listed.read_text().split() and not (art / MARKER).exists():
            (art / MARKER).write_text(str(os.getpid()))
            os._exit(1)  # the worker process dies as if killed: no exception, no result
        return original(strategy, backend, task, ctx)

    cell_module.fit_or_load = fit_or_load
