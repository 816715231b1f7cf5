"""The JSON tool-call convention for models without native function calling (framework-neutral).

Local causal models have no tool-calling API, so when an agent has tools the system message gains a
block that lists them and asks for a reply that is ONLY a JSON object:

    {"tool": "calculator", "arguments": {"expression": "12 * 4"}}

`parse_tool_calls` reads that back robustly: code fences, text around the object, several objects,
`"name"`/`"function"` instead of `"tool"`, `"args"`/`"parameters"` instead of `"arguments"`, arguments as
a JSON string, or a bare `calculator("12 * 4")` for a one-parameter tool. Anything that names no known
tool, or whose arguments do not fit the tool's parameters, is not a call: the text is then a plain
answer. Small models often fail this convention; that is measured, not hidden.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ToolSpec:
    """What a model needs to know about a tool: its name, what it does and its JSON-schema parameters."""

    name: str
    description: str
    parameters: dict[str, Any]  # {"type": "object", "properties": {...}, "required": [...]}

    @property
    def properties(self) -> dict[str, Any]:
        return dict(self.parameters.get("properties") or {})

    @property
    def required(self) -> list[str]:
        return list(self.parameters.get("required") or [])


def _example_arguments(spec: ToolSpec) -> dict[str, Any]:
    examples = {"integer": 3, "number": 2.5, "boolean": True}
    return {name: examples.get(prop.get("type"), "...") for name, prop in spec.properties.items()}


def tools_prompt(specs: list[ToolSpec]) -> str:
    """The block appended to an agent's system message when it has tools."""
    lines = ["You can use these tools:"]
    for s in specs:
        params = ", ".join(f"{n}: {p.get('type', 'string')}" for n, p in s.properties.items())
        lines.append(f"- {s.name}({params}): {' '.join(s.description.split())}")
    first = specs[0]
    example = json.dumps({"tool": first.name, "arguments": _example_arguments(first)})
    lines += ["To use a tool, reply with ONLY a JSON object and nothing else, for example:", example,
              "The tool's result will be sent back to you. When you do not need a tool, answer in plain text."]
    return "\n".join(lines)


def _json_objects(text: str) -> list[Any]:
    """Every top-level JSON object in the text, left to right (balanced braces, strings respected)."""
    found, depth, start, in_str, escaped = [], 0, -1, False, False
    for i, ch in enumerate(text):
        if in_str:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_str = False
            continue
        if ch == '"' and depth:
            in_str = True
        elif ch == "{":
            depth, start = depth + 1, i if depth == 0 else start
        elif ch == "}" and depth:
            depth -= 1
            if depth == 0:
                with contextlib.suppress(ValueError):
                    found.append(json.loads(text[start:i + 1]))
    return found


def _arguments(obj: dict[str, Any], spec: ToolSpec) -> dict[str, Any] | None:
    raw = next((obj[k] for k in ("arguments", "args", "parameters", "input") if k in obj), None)
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raw = {spec.required[0]: raw} if len(spec.properties) == 1 and spec.required else None
    if raw is None:  # {"tool": "calculator", "expression": "1+2"}: arguments inline
        raw = {k: v for k, v in obj.items() if k in spec.properties}
    return _fit(raw, spec)


def _fit(raw: Any, spec: ToolSpec) -> dict[str, Any] | None:
    """Arguments restricted to the tool's parameters, or None when a required one is missing."""
    if not isinstance(raw, dict):
        return None
    args = {k: v for k, v in raw.items() if k in spec.properties}
    if len(spec.properties) == 1 and not args and len(raw) == 1:  # one parameter, wrong name: map it
        args = {next(iter(spec.properties)): next(iter(raw.values()))}
    if any(r not in args for r in spec.required):
        return None
    return args


_BARE_NAME = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)\(")


def _bare_call(text: str, by_name: dict[str, ToolSpec]) -> tuple[str, dict[str, Any]] | None:
    """`calculator("12 * (3 + 4)")` or `calculator(12 * (3 + 4))` for a one-parameter tool."""
    for m in _BARE_NAME.finditer(text):
        spec = by_name.get(m.group(1))
        if spec is None or len(spec.properties) != 1:
            continue
        depth, end = 1, None
        for i in range(m.end(), len(text)):
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            if depth == 0:
                end = i
                break
        value = text[m.end():end].strip() if end is not None else ""
        value = re.sub(r"^[A-Za-z_]\w*\s*=\s*", "", value).strip().strip("\"'").strip()
        if value:
            return spec.name, {next(iter(spec.properties)): value}
    return None


def parse_tool_calls(text: str, specs: list[ToolSpec]) -> list[tuple[str, dict[str, Any]]]:
    """[(tool name, arguments)] the text asks for, or [] when it is a plain answer."""
    by_name = {s.name: s for s in specs}
    calls = []
    for obj in _json_objects(text):
        if not isinstance(obj, dict):
            continue
        name = next((obj[k] for k in ("tool", "name", "function", "tool_name") if isinstance(obj.get(k), str)), None)
        if isinstance(obj.get("function"), dict):  # OpenAI-style {"function": {"name", "arguments"}}
            name, obj = obj["function"].get("name"), obj["function"]
        if name in by_name:
            args = _arguments(obj, by_name[name])
            if args is not None:
                calls.append((name, args))
    if calls:
        return calls
    bare = _bare_call(text, by_name)
    return [bare] if bare else []
