"""`tunewise serve --engine llamacpp` (serve/llamacpp.py): the base model's plain generation runs on llama.cpp
(llama-cpp-python's `Llama` in a worker process) on a GGUF of it; log-probabilities, grammar-constrained requests
and every strategy stay on the transformers model; wrong set-ups are refused in one line.

The end-to-end tests need llama-cpp-python (compiled from source, minutes: never installed by
`make test`): they run where TUNEWISE_LLAMACPP_PYTHON names a python that has it (bench/llamacpp_peer.py builds
one) or this python has it, and are skipped otherwise."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from _serving import stored, tiny_run
from tunewise.backends.embedded import SMOLLM2, embedded_gguf
from tunewise.cli import app
from tunewise.errors import UserError
from tunewise.serve.engines import gguf_for

HAS_LLAMACPP = bool(os.environ.get("TUNEWISE_LLAMACPP_PYTHON")) or importlib.util.find_spec("llama_cpp") is not None
needs_llamacpp = pytest.mark.skipif(not HAS_LLAMACPP, reason="llama-cpp-python is not installed (set "
                                    "TUNEWISE_LLAMACPP_PYTHON; bench/llamacpp_peer.py builds one)")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_causal, tiny_encoder):
    return tiny_run(tmp_path_factory.mktemp("llamacpp"), tiny_causal, tiny_encoder)


def test_the_embedded_model_runs_from_its_own_gguf_and_others_need_one():
    assert gguf_for("llamacpp", SMOLLM2, None) == str(embedded_gguf(SMOLLM2))
    assert gguf_for("llamacpp", "some/model", "/x/model.gguf") == "/x/model.gguf"
    assert gguf_for("transformers", "some/model", None) is None
    with pytest.raises(UserError, match="not an embedded model, so give its GGUF with --gguf FILE"):
        gguf_for("llamacpp", "some/model", None)
    with pytest.raises(UserError, match="--gguf is for --engine llamacpp, not --engine int8"):
        gguf_for("int8", "some/model", "/x/model.gguf")


def test_without_llama_cpp_the_engine_says_how_to_install_it(monkeypatch):
    from tunewise.serve import llamacpp

    monkeypatch.delenv("TUNEWISE_LLAMACPP_PYTHON", raising=False)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(UserError, match=r"pip install 'tunewise\[llamacpp\]'"):
        llamacpp.llamacpp_python()
    monkeypatch.setenv("TUNEWISE_LLAMACPP_PYTHON", "/no/such/python")
    with pytest.raises(UserError, match="TUNEWISE_LLAMACPP_PYTHON=/no/such/python: no such file"):
        llamacpp.llamacpp_python()


def test_the_cli_refuses_llamacpp_on_a_base_without_gguf(run_dir):
    result = CliRunner().invoke(app, ["serve", str(run_dir), "--engine", "llamacpp"])
    assert result.exit_code == 2
    assert "is not an embedded model, so give its GGUF with --gguf FILE" in result.output
    assert "Traceback" not in result.output


@pytest.fixture(scope="module")
def served(run_dir, tiny_causal, smollm2_tokenizer, tmp_path_factory):
    """(TestClient, hub) with the tiny base exported to an exact f32 GGUF and run by llama.cpp."""
    from fastapi.testclient import TestClient
    from transformers import AutoModelForCausalLM

    from tunewise.backends.gguf import write_gguf
    from tunewise.serve import build_app

    gguf = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    write_gguf(AutoModelForCausalLM.from_pretrained(tiny_causal), smollm2_tokenizer, gguf, embedded_gguf(SMOLLM2),
               "f32")
    app_, hub, _ = build_app(run_dir, ["lora", "zero-shot"], device="cpu", log=lambda *a: None, engine="llamacpp",
                             gguf=str(gguf), threads=1)
    yield TestClient(app_), hub
    hub.close()
    assert hub.external.proc.poll() is not None  # the llama.cpp worker is stopped


@needs_llamacpp
def test_llamacpp_generates_the_transformers_greedy_text_and_streams_it(served, run_dir):
    from fastapi.testclient import TestClient

    from tunewise.serve import build_app

    client, hub = served
    base = hub.entry(hub.base_id)
    assert base.engine is not None and base.info["engine"] == "llamacpp" and base.info["gguf"] == "tiny.gguf"
    ask = {"model": hub.base_id, "messages": [{"role": "user", "content": "Tell me about films."}],
           "max_tokens": 8, "temperature": 0}
    fast = client.post("/v1/chat/completions", json=ask).json()
    exact_app, exact_hub, _ = build_app(run_dir, ["zero-shot"], device="cpu", log=lambda *a: None)
    exact = TestClient(exact_app).post("/v1/chat/completions", json=ask).json()
    # the same f32 weights on two engines: the same greedy text and the same usage figures
    assert fast["choices"][0]["message"]["content"] == exact["choices"][0]["message"]["content"]
    assert fast["usage"] == exact["usage"]
    streamed = client.post("/v1/chat/completions", json={**ask, "stream": True,
                                                         "stream_options": {"include_usage": True}}).text
    chunks = [json.loads(line[6:]) for line in streamed.splitlines() if line.startswith("data: {")]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == fast["choices"][0]["message"]["content"]
    assert chunks[-1]["usage"]["completion_tokens"] == fast["usage"]["completion_tokens"]
    legacy = client.post("/v1/completions", json={"model": hub.base_id, "prompt": "The movie", "max_tokens": 5,
                                                  "temperature": 0}).json()
    assert legacy["usage"]["completion_tokens"] <= 5 and legacy["choices"][0]["finish_reason"] in {"stop", "length"}


@needs_llamacpp
def test_logprobs_and_strategies_stay_on_the_transformers_model(served, run_dir):
    client, hub = served
    ask = {"model": hub.base_id, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4,
           "temperature": 0, "logprobs": True, "top_logprobs": 2}
    got = client.post("/v1/chat/completions", json=ask).json()
    assert got["choices"][0]["logprobs"]["content"]  # llama.cpp is not asked: the transformers path answers
    for strategy in ("lora", "zero-shot"):
        rows = stored(run_dir, strategy)
        preds = hub.predict(hub.entry(strategy), [r["input"] for r in rows]).result(timeout=120)
        assert [p.output for p in preds] == [r["output"] for r in rows]


def test_sigterm_ends_serve_through_its_finally_blocks():
    """uvicorn re-raises SIGTERM after its graceful shutdown; with the default handler the process would die
    before `hub.close()` stops the llamacpp engine's server (an orphan). Inside serve it raises SystemExit."""
    import signal

    from tunewise.serve import _sigterm_exits

    before = signal.getsignal(signal.SIGTERM)
    closed = []
    with pytest.raises(SystemExit) as exited:
        try:
            with _sigterm_exits():
                signal.raise_signal(signal.SIGTERM)
        finally:
            closed.append(True)
    assert exited.value.code == 128 + signal.SIGTERM and closed == [True]
    assert signal.getsignal(signal.SIGTERM) is before


@needs_llamacpp
def test_stopping_serve_stops_the_llamacpp_server_it_started(run_dir, tiny_causal, smollm2_tokenizer, tmp_path):
    import subprocess

    from transformers import AutoModelForCausalLM

    from tunewise.backends.gguf import write_gguf
    from tunewise.serve.process import ServerProcess

    gguf = tmp_path / "tiny.gguf"
    write_gguf(AutoModelForCausalLM.from_pretrained(tiny_causal), smollm2_tokenizer, gguf, embedded_gguf(SMOLLM2),
               "f32")

    def children() -> list[str]:  # llama.cpp workers on this GGUF (not the serve process naming it in --gguf)
        found = subprocess.run(["pgrep", "-f", "import llama_cpp"], capture_output=True, text=True).stdout.split()
        return [pid for pid in found if str(gguf).encode() in Path(f"/proc/{pid}/cmdline").read_bytes()]

    with ServerProcess(run_dir, ["--engine", "llamacpp", "--gguf", str(gguf), "--threads", "1"]):
        assert len(children()) == 1
    assert children() == []
