"""`tunewise serve --engine` (serve/engines.py): the int8 engine quantises a copy of the base model for raw
generation only (close to fp32, the original untouched), strategies and echo keep the fp32 model, and a
wrong or unusable engine is refused in one line before anything is served."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from typer.testing import CliRunner

from _serving import stored, tiny_run
from tunewise.cli import app
from tunewise.errors import UserError
from tunewise.serve import lm
from tunewise.serve.engines import check_engine, generation_backend, int8_model


@pytest.fixture(scope="module")
def local(tiny_causal):
    from tunewise.backends import load_backend

    return load_backend(tiny_causal, "causal", "cpu")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_causal, tiny_encoder):
    return tiny_run(tmp_path_factory.mktemp("engines"), tiny_causal, tiny_encoder)


def linears(model) -> int:
    return sum(isinstance(m, torch.nn.Linear) for m in model.modules())


@torch.no_grad()
def test_int8_copy_quantises_every_linear_and_stays_close(local):
    before = {k: v.clone() for k, v in local.model.state_dict().items()}
    quantised = int8_model(local.model)
    assert linears(local.model) > 0 and linears(quantised) == 0  # every Linear replaced in the copy only
    assert all(torch.equal(v, local.model.state_dict()[k]) for k, v in before.items())
    ids = local.tokenizer("The movie was good and the actors were great", return_tensors="pt")["input_ids"]
    exact, approx = local.model(ids).logits[0], quantised(ids).logits[0]
    assert not torch.equal(exact, approx)  # it really runs other kernels
    assert torch.nn.functional.cosine_similarity(exact, approx, dim=-1).min() > 0.95


def test_transformers_engine_is_the_backend_itself(local):
    assert generation_backend(local, "transformers") is local
    int8 = generation_backend(local, "int8")
    assert int8 is not local and int8.tokenizer is local.tokenizer and linears(int8.model) == 0


@pytest.mark.parametrize(("engine", "backend", "words"), [
    ("fast", None, "unknown engine"),
    ("int8", SimpleNamespace(name="m", capabilities=SimpleNamespace(local_weights=False),
                             device=torch.device("cpu")), "no local weights"),
    ("int8", SimpleNamespace(name="m", capabilities=SimpleNamespace(local_weights=True),
                             device=torch.device("meta")), "CPU only"),
])
def test_unusable_engines_are_refused_in_one_line(engine, backend, words):
    with pytest.raises(UserError, match=words) as err:
        check_engine(engine, backend)
    assert "\n" not in str(err.value) and f"--engine {engine}" in str(err.value)


def test_the_cli_refuses_an_unknown_engine_before_loading(run_dir):
    result = CliRunner().invoke(app, ["serve", str(run_dir), "--engine", "fast"])
    assert result.exit_code == 2
    assert "--engine fast: unknown engine; use one of: transformers, int8, llamacpp" in result.output
    assert "Traceback" not in result.output


def test_int8_hub_generates_with_the_copy_and_keeps_strategies_exact(run_dir, local):
    from tunewise.serve.hub import ModelHub

    hub = ModelHub(run_dir, strategies=["lora", "zero-shot"], device="cpu", log=lambda *a: None, engine="int8")
    base = hub.entry(hub.base_id)
    assert base.info["engine"] == "int8" and linears(base.generator.model) == 0 and linears(base.backend.model) > 0
    prompt = local.render([{"role": "user", "content": "Say something."}], True)
    (choice,) = hub.generate(base, prompt, lm.Params(max_tokens=8, temperature=0)).result(timeout=120)
    assert 1 <= choice.tokens <= 8 and choice.finish_reason in {"stop", "length"}
    # echo (prompt log-probabilities) and every strategy stay on the fp32 weights: nothing a run scored changes
    echoed = hub.echo(base, "The movie was good", 0).result(timeout=60)
    exact = lm.prompt_logprobs(local, "The movie was good", 0)["token_logprobs"]
    assert echoed["token_logprobs"][1:] == pytest.approx(exact[1:], abs=1e-5)
    for strategy in ("lora", "zero-shot"):
        rows = stored(run_dir, strategy)
        got = hub.predict(hub.entry(strategy), [r["input"] for r in rows]).result(timeout=120)
        assert [p.output for p in got] == [r["output"] for r in rows]


def test_int8_engine_answers_chat_and_streams_over_http(run_dir):
    from fastapi.testclient import TestClient

    from tunewise.serve import build_app

    app, hub, _ = build_app(run_dir, ["zero-shot"], device="cpu", log=lambda *a: None, engine="int8")
    client = TestClient(app)
    ask = {"model": hub.base_id, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 6, "temperature": 0}
    whole = client.post("/v1/chat/completions", json=ask).json()
    assert 1 <= whole["usage"]["completion_tokens"] <= 6
    streamed = client.post("/v1/chat/completions", json={**ask, "stream": True}).text
    chunks = [json.loads(line[6:]) for line in streamed.splitlines() if line.startswith("data: {")]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == whole["choices"][0]["message"]["content"]  # one engine for both paths: same greedy text
