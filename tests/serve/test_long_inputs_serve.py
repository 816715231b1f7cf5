"""Inputs longer than the context at the edges: `tunewise serve` answers an OpenAI-shaped 400
context_length_exceeded unless the request asks for `truncation: "auto"`, and stays up; the `openai:`
backend cuts inputs to a declared `context_window` and turns a server's context error into one line."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from _serving import THREADS, Stub, chat_reply, tiny_run
from test_long_inputs import fit, long_task
from tunewise.backends import load_backend
from tunewise.errors import UserError
from tunewise.serve.process import ServerProcess

LONG = "please route this message " + "and more words " * 600  # ~1,800 tokens: over the tiny model's 1,024


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_causal, tiny_encoder):
    run_dir = tiny_run(tmp_path_factory.mktemp("served"), tiny_causal, tiny_encoder)
    with ServerProcess(run_dir, [*THREADS, "--state-dir", str(tmp_path_factory.mktemp("state"))]) as proc:
        yield proc


def post(server, path: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(server.url + path, data=json.dumps(body).encode(),
                                     headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def too_long(status: int, body: dict, param: str) -> bool:
    return status == 400 and body["error"]["code"] == "context_length_exceeded" and body["error"]["param"] == param


def test_strategy_refuses_an_over_long_input_unless_truncation_is_asked(server):
    chat = {"model": "zero-shot", "messages": [{"role": "user", "content": LONG}]}
    status, body = post(server, "/chat/completions", chat)
    assert too_long(status, body, "messages") and "truncation" in body["error"]["message"]
    status, body = post(server, "/chat/completions", {**chat, "truncation": "auto"})
    assert status == 200 and body["choices"][0]["message"]["content"] in ("negative", "positive")
    status, body = post(server, "/classify", {"model": "few-shot", "input": ["great product", LONG]})
    assert too_long(status, body, "input[1]")
    status, body = post(server, "/classify", {"model": "few-shot", "input": ["great product", LONG],
                                              "truncation": "auto"})
    assert status == 200 and len(body["data"]) == 2


def test_raw_model_refuses_or_truncates_and_the_server_stays_up(server, tiny_causal):
    base = tiny_causal.rstrip("/").rsplit("/", 1)[-1]
    chat = {"model": base, "max_tokens": 2, "messages": [{"role": "system", "content": "Be brief."},
                                                         {"role": "user", "content": LONG}]}
    assert too_long(*post(server, "/chat/completions", chat), "messages")
    status, body = post(server, "/chat/completions", {**chat, "truncation": "auto"})
    assert status == 200 and body["usage"]["prompt_tokens"] + 2 <= 1024
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {
        "type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}}]
    assert too_long(*post(server, "/chat/completions", {**chat, "tools": tools}), "messages")
    status, body = post(server, "/chat/completions", {**chat, "tools": tools, "truncation": "auto"})
    assert status == 200 and body["usage"]["prompt_tokens"] + 2 <= 1024  # the tool prompt is kept, the input cut
    completion = {"model": base, "prompt": LONG, "max_tokens": 2}
    assert too_long(*post(server, "/completions", completion), "prompt")
    status, body = post(server, "/completions", {**completion, "truncation": "auto"})
    assert status == 200 and body["usage"]["prompt_tokens"] + 2 <= 1024
    with urllib.request.urlopen(server.url.removesuffix("/v1") + "/health", timeout=10) as r:
        assert json.loads(r.read())["status"] == "ok"


def test_api_backend_cuts_inputs_to_a_declared_context(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNEWISE_OPENAI_CACHE_DIR", "off")
    stub = Stub(lambda path, body: chat_reply("delivery"))
    try:
        backend = load_backend(f"openai:m?base_url={stub.url}&logprobs=false&context_window=200", "causal")
        task = long_task()
        preds = fit("zero-shot", backend, task, tmp_path, max_new_tokens=16).predict(task.test)
        assert preds[-1].trace[0]["step"] == "truncated" and all(p.output == "delivery" for p in preds)
        sent = next(body["messages"] for _, body in stub.requests if "w0 w1" in json.dumps(body))
        assert sent[0]["role"] == "system" and task.instruction in sent[0]["content"]
        assert sent[-1]["content"].startswith("where is my delivery w0") and "LASTWORD" not in sent[-1]["content"]
    finally:
        stub.close()


def test_api_server_context_error_is_one_line_that_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNEWISE_OPENAI_CACHE_DIR", "off")
    refusal = {"error": {"message": "This model's maximum context length is 4096 tokens. However, your messages "
                                    "resulted in 9000 tokens.", "type": "invalid_request_error",
                         "param": "messages", "code": "context_length_exceeded"}}
    stub = Stub()
    try:
        backend = load_backend(f"openai:m?base_url={stub.url}&logprobs=false&max_retries=0", "causal")
        stub.replies = [(400, refusal, {}, 0.0)]
        with pytest.raises(UserError, match="longer than the model's context.*context_window") as err:
            backend.generate(["x " * 9000], max_new_tokens=4)
        assert "\n" not in str(err.value)
    finally:
        stub.close()
