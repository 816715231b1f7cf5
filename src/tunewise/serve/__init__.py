"""`tunewise serve`: an OpenAI-compatible HTTP server over the strategies of one run (FastAPI + uvicorn).

`build_app` rebuilds the run's predictors (`hub.ModelHub`), adds the files and fine-tuning jobs service
(`strategies.finetuning._jobs.JobService`, state under RUN/serve/ by default) and returns the app; `serve_run`
runs it. The key (optional) is read from an environment variable and is never printed or written anywhere.
"""

from __future__ import annotations

import contextlib
import ipaddress
import signal
import threading
from pathlib import Path
from typing import Any

from tunewise.endpoint import read_api_key
from tunewise.errors import UserError

__all__ = ["build_app", "read_api_key", "serve_run"]


def build_app(run_dir: str | Path, strategies: list[str] | None = None, api_key: str | None = None,
              state_dir: str | Path | None = None, device: str = "auto", log=print,
              engine: str = "transformers", gguf: str | None = None, threads: int | None = None
              ) -> tuple[Any, Any, Any]:
    """(app, hub, jobs) for a run folder; jobs is None when the base model is not a local one. `engine` runs the
    base model's raw generation (serve/engines.py; UserError if unknown or unusable on the run's model); `gguf`:
    the base model's GGUF for the llamacpp engine. Call `hub.close()` when done (it stops that engine)."""
    from tunewise.serve.api import create_app
    from tunewise.serve.hub import ModelHub
    from tunewise.strategies.finetuning._jobs import JobService

    hub = ModelHub(run_dir, strategies, device, log, engine, gguf, threads)
    jobs = None
    if hub.local:
        jobs = JobService(Path(state_dir) if state_dir else Path(run_dir) / "serve", hub.private_backend(), hub.base_id,
                          {hub.config.model}, on_model=hub.add_finetuned)
    return create_app(hub, jobs, api_key), hub, jobs


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def serve_run(run_dir: str | Path, strategies: list[str] | None = None, host: str = "127.0.0.1", port: int = 8000,
              api_key_env: str | None = None, state_dir: str | Path | None = None, device: str = "auto",
              threads: int | None = None, log=print, engine: str = "transformers", gguf: str | None = None) -> None:
    try:
        import uvicorn
    except ImportError:
        raise UserError("tunewise serve needs FastAPI and uvicorn: pip install 'tunewise[serve]'") from None
    api_key = read_api_key(api_key_env)
    if threads:
        import torch

        torch.set_num_threads(threads)
    if not _loopback(host) and api_key is None:
        log(f"warning: serving on {host} without a key: anyone who can reach it can use it (see --api-key-env)")
    app, hub, jobs = build_app(run_dir, strategies, api_key, state_dir, device, log, engine, gguf, threads)
    names = ", ".join(hub.entries)
    log(f"serving run {hub.run_id} at http://{host}:{port}/v1 (models: {names})"
        + (f"; fine-tuning jobs train {hub.base_id}" if jobs else "")
        + (f"; {hub.base_id} generates with the {engine} engine" if engine != "transformers" else "")
        + (f"; key required (from ${api_key_env})" if api_key else ""))
    try:
        with _sigterm_exits():
            uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    finally:
        hub.close()


@contextlib.contextmanager
def _sigterm_exits():
    """SIGTERM raises SystemExit here, so `finally` blocks run (hub.close stops the llamacpp engine's server).
    uvicorn shuts down gracefully on SIGTERM and then raises the signal again with the handler it found; the
    default handler would end the process on the spot, leaving that server orphaned. Main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def exit_(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, exit_)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
