"""`tunewise serve` as a real process, driven by the official openai SDK: strategies answer exactly as the
run scored them, 32 concurrent requests, streaming, log-probabilities that match the local model, and
OpenAI-shaped 4xx errors for bad input that never bring the server down."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
import torch

from _serving import THREADS, stored, tiny_run
from tunewise.serve import lm
from tunewise.serve.process import ServerProcess

SERVED = ["zero-shot", "few-shot", "lora", "head-only"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_causal, tiny_encoder):
    return tiny_run(tmp_path_factory.mktemp("served"), tiny_causal, tiny_encoder)


@pytest.fixture(scope="module")
def server(run_dir, tmp_path_factory):
    with ServerProcess(run_dir, [*THREADS, "--state-dir", str(tmp_path_factory.mktemp("state"))]) as proc:
        yield proc


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def local(tiny_causal):
    from tunewise.backends import load_backend

    return load_backend(tiny_causal, "causal", "cpu")


def raw_post(server, path: str, data: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(server.url + path, data=data, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_models_lists_the_strategies_and_the_base(client, tiny_causal):
    cards = {m.id: m for m in client.models.list()}
    base = tiny_causal.rstrip("/").rsplit("/", 1)[-1]
    assert set(SERVED) | {base} <= set(cards)
    assert cards["lora"].model_extra["tunewise"]["labels"] == ["negative", "positive"]
    assert client.models.retrieve("head-only").id == "head-only"


@pytest.mark.parametrize("strategy", SERVED)
def test_each_strategy_answers_as_the_run_scored_it(client, run_dir, strategy):
    rows = stored(run_dir, strategy)
    for row in rows:
        reply = client.chat.completions.create(model=strategy, messages=[{"role": "user", "content": row["input"]}])
        assert reply.choices[0].message.content == row["output"]
        assert reply.usage.prompt_tokens == row["prompt_tokens"]
    classified = client.post("/classify", body={"model": strategy, "input": [r["input"] for r in rows]},
                             cast_to=object)
    for row, item in zip(rows, classified["data"], strict=True):
        assert item["label"] == row["output"]
        for label, p in row["scores"].items():
            assert item["probabilities"][label] == pytest.approx(p, abs=1e-4)


def test_32_concurrent_requests_are_all_answered_correctly(client, run_dir, server):
    jobs = [(s, row) for s in ("zero-shot", "lora", "head-only") for row in stored(run_dir, s)]
    jobs = (jobs * 32)[:32]

    def ask(job):
        strategy, row = job
        reply = client.chat.completions.create(model=strategy, messages=[{"role": "user", "content": row["input"]}])
        return reply.choices[0].message.content == row["output"]

    with ThreadPoolExecutor(32) as pool:
        assert all(pool.map(ask, jobs))
    assert server.alive()


def test_streaming_matches_the_whole_answer(client, tiny_causal):
    base = tiny_causal.rstrip("/").rsplit("/", 1)[-1]
    messages = [{"role": "user", "content": "Say something about the battery."}]
    n = 2 * lm.STREAM_SLICE + 8  # the stream takes three turns on the model thread (serve/lm.py `Stream`)
    whole = client.chat.completions.create(model=base, messages=messages, max_tokens=n, temperature=0)
    assert whole.usage.completion_tokens > 2 * lm.STREAM_SLICE
    chunks = list(client.chat.completions.create(model=base, messages=messages, max_tokens=n, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [whole.choices[0].finish_reason]
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    streamed = list(client.chat.completions.create(model="lora", messages=messages, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in streamed) in ("negative", "positive")


def test_chat_logprobs_match_the_local_model(client, local, tiny_causal):
    base = tiny_causal.rstrip("/").rsplit("/", 1)[-1]
    messages = [{"role": "user", "content": "the screen was awful"}]
    reply = client.chat.completions.create(model=base, messages=messages, max_tokens=1, temperature=0,
                                           logprobs=True, top_logprobs=5)
    top = reply.choices[0].logprobs.content[0].top_logprobs
    ids = local.encode(local.render(messages, add_generation_prompt=True))
    with torch.no_grad():
        logp = torch.log_softmax(local.model(input_ids=torch.tensor([ids])).logits[0, -1].float(), -1)
    values, best = torch.topk(logp, 5)
    assert [t.token for t in top] == [local.tokenizer.decode([int(i)]) for i in best]
    assert [t.logprob for t in top] == pytest.approx(values.tolist(), abs=1e-4)


def test_completions_echo_scores_the_prompt(client, local, tiny_causal):
    base = tiny_causal.rstrip("/").rsplit("/", 1)[-1]
    prompt = "Input: the app was great\nOutput: positive"
    reply = client.completions.create(model=base, prompt=prompt, max_tokens=0, echo=True, logprobs=0)
    lp = reply.choices[0].logprobs
    assert reply.choices[0].text == prompt and lp.token_logprobs[0] is None
    assert "".join(lp.tokens) == prompt and lp.text_offset[0] == 0
    ids = local.encode(prompt)
    with torch.no_grad():
        logp = torch.log_softmax(local.model(input_ids=torch.tensor([ids])).logits[0].float(), -1)
    expected = [float(logp[i - 1, ids[i]]) for i in range(1, len(ids))]
    assert lp.token_logprobs[1:] == pytest.approx(expected, abs=1e-4)
    generated = client.completions.create(model=base, prompt=["a", "b"], max_tokens=3, temperature=0, n=2)
    assert [c.index for c in generated.choices] == [0, 1, 2, 3]


def test_bad_input_gets_openai_shaped_errors_and_the_server_survives(client, server, tiny_causal):
    base = tiny_causal.rstrip("/").rsplit("/", 1)[-1]
    status, body = raw_post(server, "/chat/completions", b'{"model": "lora", "messages": [')
    assert status == 400 and body["error"]["code"] == "invalid_json" and body["error"]["type"]
    status, body = raw_post(server, "/chat/completions", b"[1, 2]")
    assert status == 400 and "message" in body["error"]
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    assert info.value.body["code"] == "model_not_found"
    user = [{"role": "user", "content": "hi"}]
    bad = [dict(model=base, messages=user, temperature=5), dict(model=base, messages=user, n=0),
           dict(model=base, messages=[]), dict(model=base, messages=[{"role": "robot", "content": "x"}]),
           dict(model=base, messages=user, top_logprobs=3), dict(model=base, messages=user, max_tokens=100_000),
           dict(model=base, messages=user, max_tokens=1000, stop=["a", "b", "c", "d", "e"])]
    for kwargs in bad:
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(**kwargs)
        assert set(info.value.body) >= {"message", "type", "param", "code"}, kwargs
    with pytest.raises(openai.BadRequestError, match="context length"):
        client.chat.completions.create(model=base, messages=[{"role": "user", "content": "word " * 2000}])
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="lora", prompt="x", echo=True, logprobs=0)
    with pytest.raises(openai.BadRequestError):
        client.post("/classify", body={"model": base, "input": "x"}, cast_to=object)
    with pytest.raises(openai.NotFoundError):
        client.get("/no/such/route", cast_to=object)
    assert server.alive()
    assert len(client.models.list().data) >= len(SERVED)
