"""The prompt of a chat request on a raw model when tools are involved (see `tools.py` for the format).

A chat template that renders `tools` and writes Hermes `<tool_call>` blocks gets the OpenAI messages as it
expects them (assistant `tool_calls` with parsed arguments, `tool` messages). Any other template gets them as
text in the same format: calls inside the assistant turn, results as a user turn of `<tool_response>` blocks
(one turn for the results of parallel calls), and the generic tool prompt appended to the system message.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tunewise.serve.tools import CLOSE, OPEN, OutputPlan, bad


def knows_tools(tokenizer) -> bool:
    """The chat template renders `tools` and writes calls in the Hermes <tool_call> format."""
    template = getattr(tokenizer, "chat_template", None) or ""
    template = " ".join(template.values()) if isinstance(template, dict) else template
    return "tools" in template and OPEN in template


def generic_tool_prompt(tools: tuple[dict[str, Any], ...], choice: str) -> str:
    """The system-message block that shows tools to a model whose template does not know them."""
    lines = ["You may call one or more functions to help with the user's request. The functions:", "<tools>",
             *(json.dumps(t["function"], ensure_ascii=False) for t in tools), "</tools>",
             f"To call a function, write its name and arguments as JSON in {OPEN}{CLOSE} tags:",
             f'{OPEN}\n{{"name": "<function name>", "arguments": <arguments as a JSON object>}}\n{CLOSE}',
             "Results come back in <tool_response></tool_response> tags."]
    if choice == "auto":
        lines.append("If no function is needed, answer in plain text.")
    return "\n".join(lines)


def _call_text(call: dict[str, Any]) -> str:
    fn = call.get("function") or {}
    args = fn.get("arguments")
    args = args if isinstance(args, str) and args.strip() else json.dumps(args if args is not None else {})
    return f'{OPEN}\n{{"name": {json.dumps(fn.get("name", ""))}, "arguments": {args}}}\n{CLOSE}'


def _arguments(text: Any) -> Any:
    try:
        return json.loads(text) if isinstance(text, str) else text
    except ValueError:
        return text


def chat_messages(messages, plan_: OutputPlan, native: bool) -> list[dict[str, Any]]:
    """OpenAI messages as the chat template takes them. native: tool calls and results as structured messages
    for a template that knows tools; otherwise as Hermes text (calls in the assistant turn, results as a user
    turn), with the generic tool prompt in the system message when tools are offered."""
    out: list[dict[str, Any]] = []
    for m in messages:
        role = "system" if m.role == "developer" else m.role
        calls = m.tool_calls or []
        if role in ("tool", "function"):
            content = m.text()
            if native:
                out.append({"role": "tool", "content": content, **({"name": m.name} if m.name else {})})
            elif out and out[-1].get("tool_results"):  # results of parallel calls: one user turn
                out[-1]["content"] += f"\n<tool_response>\n{content}\n</tool_response>"
            else:
                out.append({"role": "user", "content": f"<tool_response>\n{content}\n</tool_response>",
                            "tool_results": True})
        elif role == "assistant" and calls:
            if native:
                out.append({"role": "assistant", "content": m.text(), "tool_calls": [
                    {"type": "function", "function": {"name": c["function"]["name"],
                                                      "arguments": _arguments(c["function"].get("arguments"))}}
                    for c in calls]})
            else:
                out.append({"role": "assistant", "content": "\n".join(filter(None, [m.text(),
                                                                                  *map(_call_text, calls)]))})
        else:
            out.append({"role": role, "content": m.text()})
    for m in out:
        m.pop("tool_results", None)
    if plan_.tools and not native:
        block = generic_tool_prompt(plan_.tools, plan_.choice)
        if out and out[0]["role"] == "system":
            out[0]["content"] = f"{out[0]['content']}\n\n{block}" if out[0]["content"] else block
        else:
            out.insert(0, {"role": "system", "content": block})
    return out


def check_history(messages) -> None:
    """Every tool message answers a call of an earlier assistant message (OpenAI's rule), else a 400."""
    pending: set[str] = set()
    for i, m in enumerate(messages):
        if m.role == "assistant":
            pending = {c["id"] for c in (m.tool_calls or []) if c.get("id")}
            for j, c in enumerate(m.tool_calls or []):
                fn = c.get("function") if isinstance(c, dict) else None
                if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                    raise bad(f"Invalid 'messages[{i}].tool_calls[{j}]': expected {{\"id\", \"type\": \"function\", "
                              "\"function\": {\"name\", \"arguments\"}}.", f"messages[{i}].tool_calls")
        elif m.role == "tool":
            if not m.tool_call_id:
                raise bad(f"Missing required parameter: 'messages[{i}].tool_call_id'.",
                          f"messages[{i}].tool_call_id", "missing_required_parameter")
            if m.tool_call_id not in pending:
                raise bad(f"Invalid parameter: messages with role 'tool' must be a response to a preceding message "
                          f"with 'tool_calls' (messages[{i}].tool_call_id '{m.tool_call_id}' answers none).",
                          f"messages[{i}].tool_call_id")


def renderer(backend, messages, plan_: OutputPlan) -> tuple[list[dict[str, Any]], Callable[[list], str]]:
    """The converted messages, and what renders such a list as the raw model's prompt: the chat template over
    them (and the tools, when the template knows them). Separate, so a conversation cut to fit the context
    (`backends.context.fit_messages`) is rendered the same way."""
    native = knows_tools(backend.tokenizer)
    tools = list(plan_.tools) or None

    def render_(converted: list[dict[str, Any]]) -> str:
        if native:
            return backend.tokenizer.apply_chat_template(converted, tools=tools, tokenize=False,
                                                         add_generation_prompt=True)
        return backend.render(converted, add_generation_prompt=True)

    return chat_messages(messages, plan_, native), render_


def render(backend, messages, plan_: OutputPlan) -> str:
    """The prompt for a raw model (`renderer`'s function over the converted messages)."""
    converted, render_ = renderer(backend, messages, plan_)
    return render_(converted)
