"""`tunewise agents ask`: one Microsoft Agent Framework agent (`tunewise.agents.framework`) with tunewise's
registered Python tools, against an OpenAI-compatible endpoint or a run folder served for the duration.

The run folder is served by starting `tunewise serve` as a subprocess (`tunewise.endpoint.ServerProcess`), so
the agent reaches the model exactly as any client would: through the OpenAI chat API.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tunewise.agents.framework import ask, served_model
from tunewise.agents.tools import ToolContext, resolve_tools
from tunewise.endpoint import ServerProcess, read_api_key
from tunewise.errors import UserError


def ask_endpoint(question: str, *, run: str | Path | None = None, base_url: str | None = None,
                 model: str | None = None, tool_names: Sequence[str] = ("calculator",),
                 api_key_env: str | None = None, **options: Any) -> dict[str, Any]:
    """`framework.ask` against an endpoint (`base_url`) or a run folder served for the duration (`run`);
    tools are looked up by registered name, the key (if any) read from `api_key_env` and never printed.
    `options` go to `ask` (tool_choice, max_tokens, max_rounds, on_event, ...).

    Returns ask's result ({"answer", "tool_calls", "seconds"}) plus "model". UserError when neither or both
    of `run` and `base_url` are given, or a tool name or key is unknown."""
    if (run is None) == (base_url is None):
        raise UserError("give either --run RUN_FOLDER (served while the agent runs) or --base-url URL")
    tools = resolve_tools(list(tool_names), ToolContext())
    api_key = read_api_key(api_key_env) or "unused"
    if base_url is not None:
        name = model or served_model(base_url, api_key)
        return {**ask(question, base_url=base_url, model=name, tools=tools, api_key=api_key, **options), "model": name}
    with ServerProcess(run) as server:
        name = model or served_model(server.url)
        return {**ask(question, base_url=server.url, model=name, tools=tools, **options), "model": name}
