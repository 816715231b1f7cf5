"""The server's OpenAPI schema (/openapi.json) fuzzed with Schemathesis, in process over ASGI, on a tiny run:
every operation gets a bounded number of generated requests (derandomized: the same ones every run), and none
may get a 5xx or take the server down. `model` is often set to a served model so that requests reach the
models, not only the 404; generation lengths are capped to keep the test in seconds (this fuzzes input
handling, not generation speed)."""

from __future__ import annotations

import json

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from starlette.testclient import TestClient

from _serving import tiny_run
from tunewise.serve import build_app


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_causal, tiny_encoder):
    run_dir = tiny_run(tmp_path_factory.mktemp("served"), tiny_causal, tiny_encoder)
    app, hub, jobs = build_app(run_dir, state_dir=tmp_path_factory.mktemp("fuzz-state"), log=lambda line: None)
    assert jobs is not None  # the files and fine-tuning routes are fuzzed too
    return app, sorted(hub.entries)


def _aim(body, models: list[str]) -> None:
    """Point most generated requests at a served model, and cap how much they may generate."""
    if not isinstance(body, dict):
        return
    if isinstance(body.get("model"), str) and len(body["model"]) % 4:
        body["model"] = models[len(body["model"]) % len(models)]
    for key in ("max_tokens", "max_completion_tokens"):
        if isinstance(body.get(key), int) and body[key] > 8:
            body[key] = 8
    if isinstance(body.get("n"), int) and body["n"] > 2:
        body["n"] = 2


STATS = []
FUZZ = settings(max_examples=20, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def test_no_generated_request_gets_a_5xx(served):
    app, models = served
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {f"{op.method.upper()} {op.path}" for op in operations} >= {
        "POST /v1/chat/completions", "POST /v1/completions", "POST /v1/classify", "POST /v1/files",
        "POST /v1/fine_tuning/jobs", "GET /v1/models/{model_id}"}
    health = TestClient(app)
    for operation in operations:
        @FUZZ
        @given(case=operation.as_strategy())
        def no_5xx(case):
            _aim(case.body, models)
            response = case.call()
            STATS.append((case.method, case.path, response.status_code, response.text[:80]))
            where = f"{case.method} {case.formatted_path}: {response.status_code}"
            assert response.status_code < 500, f"{where} {response.text[:500]}"
            if response.status_code >= 400:  # an OpenAI-shaped error, so that clients raise their usual exception
                error = json.loads(response.text or "{}").get("error")
                assert isinstance(error, dict) and error.get("message"), f"{where} {response.text[:500]}"
            assert health.get("/health").status_code == 200

        no_5xx()
    import collections
    print(collections.Counter((m, p, c) for m, p, c, _ in STATS))
    print([t for t in STATS if t[2] == 200 and 'chat' in t[1]][:3])


def test_a_vanishing_temperature_decodes_greedily(served):
    """Found by the fuzzing above: temperature 1e-300 made the sampling probabilities NaN (a 500)."""
    app, models = served
    base = next(m for m in models if m not in ("zero-shot", "few-shot", "lora", "head-only"))
    client = TestClient(app)
    for route, body in [("/v1/completions", {"prompt": "the app"}),
                        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "the app"}]})]:
        replies = [client.post(route, json={"model": base, "max_tokens": 4, "temperature": t, **body})
                   for t in (1e-300, 0)]
        assert [r.status_code for r in replies] == [200, 200], replies[0].text
        texts = [r.json()["choices"][0].get("text", r.json()["choices"][0].get("message", {}).get("content"))
                 for r in replies]
        assert texts[0] == texts[1]  # the same as greedy decoding
