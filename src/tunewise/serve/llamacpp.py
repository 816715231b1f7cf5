"""`tunewise serve --engine llamacpp`: the base model's raw generation on llama.cpp, in a process of its own.

llama.cpp decodes a small model on a CPU several times faster than transformers' `generate()` (its quantised
matrix-vector kernels read 4-8 bits per weight; bench/serve_throughput.py measures both side by side). The
engine starts a worker process that loads the GGUF with llama-cpp-python's `Llama` and answers one JSON line
per request on its stdin/stdout (`WORKER`); tunewise's own server stays the HTTP front. Not llama-cpp-python's
OpenAI server (`python -m llama_cpp.server`): on a 2-core CPU it decoded SmolLM2 at 22 tokens/s where its
library, in-process, decoded 158 (its HTTP threads compete with llama.cpp's spinning compute threads;
bench/serve_throughput.py prints both). A separate process because llama-cpp-python is compiled from source
and may live in another environment (`TUNEWISE_LLAMACPP_PYTHON`), and because it has crashed when imported into
a process that had already loaded torch.

What goes there: `/v1/chat/completions` and `/v1/completions` generation of the base model, streamed or not,
on the prompt tunewise rendered (the chat template), so the API and the usage figures stay the same. Sampling
is OpenAI's: temperature and top_p only (llama.cpp's extra top-k, min-p and repeat penalty are switched off).
What stays on the transformers model: requests with log-probabilities or with a grammar constraint (tools,
`response_format`), prompt log-probabilities (`echo`), every strategy, adapter and fine-tuning job, so no score
a run reported changes. llama.cpp decodes one sequence at a time: requests queue in the engine (a lock).

Weights: the embedded SmolLM2 runs from its own Q4_1 GGUF, the file tunewise de-quantises its weights from, so
both engines hold the same weights (llama.cpp multiplies them in 4-bit blocks with 8-bit activations, so its
text can differ slightly from fp32's). Any other base needs `--gguf FILE` (`tunewise export RUN --gguf`
writes one).

Errors: UserError when llama-cpp-python is not installed, or the worker exits or does not start.
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import os
import select
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from tunewise.errors import UserError

START_TIMEOUT_S = 300
# llama-cpp-python 0.3.36 built for this project's 2-core CPU crashed on batched prompt evaluation; the
# prompt is then evaluated a token at a time (generation speed is unaffected). Raise it where it works.
N_BATCH = int(os.environ.get("TUNEWISE_LLAMACPP_N_BATCH", "1"))
OFF = {"top_k": 0, "min_p": 0.0, "repeat_penalty": 1.0}  # OpenAI sampling semantics: no llama.cpp extras
INSTALL = ("--engine llamacpp needs llama-cpp-python: pip install 'tunewise[llamacpp]' (compiles llama.cpp: "
           "minutes), or set TUNEWISE_LLAMACPP_PYTHON to a python that has llama_cpp")

# The worker: one request per stdin line {prompt, max_tokens, temperature, top_p, stop, seed, stream}; it answers
# {"text": ...} lines while streaming, then {"done": true, "text", "tokens", "finish"} or {"error": ...}.
WORKER = r"""
import json, sys
import llama_cpp
from llama_cpp import Llama
gguf, off = sys.argv[1], json.loads(sys.argv[5])
threads, n_batch, n_ctx = (int(a) for a in sys.argv[2:5])
llm = Llama(model_path=gguf, n_threads=threads or None, n_batch=n_batch, n_ctx=n_ctx, verbose=False)
made, plain = [], llm.generate
def counted(*args, **kwargs):  # the tokens a streamed completion makes (its chunks do not say)
    for token in plain(*args, **kwargs):
        made.append(token)
        yield token
llm.generate = counted
def eog(token):
    try:
        return bool(llama_cpp.llama_vocab_is_eog(llm._model.vocab, token))
    except AttributeError:
        return token == llm.token_eos()
def send(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()
send({"ready": True})
for line in sys.stdin:
    r = json.loads(line)
    kw = dict(max_tokens=r["max_tokens"], temperature=r["temperature"], top_p=r["top_p"], stop=r["stop"] or None,
              seed=r["seed"], **off)
    try:
        if r["stream"]:
            text, finish = "", "stop"
            made.clear()
            for chunk in llm.create_completion(r["prompt"], stream=True, **kw):
                c = chunk["choices"][0]
                finish = c.get("finish_reason") or finish
                if c["text"]:
                    text += c["text"]
                    send({"text": c["text"]})
            tokens = len(made) - (1 if made and eog(made[-1]) else 0)  # the end token is not the answer's
            send({"done": True, "text": text, "tokens": tokens, "finish": finish})
        else:
            out = llm.create_completion(r["prompt"], **kw)
            c = out["choices"][0]
            send({"done": True, "text": c["text"], "tokens": out["usage"]["completion_tokens"],
                  "finish": c.get("finish_reason") or "stop"})
    except Exception as err:
        send({"error": f"{type(err).__name__}: {err}"})
"""


def llamacpp_python() -> str:
    """The interpreter that runs llama.cpp: TUNEWISE_LLAMACPP_PYTHON, else this one when it has the package
    (found without importing it). Raises UserError when neither does."""
    chosen = os.environ.get("TUNEWISE_LLAMACPP_PYTHON")
    if chosen:
        if not Path(chosen).is_file():
            raise UserError(f"TUNEWISE_LLAMACPP_PYTHON={chosen}: no such file; {INSTALL}")
        return chosen
    if importlib.util.find_spec("llama_cpp") is None:
        raise UserError(INSTALL)
    return sys.executable


class LlamaCppEngine:
    """Raw generation of one base model on llama.cpp (the `WORKER` process on `gguf`), in the shape of
    serve/lm.py: `generate` returns lm.Choice lists, `stream` fills a transformers TextIteratorStreamer.
    `handles(params)` says whether a request goes here (no log-probabilities, no grammar constraint).
    Thread-safe: requests take turns (a lock). `close` stops the worker (also at interpreter exit)."""

    def __init__(self, gguf: str | Path, threads: int | None = None, n_ctx: int = 2048, n_batch: int = N_BATCH,
                 python: str | None = None):
        self.gguf = Path(gguf)
        if not self.gguf.is_file():
            raise UserError(f"--gguf {self.gguf}: no such file")
        self.log = Path(tempfile.gettempdir()) / f"tunewise-llamacpp-{os.getpid()}-{id(self)}.log"
        cmd = [python or llamacpp_python(), "-c", WORKER, str(self.gguf), str(threads or 0), str(n_batch),
               str(n_ctx), json.dumps(OFF)]
        with open(self.log, "wb") as err:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
                                         bufsize=1)
        self._lock = threading.Lock()
        atexit.register(self.close)
        self._wait()

    def _wait(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise UserError(f"llama.cpp exited with code {self.proc.returncode} on {self.gguf}; its log: "
                                f"{self.log}")
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.5)
            if ready and json.loads(self.proc.stdout.readline() or "{}").get("ready"):
                return
        self.close()
        raise UserError(f"llama.cpp did not load {self.gguf} in {START_TIMEOUT_S} s; its log: {self.log}")

    @staticmethod
    def handles(params) -> bool:
        return params.logprobs is None and params.constraint is None

    def _ask(self, prompt: str, p, stream: bool, seed: int | None, on_text=None) -> dict[str, Any]:
        """One request to the worker (the caller holds the lock); `on_text(piece)` sees streamed text."""
        request = {"prompt": prompt, "max_tokens": p.max_tokens, "temperature": p.temperature, "top_p": p.top_p,
                   "stop": list(p.stop), "seed": seed, "stream": stream}
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"llama.cpp exited (code {self.proc.poll()}); its log: {self.log}")
            answer = json.loads(line)
            if "error" in answer:
                raise RuntimeError(f"llama.cpp: {answer['error']}")
            if answer.get("done"):
                return answer
            on_text(answer["text"])

    def generate(self, prompts: list[str], p) -> list[list[Any]]:
        """p.n choices per prompt (one request each; a seed s gives choice i the seed s + i)."""
        from tunewise.serve.lm import Choice

        out = []
        with self._lock:
            for prompt in prompts:
                choices = []
                for i in range(p.n if p.temperature > 0 else 1):
                    r = self._ask(prompt, p, False, None if p.seed is None else p.seed + i)
                    choices.append(Choice(r["text"], r["tokens"], r["finish"]))
                out.append(choices * (p.n // len(choices)))
        return out

    def stream(self, prompt: str, p, streamer) -> int:
        """Put the text into `streamer` as llama.cpp generates it; returns the completion's tokens (counted by the
        worker as its generator makes them)."""
        try:
            with self._lock:
                return self._ask(prompt, p, True, p.seed, lambda piece: streamer.on_finalized_text(piece))["tokens"]
        finally:
            streamer.on_finalized_text("", stream_end=True)

    def close(self) -> None:
        """Stop the worker: end of its input, then SIGTERM, then SIGKILL."""
        if self.proc.poll() is not None:
            return
        try:
            self.proc.stdin.close()
            self.proc.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
