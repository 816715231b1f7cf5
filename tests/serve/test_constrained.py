"""Constrained decoding in-process: the tool-call parser (streamed or whole, any chunking), a chat template that
knows tools (Hermes, as Qwen's) rendering tools and tool turns natively, tool calls on the embedded SmolLM2
(slow), and the `output_schema` option of the prompting strategies on local and API backends."""

from __future__ import annotations

import json
import random

import jsonschema
import pytest

from _serving import Stub, chat_reply
from _toolmodels import HERMES_TEMPLATE
from conftest import CASES, keyword_task
from tunewise.errors import UserError
from tunewise.serve import lm, toolcalls, toolprompt, tools
from tunewise.serve.schemas import ChatRequest
from tunewise.strategies.base import FitContext

CASE = CASES / "tool_messages" / "chat_base_tool_turn.json"
ROUTE = {"type": "object", "properties": {"answer": {"enum": ["delivery", "refund"]},
                                          "confidence": {"enum": ["low", "high"]}},
         "required": ["answer", "confidence"], "additionalProperties": False}
WEATHER = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12},
                                            "days": {"type": "integer", "minimum": 1, "maximum": 7}},
           "required": ["city", "days"]}


@pytest.fixture(scope="module")
def backend(tiny_causal):
    from tunewise.backends import load_backend

    return load_backend(tiny_causal, "causal", "cpu")


def chunked(text: str, rng: random.Random) -> list[str]:
    cuts = sorted(rng.sample(range(1, len(text)), min(len(text) - 1, rng.randint(1, 15))))
    return [text[i:j] for i, j in zip([0, *cuts], [*cuts, len(text)], strict=True)]


@pytest.mark.parametrize("text", [
    'Let me check.\n<tool_call>\n{"name": "f", "arguments": {"a": "x}y", "b": [1, {"c": 2}]}}\n</tool_call>\n'
    '<tool_call>\n{"name": "g", "arguments": {}}\n</tool_call>\n',
    "\n\na plain answer with a < sign\n",
    '<tool_call>\n{"name": "f", "arguments": {"a": "cut by the token li'])
def test_streamed_deltas_add_up_to_the_whole_reply_for_any_chunking(text):
    whole, finish = toolcalls.message(text, "stop")
    for seed in range(40):
        parser, deltas = toolcalls.ToolCallParser(), []
        for piece in chunked(text, random.Random(seed)):
            deltas += parser.feed(piece)
        rest, cut = parser.finish()
        deltas += rest
        content = "".join(d.get("content", "") for d in deltas)
        args: dict[int, str] = {}
        for d in deltas:
            for call in d.get("tool_calls", []):
                args[call["index"]] = args.get(call["index"], "") + call["function"]["arguments"]
        assert (content or None) == whole["content"]
        assert [args[i] for i in range(len(parser.calls))] == \
            [c["function"]["arguments"] for c in whole.get("tool_calls", [])]
        assert ("length" if cut else "tool_calls" if parser.calls else "stop") == finish
    if finish == "tool_calls":
        assert [json.loads(c["function"]["arguments"]) for c in whole["tool_calls"]] == \
            [{"a": "x}y", "b": [1, {"c": 2}]}, {}]
        assert whole["content"] == "Let me check."


def test_a_template_that_knows_tools_renders_them_and_the_calls_validate(tiny_causal, backend):
    from tunewise.backends.hf_local import CausalLMBackend

    tokenizer = backend.tokenizer.__class__.from_pretrained(tiny_causal)
    tokenizer.chat_template = HERMES_TEMPLATE
    native = CausalLMBackend(tiny_causal, "cpu", model=backend.model, tokenizer=tokenizer)
    body = json.loads(CASE.read_text(encoding="utf-8"))
    body["tools"].append({"type": "function", "function": {"name": "weather", "parameters": WEATHER}})
    req = ChatRequest.model_validate({**body, "tool_choice": {"type": "function", "function": {"name": "weather"}}})
    plan = tools.plan(req)
    prompt = toolprompt.render(native, req.messages, plan)
    assert toolprompt.knows_tools(tokenizer) and not toolprompt.knows_tools(backend.tokenizer)
    assert "# Tools" in prompt and '"name": "weather"' in prompt  # the template's own tool section
    assert '<tool_call>\n{"name": "opening_hours", "arguments": {"branch": "Elm Street"}}\n</tool_call>' in prompt
    assert '<tool_response>\n{"open": true, "hours": "10:00-18:00"}\n</tool_response>' in prompt
    assert "You may call one or more functions" not in prompt  # no generic prompt on top
    for seed in range(3):
        [[choice]] = lm.generate(native, [prompt], lm.Params(160, 1.0, 1.0, (), 1, None, seed, plan.constraint))
        message, finish = toolcalls.message(choice.text, choice.finish_reason)
        assert finish == "tool_calls" and len(message["tool_calls"]) == 1
        call = message["tool_calls"][0]["function"]
        assert call["name"] == "weather"
        jsonschema.validate(json.loads(call["arguments"]), WEATHER)


def test_tools_with_a_response_format_answer_in_the_format_or_call(backend):
    body = json.loads(CASE.read_text(encoding="utf-8"))
    body["tools"] = [{"type": "function", "function": {"name": "weather", "parameters": WEATHER}}]
    body["response_format"] = {"type": "json_schema", "json_schema": {"name": "route", "schema": ROUTE}}
    req = ChatRequest.model_validate(body)
    plan = tools.plan(req)
    prompt = toolprompt.render(backend, req.messages, plan)
    for seed in range(4):
        [[out]] = lm.generate(backend, [prompt], lm.Params(160, 1.0, 1.0, (), 1, None, seed, plan.constraint))
        message, finish = toolcalls.message(out.text, out.finish_reason)
        if out.text.startswith("<tool_call>"):  # parallel calls may run on to the token limit
            assert message["tool_calls"] and finish in ("tool_calls", "length")
            for call in message["tool_calls"]:
                jsonschema.validate(json.loads(call["function"]["arguments"]), WEATHER)
        else:
            assert finish == "stop" and "tool_calls" not in message
            jsonschema.validate(json.loads(message["content"]), ROUTE)


@pytest.mark.slow
def test_tool_calls_on_the_embedded_smollm2_parse_and_validate():
    from tunewise.backends import load_backend

    smol = load_backend("smollm2-135m-instruct", "causal", "cpu")
    body = json.loads(CASE.read_text(encoding="utf-8"))
    body["messages"] = body["messages"][:2]
    body["tools"].append({"type": "function", "function": {"name": "weather", "parameters": WEATHER}})
    schemas = {"opening_hours": body["tools"][0]["function"]["parameters"], "weather": WEATHER}
    for choice, parallel in (("required", False), ("required", True), ("auto", True)):
        req = ChatRequest.model_validate({**body, "tool_choice": choice, "parallel_tool_calls": parallel})
        plan = tools.plan(req)
        prompt = toolprompt.render(smol, req.messages, plan)
        [[out]] = lm.generate(smol, [prompt], lm.Params(96, 0.0, constraint=plan.constraint))
        message, finish = toolcalls.message(out.text, out.finish_reason)
        for call in message.get("tool_calls", []):
            jsonschema.validate(json.loads(call["function"]["arguments"]), schemas[call["function"]["name"]])
        if choice == "required":  # (with parallel calls, SmolLM2 repeats its call until max_tokens)
            assert message["tool_calls"] and (parallel or (finish == "tool_calls" and len(message["tool_calls"]) == 1))


# --- output_schema on prompting strategies ------------------------------------------------------------------
def fit(name: str, backend, task, tmp_path, **options):
    from tunewise.registry import get_strategy

    cls = get_strategy(name)
    return cls(cls.Config(name=name, **options)).fit(backend, task, FitContext(tmp_path, seed=0))


@pytest.mark.parametrize("name,options", [("zero-shot", {}), ("few-shot", {"k": 2}),
                                          ("template", {"user": "Message: {{ input }}", "k": 0})])
def test_output_schema_makes_every_answer_parse(name, options, backend, tmp_path):
    task = keyword_task("generation")
    free = fit(name, backend, task, tmp_path, max_new_tokens=12, **options).predict(task.test)
    assert not any(p.output in ("delivery", "refund") for p in free)  # a random model does not answer so
    predictor = fit(name, backend, task, tmp_path, output_schema=ROUTE, answer_field="answer", max_new_tokens=48,
                    **options)
    preds = predictor.predict(task.test)
    assert all(p.output in ("delivery", "refund") for p in preds)
    for p in preds:
        step = p.trace[-1]
        assert step["failed"] is False and step["extracted"] == p.output
        jsonschema.validate(json.loads(step["raw"]), ROUTE)
    if name == "few-shot":  # demonstrations answer in the schema's shape
        assert any('{"answer": "' in m["content"] for m in predictor.shared if m["role"] == "assistant")


def test_output_schema_is_refused_where_it_cannot_apply(backend, tmp_path):
    from tunewise.backends import load_backend
    from tunewise.registry import get_strategy

    with pytest.raises(UserError, match="classification answers are scored label by label"):
        fit("zero-shot", backend, keyword_task(), tmp_path, output_schema=ROUTE)
    with pytest.raises(UserError, match="cannot generate under a schema"):
        fit("zero-shot", load_backend("fake", "causal"), keyword_task("generation"), tmp_path, output_schema=ROUTE)
    config = get_strategy("zero-shot").Config
    for bad, message in [({"answer_field": "answer"}, "answer_field needs output_schema"),
                         ({"output_schema": ROUTE, "answer_field": "nope"}, "not a property of output_schema"),
                         ({"output_schema": {"type": 5}}, "not a valid JSON schema")]:
        with pytest.raises(ValueError, match=message):
            config(name="zero-shot", **bad)


def test_backends_declare_constrained_output_and_refuse_a_constraint_without_it(backend, tmp_path, monkeypatch):
    from tunewise.backends import load_backend
    from tunewise.backends.constrained import Constraint
    from tunewise.errors import CapabilityError

    monkeypatch.setenv("TUNEWISE_OPENAI_CACHE_DIR", str(tmp_path / "cache"))
    fake = load_backend("fake-nologprobs", "causal")
    completion = load_backend("openai:m?base_url=http://127.0.0.1:9/v1&logprobs=false&mode=completion", "causal")
    assert backend.capabilities.constrained_output and not fake.capabilities.constrained_output
    assert not completion.capabilities.constrained_output
    for refusing, name in [(fake, "'fake-nologprobs'"), (completion, "'openai:m'")]:
        with pytest.raises(CapabilityError) as err:
            refusing.generate(["<user>2 + 2</user><assistant>"], constraint=Constraint.json_object())
        assert "\n" not in str(err.value) and name in str(err.value)
    assert fake.generate(["<user>2 + 2</user><assistant>"], constraint=None) == [("The answer is 2", 4)]


def test_output_schema_goes_to_an_api_model_as_response_format(tmp_path, monkeypatch):
    from tunewise.backends import load_backend

    monkeypatch.setenv("TUNEWISE_OPENAI_CACHE_DIR", str(tmp_path / "cache"))
    stub = Stub(lambda path, body: chat_reply('{"answer": "refund", "confidence": "high"}'))
    try:
        api = load_backend(f"openai:m?base_url={stub.url}&logprobs=false", "causal")
        task = keyword_task("generation")
        preds = fit("zero-shot", api, task, tmp_path, output_schema=ROUTE, answer_field="answer").predict(task.test)
        assert [p.output for p in preds] == ["refund"] * len(task.test)
        sent = stub.requests[-1][1]
        assert sent["response_format"] == {"type": "json_schema", "json_schema": {"name": "answer", "schema": ROUTE,
                                                                                  "strict": True}}
        assert "follows this JSON schema" in sent["messages"][0]["content"]
    finally:
        stub.close()
