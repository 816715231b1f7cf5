"""Start `tunewise serve` as a real subprocess on a free loopback port and wait until it answers (tests and
benchmarks); it is always stopped on exit from the `with` block."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
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
