"""An agent built with Microsoft Agent Framework (`agent-framework-core` + `agent-framework-openai`) on any
OpenAI-compatible chat endpoint: `tunewise serve`, vLLM, OpenAI itself. `tunewise agents ask` runs it
(`tunewise.apps.agents_ask`).

Nothing here is specific to tunewise's models: the agent reaches the model only through the OpenAI chat API
(tools, tool_choice, tool turns), which `tunewise serve` implements with grammar-constrained tool calls, and
its tools are tunewise's framework-neutral registered tools (`tools.py`: plain Python callables with type
hints and docstrings). So the same agent code runs against the hosted model and the local winner.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from tunewise.errors import UserError


def _recording(tool: Callable[..., Any], calls: list[dict[str, Any]], on_event: Callable[[str, str], None]):
    """The tool, unchanged for the framework (same name, signature, docstring), that records each call."""
    @functools.wraps(tool)
    def recorded(*args: Any, **kwargs: Any) -> Any:
        bound = inspect.signature(tool).bind(*args, **kwargs)
        arguments = dict(bound.arguments)
        on_event("tool call", f"{tool.__name__}({json.dumps(arguments, ensure_ascii=False)})")
        try:
            result = tool(*args, **kwargs)
        except Exception as err:  # the agent sees the error as the tool's result, as frameworks do
            result = f"error: {type(err).__name__}: {err}"
        calls.append({"tool": tool.__name__, "arguments": arguments, "result": str(result)})
        on_event("tool result", str(result))
        return result
    return recorded


async def _run(question: str, base_url: str, model: str, api_key: str, tools: list[Callable[..., Any]],
               instructions: str, options: dict[str, Any], max_rounds: int) -> Any:
    try:
        from agent_framework import Agent
        from agent_framework.openai import OpenAIChatCompletionClient
    except ImportError:
        raise UserError("tunewise agents ask needs Microsoft Agent Framework: pip install 'tunewise[agents]'") \
            from None
    client = OpenAIChatCompletionClient(model=model, base_url=base_url, api_key=api_key)
    client.function_invocation_configuration["max_iterations"] = max_rounds
    agent = Agent(client=client, name="assistant", instructions=instructions, tools=tools)
    return await agent.run(question, options=options)


def ask(question: str, *, base_url: str, model: str, tools: Sequence[Callable[..., Any]],
        instructions: str = "Answer the user's question. Use a tool when it helps.", api_key: str = "unused",
        tool_choice: str = "auto", max_tokens: int = 256, temperature: float = 0.0, max_rounds: int = 4,
        on_event: Callable[[str, str], None] = lambda kind, text: None) -> dict[str, Any]:
    """Run one Agent Framework agent to completion: the model may call `tools` (each call runs the Python
    function and sends its result back) until it answers; at most `max_rounds` model calls with tools, then
    one without (Agent Framework's rule). `tool_choice: required` forces a call in the first round only.

    Returns {"answer", "tool_calls": [{"tool", "arguments", "result"}], "seconds"}; on_event(kind, text) sees
    each tool call and result as it happens."""
    calls: list[dict[str, Any]] = []
    wrapped = [_recording(t, calls, on_event) for t in tools]
    options = {"tool_choice": tool_choice, "max_tokens": max_tokens, "temperature": temperature}
    start = time.perf_counter()
    response = asyncio.run(_run(question, base_url, model, api_key, wrapped, instructions, options, max_rounds))
    return {"answer": response.text, "tool_calls": calls, "seconds": time.perf_counter() - start}


def served_model(base_url: str, api_key: str = "unused") -> str:
    """The raw model a tunewise server offers (the base model, or else the first fine-tune): the model that
    takes tools there."""
    import urllib.request

    request = urllib.request.Request(base_url.rstrip("/") + "/models", headers={"authorization": f"Bearer {api_key}"})
    with urllib.request.urlopen(request, timeout=30) as r:
        cards = json.loads(r.read())["data"]
    kinds = {c["id"]: (c.get("tunewise") or {}).get("kind") for c in cards}
    for wanted in ("base", "fine-tune"):
        found = [m for m, kind in kinds.items() if kind == wanted]
        if found:
            return found[0]
    raise UserError(f"{base_url}: the server offers no raw model that takes tools (models: {', '.join(kinds)}); "
                    "give --model")

