"""Test-only Ray worker setup hook (runtime_env worker_process_setup_hook = "_ray_hooks.crash_once"): a cell
listed in RUN/CRASH_ONCE as "<cell id> <n>" kills its worker process (os._exit) on each of its first n attempts,
mid-cell (after the model loaded, before the fit); RUN/strategies/<cell id>/crashed counts the deaths."""

from __future__ import annotations

import os

CRASH_FILE = "CRASH_ONCE"  # in the run folder: "<cell id> <attempts to kill>" per line
MARKER = "crashed"  # in the cell's artifact folder: how many attempts died there


def crash_once() -> None:
    from tunewise.runs import cell as cell_module

    original = cell_module.fit_or_load

    def fit_or_load(strategy, backend, task, ctx, **kw):
        art = ctx.artifact_dir
        listed = art.parent.parent / CRASH_FILE
        kills = dict(line.split() for line in listed.read_text().splitlines() if line) if listed.is_file() else {}
        died = int((art / MARKER).read_text()) if (art / MARKER).is_file() else 0
        if died < int(kills.get(art.name, 0)):
            (art / MARKER).write_text(str(died + 1))
            os._exit(1)  # the worker process dies as if killed: no exception, no result
        return original(strategy, backend, task, ctx, **kw)

    cell_module.fit_or_load = fit_or_load
