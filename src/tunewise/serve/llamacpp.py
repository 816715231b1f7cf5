"""`tunewise serve --engine llamacpp`: the base model's raw generation on llama.cpp, in a process of its own.

llama.cpp decodes a small model on a CPU several times faster than transformers' `generate()` (its quantised
matrix-vector kernels read 4-8 bits per weight; bench/serve_throughput.py measures both side by side). The
engine runs llama-cpp-python's own OpenAI-compatible server (`python -m llama_cpp.server`, bound to
127.0.0.1 on a free port) on a GGUF of the base model and forwards plain generation to it through the
`openai` client. It is a subprocess because llama-cpp-python is compiled from source and may live in another
environment (`TUNEWISE_LLAMACPP_PYTHON`), and because it has crashed when imported into a process that had
already loaded torch.

What goes there: `/v1/chat/completions` and `/v1/completions` generation of the base model, streamed or not,
with the server's own prompt rendering (the chat template) and token counting, so the API and the usage
figures stay the same. Sampling is OpenAI's: temperature and top_p only (llama.cpp's extra top-k, min-p and
repeat penalty are switched off). What stays on the transformers model: requests with log-probabilities or
with a grammar constraint (tools, `response_format`), prompt log-probabilities (`echo`), every strategy,
adapter and fine-tuning job, so no score a run reported changes.

Weights: the embedded SmolLM2 runs from its own Q4_1 GGUF, the file tunewise de-quantises its weights from, so
both engines hold the same weights (llama.cpp multiplies them in 4-bit blocks with 8-bit activations, so its
text can differ slightly from fp32's). Any other base needs `--gguf FILE` (`tunewise export RUN --gguf`
writes one).

Errors: UserError when llama-cpp-python's server is not installed, or the server exits or does not start.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tunewise.errors import UserError

START_TIMEOUT_S = 300
# llama-cpp-python 0.3.36 built for this project's 2-core CPU crashed on batched prompt evaluation; the
# prompt is then evaluated a token at a time (generation speed is unaffected). Raise it where it works.
N_BATCH = int(os.environ.get("TUNEWISE_LLAMACPP_N_BATCH", "1"))
OFF = {"top_k": 0, "min_p": 0.0, "repeat_penalty": 1.0}  # OpenAI sampling semantics: no llama.cpp extras
INSTALL = ("--engine llamacpp needs llama-cpp-python's server: pip install 'tunewise[llamacpp]' (compiles "
           "llama.cpp: minutes), or set TUNEWISE_LLAMACPP_PYTHON to a python that has llama_cpp.server")


def llamacpp_python() -> str:
    """The interpreter that runs llama_cpp.server: TUNEWISE_LLAMACPP_PYTHON, else this one when it has the
    package (found without importing it). Raises UserError when neither does."""
    chosen = os.environ.get("TUNEWISE_LLAMACPP_PYTHON")
    if chosen:
        if not Path(chosen).is_file():
            raise UserError(f"TUNEWISE_LLAMACPP_PYTHON={chosen}: no such file; {INSTALL}")
        return chosen
    if importlib.util.find_spec("llama_cpp") is None:
        raise UserError(INSTALL)
    return sys.executable


class LlamaCppServer:
    """llama_cpp.server on `gguf` as a subprocess; `url` is its /v1 base URL. A context manager; `close` stops it
    (also at interpreter exit)."""

    def __init__(self, gguf: str | Path, threads: int | None = None, n_ctx: int = 2048, n_batch: int = N_BATCH,
                 python: str | None = None):
        from tunewise.endpoint import free_port

        self.gguf, self.port = Path(gguf), free_port()
        if not self.gguf.is_file():
            raise UserError(f"--gguf {self.gguf}: no such file")
        cmd = [python or llamacpp_python(), "-m", "llama_cpp.server", "--model", str(self.gguf), "--host",
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
                raise UserError(f"llama.cpp's server exited with code {self.proc.returncode} on {self.gguf}; its "
                                f"log: {self.log}")
            try:
                with urllib.request.urlopen(f"{self.url}/models", timeout=2) as r:
                    return json.loads(r.read())["data"][0]["id"]
            except OSError:
                time.sleep(0.25)
        self.close()
        raise UserError(f"llama.cpp's server did not start in {START_TIMEOUT_S} s; its log: {self.log}")

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


class LlamaCppEngine:
    """Raw generation of one base model on llama.cpp (`LlamaCppServer`), in the shape of serve/lm.py: `generate`
    returns lm.Choice lists, `stream` fills a transformers TextIteratorStreamer. `handles(params)` says whether a
    request goes here (no log-probabilities, no grammar constraint). Thread-safe: llama.cpp's server queues."""

    def __init__(self, gguf: str | Path, threads: int | None = None, n_ctx: int = 2048):
        try:
            import openai
        except ImportError:
            raise UserError(f"{INSTALL} (and the openai client: pip install openai)") from None
        self.server = LlamaCppServer(gguf, threads, n_ctx)
        self.client = openai.OpenAI(base_url=self.server.url, api_key="none", max_retries=0, timeout=600)

    @staticmethod
    def handles(params) -> bool:
        return params.logprobs is None and params.constraint is None

    def _request(self, p, i: int = 0) -> dict[str, Any]:
        return {"model": self.server.model, "max_tokens": p.max_tokens, "temperature": p.temperature,
                "top_p": p.top_p, "stop": list(p.stop) or None,
                "seed": None if p.seed is None else p.seed + i, "extra_body": OFF}

    def generate(self, prompts: list[str], p) -> list[list[Any]]:
        """p.n choices per prompt (one request each; a seed s gives choice i the seed s + i)."""
        from tunewise.serve.lm import Choice

        out = []
        for prompt in prompts:
            choices = []
            for i in range(p.n if p.temperature > 0 else 1):
                r = self.client.completions.create(prompt=prompt, **self._request(p, i))
                c = r.choices[0]
                choices.append(Choice(c.text, r.usage.completion_tokens, c.finish_reason or "stop"))
            out.append(choices * (p.n // len(choices)))
        return out

    def stream(self, prompt: str, p, streamer) -> int:
        """Put the text into `streamer` as llama.cpp generates it; returns the completion's tokens (counted from
        the tokens each chunk reports: `logprobs=1` makes the server list them)."""
        tokens = 0
        try:
            for chunk in self.client.completions.create(prompt=prompt, stream=True, logprobs=1, **self._request(p)):
                choice = chunk.choices[0] if chunk.choices else None
                if choice is None:
                    continue
                listed = choice.logprobs.tokens if choice.logprobs and choice.logprobs.tokens else None
                tokens += len(listed) if listed is not None else int(bool(choice.text))
                if choice.text:
                    streamer.on_finalized_text(choice.text)
        finally:
            streamer.on_finalized_text("", stream_end=True)
        return tokens

    def close(self) -> None:
        self.server.close()
