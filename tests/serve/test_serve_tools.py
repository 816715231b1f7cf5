"""Tool calls and structured output on `tunewise serve` (a real process, driven by the openai SDK): calls whose
arguments parse and validate against the declared schema under every tool_choice, streamed tool-call deltas
that add up to the whole reply, tool turns in the history reaching the prompt (the shared `tool_messages`
case), `tool_choice: none` never calling, response_format json_schema/json_object, strategies refusing tools
with a 400 that names the models that take them, and OpenAI-shaped 400s for bad tool schemas."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import jsonschema
import openai
import pytest

from _serving import THREADS, tiny_run
from conftest import CASES
from tunewise.serve.process import ServerProcess

CASE = CASES / "tool_messages" / "chat_base_tool_turn.json"
# Bounded strings, enums, integer ranges and small arrays: a random tiny model finishes such calls well within
# max_tokens (an unbounded string can run to the token limit, which is a "length" finish, not a call).
ORDER = {"type": "object", "properties": {
    "sku": {"enum": ["A-100", "B-200"]}, "quantity": {"type": "integer", "minimum": 1, "maximum": 9},
    "note": {"type": "string", "maxLength": 8}}, "required": ["sku", "quantity"], "additionalProperties": False}
WEATHER = {"type": "object", "properties": {"city": {"enum": ["Oslo", "Lima"]}, "unit": {"enum": ["C", "F"]}},
           "required": ["city", "unit"]}
TOOLS = [{"type": "function", "function": {"name": "place_order", "description": "Order a product",
                                           "parameters": ORDER}},
         {"type": "function", "function": {"name": "weather", "description": "Weather of a city",
                                           "parameters": WEATHER}}]
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
# Nested objects, enums and arrays (of enums and of objects), all bounded.
TICKET = {"type": "object", "properties": {
    "customer": {"type": "object", "properties": {"tier": {"enum": ["free", "pro"]},
                                                  "name": {"type": "string", "maxLength": 10}},
                 "required": ["tier", "name"], "additionalProperties": False},
    "tags": {"type": "array", "items": {"enum": ["billing", "bug", "refund"]}, "maxItems": 3},
    "lines": {"type": "array", "maxItems": 2, "items": {
        "type": "object", "properties": {"sku": {"enum": ["A-100", "B-200"]}, "urgent": {"type": "boolean"}},
        "required": ["sku", "urgent"], "additionalProperties": False}}},
    "required": ["customer", "tags", "lines"], "additionalProperties": False}
USER = [{"role": "user", "content": "Two of A-100 please, and what is the weather in Oslo?"}]


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
def base(tiny_causal):
    return tiny_causal.rstrip("/").rsplit("/", 1)[-1]


@pytest.fixture(scope="module")
def local(tiny_causal):
    from tunewise.backends import load_backend

    return load_backend(tiny_causal, "causal", "cpu")


def raw_post(server, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(server.url + "/chat/completions", data=json.dumps(body).encode(),
                                     headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def valid_calls(message) -> list[tuple[str, dict]]:
    """(name, arguments) of each call, after checking that the arguments parse and follow the tool's schema."""
    out = []
    for call in message.tool_calls or []:
        args = json.loads(call.function.arguments)
        jsonschema.validate(args, SCHEMAS[call.function.name])
        assert call.id.startswith("call_") and call.type == "function"
        out.append((call.function.name, args))
    return out


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "weather"}}])
@pytest.mark.parametrize("parallel", [False, True])
def test_tool_calls_parse_and_validate_against_their_schema(client, base, choice, parallel):
    for seed in range(2):
        reply = client.chat.completions.create(model=base, messages=USER, tools=TOOLS, tool_choice=choice,
                                               parallel_tool_calls=parallel, temperature=0.9, seed=seed,
                                               max_tokens=200)
        c = reply.choices[0]
        calls = valid_calls(c.message)
        assert c.finish_reason == "tool_calls" and calls
        if isinstance(choice, dict):
            assert {name for name, _ in calls} == {"weather"}
        if not parallel:
            assert len(calls) == 1


def test_streamed_tool_call_deltas_add_up_to_the_whole_reply(client, base):
    kwargs = dict(model=base, messages=USER, tools=TOOLS, tool_choice="required", temperature=0, max_tokens=200)
    whole = client.chat.completions.create(**kwargs).choices[0]
    chunks = list(client.chat.completions.create(**kwargs, stream=True))
    calls: dict[int, dict] = {}
    for chunk in chunks:
        for d in chunk.choices[0].delta.tool_calls or []:
            call = calls.setdefault(d.index, {"id": d.id, "name": d.function.name, "arguments": ""})
            call["arguments"] += d.function.arguments or ""
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [(c["name"], c["arguments"]) for c in calls.values()] == \
        [(c.function.name, c.function.arguments) for c in whole.message.tool_calls]
    assert all(c["id"].startswith("call_") for c in calls.values())
    assert [c.choices[0].finish_reason for c in chunks if c.choices[0].finish_reason] == ["tool_calls"]


def test_the_tool_messages_case_answers_with_the_tool_result_in_the_prompt(server, base, local):
    from tunewise.serve import toolprompt, tools
    from tunewise.serve.schemas import ChatRequest

    body = {**json.loads(CASE.read_text(encoding="utf-8")), "model": base}  # the same chat template as SmolLM2's
    status, reply = raw_post(server, body)
    assert status == 200, reply
    choice = reply["choices"][0]
    assert choice["finish_reason"] in ("stop", "length", "tool_calls")
    for call in choice["message"].get("tool_calls") or []:
        jsonschema.validate(json.loads(call["function"]["arguments"]), body["tools"][0]["function"]["parameters"])
    req = ChatRequest.model_validate(body)
    prompt = toolprompt.render(local, req.messages, tools.plan(req))
    assert '{"open": true, "hours": "10:00-18:00"}' in prompt and '"name": "opening_hours"' in prompt
    assert reply["usage"]["prompt_tokens"] == local.count_tokens(prompt)


def test_the_openai_sdk_tool_loop_completes(client, base, local):
    """The loop of OpenAI's function-calling guide: call, run the tool, send the result, get the answer."""
    from tunewise.serve import toolprompt, tools
    from tunewise.serve.schemas import ChatRequest

    ran: list[dict] = []

    def weather(city: str, unit: str) -> str:
        ran.append({"city": city, "unit": unit})
        return json.dumps({"city": city, "temperature": 21, "unit": unit})

    messages = [{"role": "user", "content": "What is the weather in Oslo?"}]
    choice, reply = "required", None  # the first round must call (a random tiny model would not choose to)
    for _ in range(3):
        reply = client.chat.completions.create(model=base, messages=messages, tools=TOOLS[1:], tool_choice=choice,
                                               max_tokens=200, temperature=0)
        message = reply.choices[0].message
        if not message.tool_calls:
            break
        messages.append(message.model_dump(exclude_none=True))
        for call in message.tool_calls:
            messages.append({"role": "tool", "tool_call_id": call.id,
                             "content": weather(**json.loads(call.function.arguments))})
        choice = "auto"
    assert ran and all(jsonschema.validate(args, WEATHER) is None for args in ran)
    assert reply.choices[0].finish_reason in ("stop", "length")
    req = ChatRequest.model_validate({"model": base, "messages": messages, "tools": TOOLS[1:]})
    prompt = toolprompt.render(local, req.messages, tools.plan(req))
    assert '"temperature": 21' in prompt and reply.usage.prompt_tokens == local.count_tokens(prompt)


def test_tool_choice_none_never_calls_and_shows_no_tools(client, base):
    history = json.loads(CASE.read_text(encoding="utf-8"))["messages"]
    plain = client.chat.completions.create(model=base, messages=history, max_tokens=8, temperature=0)
    for _ in range(2):
        reply = client.chat.completions.create(model=base, messages=history, tools=TOOLS, tool_choice="none",
                                               max_tokens=8, temperature=0)
        c = reply.choices[0]
        assert c.message.tool_calls is None and c.finish_reason != "tool_calls"
        assert c.message.content == plain.choices[0].message.content
        assert reply.usage.prompt_tokens == plain.usage.prompt_tokens


def test_structured_output_validates_against_a_nested_schema(client, base):
    fmt = {"type": "json_schema", "json_schema": {"name": "ticket", "schema": TICKET, "strict": True}}
    for seed in range(3):
        reply = client.chat.completions.create(model=base, messages=USER, response_format=fmt, temperature=1.0,
                                               seed=seed, max_tokens=300)
        assert reply.choices[0].finish_reason == "stop"
        jsonschema.validate(json.loads(reply.choices[0].message.content), TICKET)
    parsed = client.chat.completions.create(model=base, messages=USER, response_format={"type": "json_object"},
                                            max_tokens=300, temperature=0)
    if parsed.choices[0].finish_reason == "stop":  # a random model may write one long key; then it is cut
        assert isinstance(json.loads(parsed.choices[0].message.content), dict)


def test_strategies_refuse_tools_and_name_the_models_that_take_them(client, base):
    history = json.loads(CASE.read_text(encoding="utf-8"))["messages"]
    for kwargs in (dict(messages=USER, tools=TOOLS), dict(messages=history),
                   dict(messages=USER, response_format={"type": "json_object"})):
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(model="zero-shot", **kwargs)
        assert base in info.value.body["message"] and info.value.body["code"] == "unsupported_parameter"
    answer = client.chat.completions.create(model="zero-shot", messages=USER, tools=TOOLS, tool_choice="none")
    assert answer.choices[0].message.content in ("negative", "positive")


def test_bad_tool_schemas_get_openai_shaped_400s(server, base):
    def tool(name="f", parameters=None):
        return {"type": "function", "function": {"name": name, "parameters": parameters or {"type": "object"}}}

    history = json.loads(CASE.read_text(encoding="utf-8"))["messages"]
    cases = [
        ({"tools": [tool(name="has space")]}, "tools[0].function.name"),
        ({"tools": [tool(parameters={"type": "object", "properties": {"a": {"type": "nope"}}})]},
         "tools[0].function.parameters"),
        ({"tools": [tool(parameters={"type": "string"})]}, "tools[0].function.parameters"),
        ({"tools": [tool(parameters=[1, 2])]}, "tools[0].function.parameters"),
        ({"tools": [tool(), tool()]}, "tools"),
        ({"tools": [{"type": "retrieval"}]}, "tools[0].type"),
        ({"tools": [tool()], "tool_choice": {"type": "function", "function": {"name": "g"}}}, "tool_choice"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": [tool()], "tool_choice": "sometimes"}, "tool_choice"),
        ({"messages": history[:2] + history[3:]}, "messages[2].tool_call_id"),
        ({"messages": history[:3] + [{"role": "tool", "content": "x"}]}, "messages[3].tool_call_id"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 5}}}},
         "response_format.json_schema.schema"),
        ({"response_format": {"type": "xml"}}, "response_format.type"),
        # valid JSON schemas that no grammar can enforce (a look-behind pattern, an impossible range)
        ({"tools": [tool(), tool("g", {"type": "object", "properties": {"a": {"type": "string",
                                                                                  "pattern": "(?<=a)b"}}})]},
         "tools[1].function.parameters"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {
            "type": "object", "properties": {"n": {"type": "integer", "minimum": 5, "maximum": 1}}}}}},
         "response_format.json_schema.schema"),
    ]
    for extra, param in cases:
        status, body = raw_post(server, {"model": base, "messages": USER, **extra})
        assert status == 400, (extra, body)
        assert set(body["error"]) == {"message", "type", "param", "code"} and body["error"]["param"] == param, body
        assert body["error"]["type"] == "invalid_request_error"
    assert server.alive()
