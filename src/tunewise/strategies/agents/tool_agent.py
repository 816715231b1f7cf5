"""tool-agent: one agent with tools named in the config. Tools are Python callables registered by name
(`tunewise.agents.tools.register_tool`); built-ins are `calculator` (arithmetic via `ast`, never eval)
and `retrieve` (nearest TRAINING examples with their answers). A config names tools and never holds code.
The model asks for a tool with a JSON object (see `tunewise.agents.toolcall`); the result comes back to
it, and after at most `max_tool_calls` calls it answers in plain text.

    strategies:
      - name: tool-agent
        tools: [calculator]      # default: retrieve for classification, calculator for generation
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from tunewise.agents.team import Role, TeamSpec
from tunewise.agents.tools import TOOL_NAME, ToolContext, resolve_tools
from tunewise.registry import register
from tunewise.strategies.agents._base import AgentConfig, TeamPredictor, fill, task_message, team_stats
from tunewise.strategies.base import Strategy

SYSTEM = "You are a careful assistant. {instruction} Use a tool when it helps."


class ToolAgentConfig(AgentConfig):
    tools: list[Annotated[str, Field(pattern=TOOL_NAME)]] | None = Field(
        None, max_length=16, description="Names of registered tools (built-in: calculator, retrieve). Default: "
        "retrieve for classification, calculator for generation tasks. Names only: configs never carry code.")
    system: str = Field(SYSTEM, min_length=1, max_length=4000, description="The agent's system message; "
                        "{instruction} and {labels} are filled in, then the tool list is appended.")
    max_tool_calls: int = Field(2, ge=1, le=8, description="Most model calls per example that may request a "
                                "tool; then the agent answers without tools.")
    retrieve_k: int = Field(3, ge=1, le=20, description="retrieve: training examples returned per call.")


@register
class ToolAgent(Strategy):
    name = "tool-agent"
    family = "prompting"
    summary = "Agent with tools named in the config (calculator, retrieval over the training set, your own)."
    Config = ToolAgentConfig

    def fit(self, backend, task, ctx):
        c = self.config
        names = c.tools if c.tools is not None else (["retrieve"] if task.is_classification else ["calculator"])
        # The context holds the training split only: a tool cannot look at test examples.
        tools = resolve_tools(names, ToolContext(train=list(task.train), labels=list(task.labels),
                                                 options={"retrieve_k": c.retrieve_k}))
        system = fill(c.system, task)
        spec = TeamSpec(roles=(Role("assistant", system, "Answers using tools.", tools=tuple(tools)),),
                        max_messages=1, human_turns=tuple(c.human_turns), max_new_tokens=c.max_new_tokens,
                        max_total_tokens=c.max_team_tokens, max_tool_calls=c.max_tool_calls)
        ctx.stats.update(team_stats(spec))
        return TeamPredictor(backend, task, lambda e: (spec, task_message(task, e)), c.concurrency, c.answer)
