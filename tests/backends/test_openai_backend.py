"""The `openai:` backend end to end with the real openai SDK: a whole `tunewise run` against `tunewise serve`
(a real process that demands a key), echo scoring that matches the local model, generation with parsing
onto the labels; and against a scripted stub server: label arithmetic from top log-probabilities,
retries on 429/500/timeouts, and the response cache. The key never lands in any file."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from _serving import THREADS, Stub, chat_reply, error_reply, run_folder, stored, tiny_run, write_config
from tunewise.backends import load_backend
from tunewise.backends._api_text import label_logprobs, parse_label, parse_lines, render_lines
from tunewise.cli import app
from tunewise.errors import UserError
from tunewise.serve.process import ServerProcess

KEY = "sk-tunewise-test-0123456789abcdef"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_causal, tiny_encoder):
    return tiny_run(tmp_path_factory.mktemp("served"), tiny_causal, tiny_encoder)


@pytest.fixture(scope="module")
def server(run_dir, tmp_path_factory):
    state = tmp_path_factory.mktemp("state")
    with ServerProcess(run_dir, [*THREADS, "--api-key-env", "TW_SERVE_KEY", "--state-dir", str(state)],
                       env={"TW_SERVE_KEY": KEY}) as proc:
        yield proc


@pytest.fixture
def api_env(monkeypatch, tmp_path):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("TUNEWISE_OPENAI_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def served_requests(server) -> int:
    import urllib.request

    with urllib.request.urlopen(server.url.removesuffix("/v1") + "/health", timeout=10) as r:
        return json.loads(r.read())["requests"]


def base_name(tiny_causal: str) -> str:
    return tiny_causal.rstrip("/").rsplit("/", 1)[-1]


def test_run_through_the_api_then_rerun_from_cache_and_never_store_the_key(
        tmp_path, server, run_dir, tiny_causal, api_env, smollm2_tokenizer):
    model = f"openai:{base_name(tiny_causal)}?base_url={server.url}"
    cfg = write_config(tmp_path / "api.yaml", task={"source": str(run_dir.parent.parent / "sentiment.csv"),
                                                     "test_size": 0.3, "validation_size": 0.1},
                       model=model, strategies=["zero-shot", {"name": "few-shot", "k": 2}],
                       output_dir=str(tmp_path / "runs"), seed=1)
    first = CliRunner().invoke(app, ["run", str(cfg)])
    assert first.exit_code == 0, first.output
    folder = run_folder(first.output)
    results = json.loads((folder / "results.json").read_text())
    assert [r["status"] for r in results if r["family"] != "baseline"] == ["done", "done"]
    rows = stored(folder, "zero-shot")
    assert all(abs(sum(r["scores"].values()) - 1) < 1e-6 for r in rows)
    # Prompt tokens come from the server's usage: the chat template's tokens, not an estimate.
    task = json.loads((folder / "splits.json").read_text())
    messages = [{"role": "system", "content": f"{task['instruction']}\nAnswer with exactly one of: negative, "
                 "positive."}, {"role": "user", "content": rows[0]["input"]}]
    rendered = smollm2_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert rows[0]["prompt_tokens"] == len(smollm2_tokenizer(rendered, add_special_tokens=False)["input_ids"])
    # A re-run answers from the cache: the server sees no request at all.
    before = served_requests(server)
    again = CliRunner().invoke(app, ["run", str(cfg)])
    assert again.exit_code == 0, again.output
    assert served_requests(server) == before
    assert [r["output"] for r in stored(run_folder(again.output), "zero-shot")] == [r["output"] for r in rows]
    secret = KEY.encode()
    for path in [*folder.rglob("*"), *run_folder(again.output).rglob("*"), *api_env.rglob("*")]:
        if path.is_file():
            assert secret not in path.read_bytes(), f"the API key leaked into {path}"
    assert KEY not in first.output + again.output


def test_a_wrong_key_is_one_line_that_never_shows_it(tmp_path, server, tiny_causal, api_env, monkeypatch):
    wrong = "sk-wrong-key-that-must-not-be-printed"
    monkeypatch.setenv("OPENAI_API_KEY", wrong)
    result = CliRunner().invoke(app, ["run", "--task", "demo", "--limit", "3", "--strategies", "zero-shot",
                                      "--model", f"openai:{base_name(tiny_causal)}?base_url={server.url}",
                                      "--output", str(tmp_path / "runs")])
    assert result.exit_code == 2
    assert "refused the key in $OPENAI_API_KEY" in result.output and wrong not in result.output
    assert "Traceback" not in result.output


def test_echo_scoring_matches_the_local_model(server, tiny_causal, api_env):
    backend = load_backend(f"openai:{base_name(tiny_causal)}?base_url={server.url}&mode=completion", "causal")
    assert backend.capabilities.supports_logprobs
    local = load_backend(tiny_causal, "causal", "cpu")
    shared = [{"role": "system", "content": "Is the review positive or negative?"}]
    prefix, suffix = backend.split_prompt(shared, [{"role": "user", "content": "the staff was superb"}])
    conts = [backend.answer_prefix() + label + backend.end_of_turn() for label in ("negative", "positive")]
    got = backend.score(prefix, [suffix], conts)
    for j, cont in enumerate(conts):
        enc = local.tokenizer(prefix + suffix + cont, add_special_tokens=False, return_offsets_mapping=True)
        ids = enc["input_ids"]
        with torch.no_grad():
            logp = torch.log_softmax(local.model(input_ids=torch.tensor([ids])).logits[0].float(), -1)
        start = len(prefix + suffix)
        want = sum(float(logp[i - 1, ids[i]]) for i, (s, e) in enumerate(enc["offset_mapping"]) if e > start)
        assert got[0, j] == pytest.approx(want, abs=1e-3)


def test_generation_without_logprobs_parses_onto_the_labels(server, tiny_causal, api_env, small_task, tmp_path):
    from tunewise.registry import strategies, strategy_config
    from tunewise.strategies.base import FitContext
    from tunewise.strategies.prompting._common import GenerationPredictor

    backend = load_backend(f"openai:{base_name(tiny_causal)}?base_url={server.url}&logprobs=false", "causal")
    cfg = strategy_config({"name": "zero-shot", "max_new_tokens": 4})
    predictor = strategies()["zero-shot"](cfg).fit(backend, small_task, FitContext(tmp_path, 0))
    assert isinstance(predictor, GenerationPredictor)
    preds = predictor.predict(small_task.test[:3])
    assert all(p.output in small_task.labels and p.completion_tokens > 0 and p.prompt_tokens > 0 for p in preds)


def test_chat_label_scoring_reads_the_first_token_alternatives(api_env):
    stub = Stub(lambda path, body: chat_reply("pos", [("pos", -0.2), ("neg", -1.8), ("The", -3.0)]))
    try:
        backend = load_backend(f"openai:m?base_url={stub.url}", "causal")
        assert backend.capabilities.supports_logprobs  # probed once
        prefix, suffix = backend.split_prompt([{"role": "system", "content": "s"}], [{"role": "user", "content": "q"}])
        row = backend.score(prefix, [suffix], ["negative", "positive"])[0]
        p = np.exp(row) / np.exp(row).sum()
        assert p[1] == pytest.approx(np.exp(-0.2) / (np.exp(-0.2) + np.exp(-1.8)))
        sent = stub.requests[-1][1]
        assert sent["logprobs"] is True and sent["max_tokens"] == 1 and sent["messages"][0]["content"] == "s"
        # "ne" begins both labels and outweighs them: the backend answers and parses instead.
        stub.default = lambda path, body: chat_reply("neutral" if body.get("logprobs") else "Neutral.",
                                                     [("ne", -0.1), ("neg", -3.0)])
        prefix, suffix = backend.split_prompt([{"role": "system", "content": "s"}],
                                              [{"role": "user", "content": "another query"}])
        row = backend.score(prefix, [suffix], ["negative", "neutral"])[0]
        assert int(np.argmax(row)) == 1 and not stub.requests[-1][1].get("logprobs")
    finally:
        stub.close()


def test_retries_with_backoff_on_429_500_and_timeouts(api_env):
    stub = Stub(lambda path, body: chat_reply("positive"))
    fast = {"retry-after-ms": "5"}
    try:
        backend = load_backend(f"openai:m?base_url={stub.url}&logprobs=false&max_retries=3&timeout=1", "causal")
        stub.replies = [(429, error_reply(429), fast, 0), (500, error_reply(500), fast, 0),
                        (200, chat_reply("x"), {}, 2.5)]
        assert backend.generate([render_lines([{"role": "user", "content": "hi"}])]) == [("positive", 2)]
        assert len(stub.requests) == 4  # 429, 500, a timeout, then the answer
        stingy = load_backend(f"openai:m?base_url={stub.url}&logprobs=false&max_retries=1&cache_dir=off", "causal")
        stub.replies = [(429, error_reply(429), fast, 0)] * 2
        with pytest.raises(UserError, match="rate-limited after 1 retries") as info:
            stingy.generate(["something else"])
        assert "\n" not in str(info.value)
    finally:
        stub.close()


def test_the_cache_answers_repeated_requests(api_env):
    stub = Stub(lambda path, body: chat_reply("negative"))
    try:
        name = f"openai:m?base_url={stub.url}&logprobs=false"
        prompts = [render_lines([{"role": "user", "content": f"review {i}"}]) for i in range(5)]
        first = load_backend(name, "causal").generate(prompts)
        assert len(stub.requests) == 5
        again = load_backend(name, "causal")  # a new process would see the same: the cache is on disk
        assert again.generate(prompts) == first and len(stub.requests) == 5
        assert again.count_tokens(prompts[0]) == 11  # usage from the cached response
    finally:
        stub.close()


def test_names_settings_and_text_helpers(monkeypatch):
    with pytest.raises(UserError, match="never put a key"):
        load_backend("openai:gpt-4o-mini?api_key=sk-x", "causal")
    with pytest.raises(UserError, match="concurrency"):
        load_backend("openai:gpt-4o-mini?concurrency=0", "causal")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(UserError, match="export OPENAI_API_KEY"):
        load_backend("openai:gpt-4o-mini", "causal")
    messages = [{"role": "system", "content": "a\nb"}, {"role": "user", "content": "q"}]
    assert parse_lines(render_lines(messages)) == messages
    assert parse_lines(render_lines(messages) + "Let's think.")[-1]["content"] == "q\n\nLet's think."
    assert parse_label("The answer is: Positive!", ["negative", "positive"]) == "positive"
    assert label_logprobs([("The", -0.1)], ["negative", "positive"]) is None
