"""Tool calls and structured output for /v1/chat/completions on raw language models (the base and `ft:` models).

A request's `tools`, `tool_choice`, `parallel_tool_calls` and `response_format` are checked here (a bad one is
an OpenAI-shaped 400 naming the parameter, as OpenAI words it) and turned into an `OutputPlan`: how the
prompt shows the tools, and the grammar the reply must follow (`tunewise.backends.constrained`).

Tool calls use the Hermes format (Qwen 2.5/3, Hermes, SmolLM3 and others are trained on it):

    <tool_call>
    {"name": "get_weather", "arguments": {"city": "Oslo"}}
    </tool_call>

A model whose chat template renders `tools` and knows this format gets the tools and the tool turns through
its own template; any other model gets a generic tool prompt in the system message, and the history's tool
calls and results as text in the same format. Either way the reply is generated under a grammar: free text
(tool_choice auto) or not, then calls whose `name` is a declared function and whose `arguments` follow that
function's JSON schema; so every call parses and validates. `toolprompt.py` renders the prompt, `toolcalls.py`
reads the calls back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from tunewise.backends.constrained import Constraint
from tunewise.serve.errors import ApiError

NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
OPEN, CLOSE = "<tool_call>", "</tool_call>"


@dataclass(frozen=True)
class OutputPlan:
    """What a chat request asks of the reply: tools to show and parse, and the grammar it must follow."""

    tools: tuple[dict[str, Any], ...] = ()  # OpenAI function tools, shown to the model (none when choice is none)
    choice: str = "auto"  # auto | none | required | forced
    constraint: Constraint | None = None
    calls: bool = False  # parse tool calls out of the reply

    @property
    def schemas(self) -> dict[str, dict[str, Any]]:
        return {t["function"]["name"]: t["function"].get("parameters") or {"type": "object"} for t in self.tools}


def bad(message: str, param: str, code: str = "invalid_value") -> ApiError:
    """An OpenAI-shaped 400 naming the parameter."""
    return ApiError(400, message, param, code)


def check_schema(schema: Any, what: str, param: str, code: str) -> None:
    """A JSON schema an object schema valid under its metaschema (jsonschema), else a 400."""
    import jsonschema

    if not isinstance(schema, dict):
        raise bad(f"Invalid schema for {what}: expected a JSON Schema object, got {type(schema).__name__}.", param,
                  code)
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as err:
        where = "/".join(str(p) for p in err.absolute_path) or "(root)"
        raise bad(f"Invalid schema for {what}: at {where}: {err.message}", param, code) from None
    if schema.get("type", "object") != "object":
        raise bad(f"Invalid schema for {what}: schema must be a JSON Schema of 'type: \"object\"', got 'type: "
                  f"\"{schema.get('type')}\"'.", param, code)


def _function(tool: Any, i: int) -> dict[str, Any]:
    param = f"tools[{i}]"
    if not isinstance(tool, dict) or tool.get("type", "function") != "function":
        raise bad(f"Invalid '{param}': only tools of type 'function' are supported.", f"{param}.type")
    fn = tool.get("function")
    if not isinstance(fn, dict):
        raise bad(f"Missing required parameter: '{param}.function'.", f"{param}.function",
                  "missing_required_parameter")
    name = fn.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise bad(f"Invalid '{param}.function.name': string does not match pattern. Expected a string that matches "
                  "the pattern '^[a-zA-Z0-9_-]{1,64}$'.", f"{param}.function.name", "invalid_value")
    params = fn.get("parameters", {"type": "object", "properties": {}})
    check_schema(params, f"function '{name}'", f"{param}.function.parameters", "invalid_function_parameters")
    out = {"name": name, "parameters": params}
    if isinstance(fn.get("description"), str):
        out["description"] = fn["description"]
    return {"type": "function", "function": out}


def _choice(value: Any, names: list[str]) -> tuple[str, str | None]:
    """(auto | none | required | forced, forced function name)."""
    if value is None:
        return ("auto" if names else "none"), None
    if value in ("auto", "none", "required"):
        if value == "required" and not names:
            raise bad("Invalid value for 'tool_choice': 'required' needs 'tools'.", "tool_choice")
        return value, None
    name = value.get("function", {}).get("name") if isinstance(value, dict) and value.get("type") == "function" \
        and isinstance(value.get("function"), dict) else None
    if not isinstance(name, str):
        raise bad("Invalid value for 'tool_choice': expected 'none', 'auto', 'required' or {\"type\": \"function\", "
                  "\"function\": {\"name\": ...}}.", "tool_choice")
    if name not in names:
        raise bad(f"Invalid value for 'tool_choice': no function named '{name}' was specified in 'tools'.",
                  "tool_choice")
    return "forced", name


def _call_tag(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    # At most one whitespace character in a row inside the arguments: a weak model cannot pad forever.
    return {"type": "tag", "begin": f'{OPEN}\n{{"name": "{name}", "arguments": ',
            "content": {"type": "json_schema", "json_schema": schema, "max_whitespace_cnt": 1},
            "end": "}\n" + CLOSE}


def _response_format(value: Any) -> dict[str, Any] | None:
    """The JSON schema the answer must follow ({"type": "object"} for json_object), or None for text."""
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "object"}
    if kind != "json_schema":
        raise bad("Invalid 'response_format.type': expected 'text', 'json_object' or 'json_schema'.",
                  "response_format.type")
    spec = value.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not NAME.match(spec["name"]):
        raise bad("Invalid 'response_format.json_schema': give a 'name' (a-z, A-Z, 0-9, '_' or '-', up to 64) "
                  "and a 'schema'.", "response_format.json_schema")
    schema = spec.get("schema", {"type": "object"})
    check_schema(schema, f"response_format '{spec['name']}'", "response_format.json_schema.schema",
                 "invalid_json_schema")
    return schema


def plan(req) -> OutputPlan:
    """The OutputPlan of a ChatRequest (tools, tool_choice, parallel_tool_calls, response_format); 400 if bad."""
    if req.tools is not None and not isinstance(req.tools, list):
        raise bad("Invalid 'tools': expected an array of function tools.", "tools")
    tools = [_function(t, i) for i, t in enumerate(req.tools or [])]
    names = [t["function"]["name"] for t in tools]
    if len(set(names)) < len(names):
        raise bad("Invalid 'tools': function names must be unique.", "tools")
    if req.tool_choice is not None and not tools:
        raise bad("Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.",
                  "tool_choice")
    choice, forced = _choice(req.tool_choice, names)
    answer = _response_format(req.response_format)
    if choice == "none" or not tools:
        constraint = None if answer is None else \
            (Constraint.json_object() if answer == {"type": "object"} else Constraint.json_schema(answer))
        return OutputPlan((), "none", constraint, False)
    fns = [t["function"] for t in tools if forced is None or t["function"]["name"] == forced]
    tags = [_call_tag(f["name"], f["parameters"]) for f in fns]
    if choice == "forced":
        fmt: dict[str, Any] = tags[0]
    elif choice == "required" or answer is not None:
        fmt = {"type": "tags_with_separator", "tags": tags, "separator": "\n", "at_least_one": True,
               "stop_after_first": not req.parallel_tool_calls}
        if choice == "auto":  # an answer in the response format, or calls
            fmt = {"type": "or", "elements": [{"type": "json_schema", "json_schema": answer, "max_whitespace_cnt": 1},
                                              fmt]}
    else:
        fmt = {"type": "triggered_tags", "triggers": [OPEN], "tags": tags,
               "stop_after_first": not req.parallel_tool_calls}
    constraint = Constraint.structural_tag({"type": "structural_tag", "format": fmt})
    return OutputPlan(tuple(tools), choice, constraint, True)


def refused_schema(backend, plan_: OutputPlan) -> tuple[str, str] | None:
    """(parameter, reason) when the grammar library cannot build the plan's grammar, naming the tool whose
    schema it refuses; None when it builds (the compiled grammar stays in xgrammar's cache for the reply)."""
    from tunewise.backends.constrained import ConstraintError, compile_constraint

    try:
        compile_constraint(backend.model, backend.tokenizer, plan_.constraint)
        return None
    except ConstraintError as err:
        for i, tool in enumerate(plan_.tools):
            try:
                compile_constraint(backend.model, backend.tokenizer, Constraint.json_schema(
                    tool["function"]["parameters"]))
            except ConstraintError as one:
                return f"tools[{i}].function.parameters", str(one)
        return ("tools" if plan_.calls else "response_format.json_schema.schema"), str(err)


def refuse_for_strategy(model: str, req, raw_models: list[str]) -> None:
    """Strategies answer the last user message with their own prompt: a request with callable tools, tool turns
    or a response_format would lose them silently, so it is a 400 that names the models that take them."""
    asked = [("tools", bool(req.tools) and req.tool_choice != "none"),  # tool_choice none: no tool is lost
             ("response_format", _response_format(req.response_format) is not None),
             ("messages", any(m.role in ("tool", "function") or m.tool_calls for m in req.messages))]
    param = next((name for name, used in asked if used), None)
    if param is None:
        return
    what = "tool calls or tool messages" if param != "response_format" else "response_format"
    takers = ", ".join(raw_models) if raw_models else "none on this server (serve a run with a local model)"
    raise ApiError(400, f"'{model}' is a strategy: it answers the last user message with its own prompt and takes no "
                   f"{what}. Models that take them here: {takers}.", param, "unsupported_parameter")
