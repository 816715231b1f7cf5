"""The client side of a `tunewise serve` endpoint, for every layer that talks to one without importing the
server: the API key read from an environment variable (`read_api_key`), and `tunewise serve` started as a real
subprocess on a free loopback port (`ServerProcess`: the agent apps, tests, benchmarks), waited for until it
answers and always stopped on exit from the `with` block. It imports nothing of tunewise but the foundation.
`ApiError` is the endpoint's OpenAI-shaped error, here so that the local fine-tuning job service (used by both
`tunewise serve` and `openai-finetune`) can raise it without importing the server.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from tunewise.foundation import UserError


def read_api_key(env_var: str | None) -> str | None:
    """The key in environment variable `env_var` (None when no variable is named); UserError when it is unset
    or empty. The key is never printed or written anywhere."""
    if not env_var:
        return None
    key = os.environ.get(env_var, "")
    if not key:
        raise UserError(f"--api-key-env {env_var}: that environment variable is not set or empty; export the key "
                        "in it first")
    return key


# OpenAI's error types by HTTP status, so that every OpenAI client raises its usual exception
TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 404: "invalid_request_error",
         405: "invalid_request_error", 409: "invalid_request_error", 413: "invalid_request_error",
         422: "invalid_request_error", 429: "rate_limit_error", 500: "server_error", 503: "server_error"}


class ApiError(Exception):
    """An OpenAI-shaped error: `{"error": {"message", "type", "param", "code"}}` with HTTP `status`."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.message, self.param, self.code)


def error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": TYPES.get(status, "invalid_request_error"), "param": param,
                      "code": code}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`tunewise serve RUN_DIR --port <free port> ARGS` in a child process; `url` is its /v1 base URL."""

    def __init__(self, run_dir: str | Path, args: list[str] | tuple[str, ...] = (), env: dict[str, str] | None = None,
                 log_path: str | Path | None = None, startup_timeout: float = 300.0):
        self.run_dir, self.args, self.startup_timeout = Path(run_dir), list(args), startup_timeout
        self.env = {**os.environ, **(env or {})}
        self.log_path = Path(log_path) if log_path else self.run_dir.parent / f"serve-{os.getpid()}.log"
        self.port = 0
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.is_file() else ""

    def start(self) -> ServerProcess:
        self.port = free_port()
        # `-m tunewise.cli` would load the CLI twice (as __main__ and as tunewise.cli): call main() instead.
        cmd = [sys.executable, "-c", "from tunewise.cli import main; main()", "serve", str(self.run_dir),
               "--port", str(self.port), *self.args]
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tunewise serve exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"tunewise serve did not answer within {self.startup_timeout:.0f} s:\n{self.log()[-3000:]}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=15)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
