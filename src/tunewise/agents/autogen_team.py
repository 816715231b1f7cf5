"""The AutoGen adapter: turn a neutral `TeamSpec` into AutoGen AgentChat agents and a team, run it, and
turn what happened back into neutral `Turn`s. This file and `client.py` are the only places that know
AutoGen (which is in maintenance mode; its successor is Microsoft Agent Framework).

- round_robin: `RoundRobinGroupChat`; selector: `SelectorGroupChat` (the model picks the next speaker,
  its calls recorded as `selector` turns). With human turns, a `UserProxyAgent` joins and a selector
  function puts it after the chosen agent messages (and keeps round-robin order when asked for).
- bounds: `max_turns` (agent messages plus human turns), `TextMentionTermination(stop_text)`, an optional
  `TokenUsageTermination`, and per call `max_new_tokens`; tools run at most `max_tool_calls` rounds
  per turn, then the agent answers in plain text.
- sync callers: `run_teams` runs the coroutines with `asyncio.run`, or in a thread with its own loop when
  the caller is already inside an event loop.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from autogen_agentchat.agents import AssistantAgent, BaseChatAgent, UserProxyAgent
from autogen_agentchat.base import Response, TaskResult
from autogen_agentchat.conditions import MaxMessageTermination, TextMentionTermination, TokenUsageTermination
from autogen_agentchat.messages import (
    BaseChatMessage,
    StopMessage,
    TextMessage,
    ToolCallExecutionEvent,
    ToolCallRequestEvent,
    ToolCallSummaryMessage,
)
from autogen_agentchat.teams import RoundRobinGroupChat, SelectorGroupChat

from tunewise.agents.client import GenerationBatcher, Ledger, TunewiseChatClient
from tunewise.agents.team import HUMAN, Role, TeamRun, TeamSpec, Turn

SELECTOR = "selector"


class FunctionAgent(BaseChatAgent):
    """A participant without a model: `role.function(conversation) -> reply` (e.g. an evaluator tool)."""

    def __init__(self, role: Role):
        super().__init__(role.name, role.description or f"{role.name} (runs a tool)")
        self._function = role.function
        self._history: list[tuple[str, str]] = []

    @property
    def produced_message_types(self):
        return (TextMessage,)

    async def on_messages(self, messages: Sequence[BaseChatMessage], cancellation_token) -> Response:
        self._history += [(m.source, m.to_model_text()) for m in messages]
        reply = await asyncio.to_thread(self._function, list(self._history))
        self._history.append((self.name, reply))
        return Response(chat_message=TextMessage(content=reply, source=self.name))

    async def on_reset(self, cancellation_token) -> None:
        self._history.clear()


def _agent(role: Role, spec: TeamSpec, backend, ledger: Ledger, batcher: GenerationBatcher):
    if role.function is not None:
        return FunctionAgent(role)
    others = [r.name for r in spec.roles if r.name != role.name] + [HUMAN, "user"]
    client = TunewiseChatClient(backend, name=role.name, max_new_tokens=role.max_new_tokens or spec.max_new_tokens,
                                ledger=ledger, batcher=batcher, stop=[f"\n{o}:" for o in others])
    return AssistantAgent(role.name, model_client=client, system_message=role.system or None,
                          description=role.description or role.name, tools=list(role.tools) or None,
                          reflect_on_tool_use=bool(role.tools), max_tool_iterations=spec.max_tool_calls)


def _selector_func(spec: TeamSpec, human: bool, fallback: dict[str, str]):
    names = [r.name for r in spec.roles]

    def select(thread) -> str | None:
        said = [m.source for m in thread if isinstance(m, BaseChatMessage) and m.source in names + [HUMAN]]
        spoken = [s for s in said if s != HUMAN]
        if human and spoken and said[-1] != HUMAN and len(spoken) in spec.human_turns:
            return HUMAN
        following = names[0] if not spoken else names[(names.index(spoken[-1]) + 1) % len(names)]
        if spec.mode == "selector" and spoken:
            fallback["next"] = following  # used when the model names no valid speaker
            return None
        return following
    return select


def _candidates(spec: TeamSpec):
    names = [r.name for r in spec.roles]

    def candidates(thread) -> list[str]:
        spoken = [m.source for m in thread if isinstance(m, BaseChatMessage) and m.source in names]
        return [n for n in names if not spoken or n != spoken[-1]] or names
    return candidates


def _repair_selection(names: list[str], fallback: dict[str, str]) -> Callable[[str], str]:
    """Small models rarely answer a selector prompt with exactly one name: then round-robin order decides."""
    def repair(text: str) -> str:
        hits = [n for n in names if re.search(rf"(?<!\w){re.escape(n)}(?!\w)", text)]
        return text if len(hits) == 1 else fallback.get("next", names[0])
    return repair


def _team(spec: TeamSpec, backend, ledger: Ledger, batcher: GenerationBatcher, ask: Callable[[str], str] | None,
          run: TeamRun):
    agents = [_agent(r, spec, backend, ledger, batcher) for r in spec.roles]
    human = ask is not None and bool(spec.human_turns)
    names = [r.name for r in spec.roles]
    asked = len({t for t in spec.human_turns if t <= spec.max_messages}) if human else 0
    stop = MaxMessageTermination(1 + spec.max_messages + asked)  # the task, agent messages, human replies
    if spec.stop_text:
        stop = stop | TextMentionTermination(spec.stop_text, sources=list(spec.stop_sources or names))
    if spec.max_total_tokens:
        stop = stop | TokenUsageTermination(max_total_token=spec.max_total_tokens)
    if human:
        agents.append(UserProxyAgent(HUMAN, description="A person who approves or edits",
                                     input_func=_show_then(ask, run)))
    if spec.mode == "round_robin" and not human:
        return RoundRobinGroupChat(agents, termination_condition=stop)
    fallback: dict[str, str] = {}
    selector_client = TunewiseChatClient(backend, name=SELECTOR, max_new_tokens=16, ledger=ledger,
                                         batcher=batcher, postprocess=_repair_selection(names, fallback))
    return SelectorGroupChat(agents, model_client=selector_client, termination_condition=stop,
                             selector_func=_selector_func(spec, human, fallback), candidate_func=_candidates(spec),
                             max_selector_attempts=1)


def _show_then(ask: Callable[[str], str], run: TeamRun) -> Callable[[str], str]:
    """The person sees the last agent message, then approves (Enter) or types an edit or feedback."""
    def prompt(_: str) -> str:
        last = next((t for t in reversed(run.turns) if t.kind == "message"), None)
        shown = f"\n--- {last.agent} ---\n{last.content}\n" if last else "\n"
        return ask(shown + "[human] Enter approves; or type an edit or feedback: ")
    return prompt


def _turns(message: Any) -> list[Turn]:
    usage = getattr(message, "models_usage", None)
    tokens = (usage.prompt_tokens, usage.completion_tokens) if usage else (0, 0)
    source = getattr(message, "source", "")
    if isinstance(message, ToolCallRequestEvent):
        calls = [json.dumps({"tool": c.name, "arguments": c.arguments}) for c in message.content]
        return [Turn(source, "\n".join(calls), "tool_call", *tokens)]
    if isinstance(message, ToolCallExecutionEvent):
        return [Turn(source, "\n".join(f"{r.name}: {r.content}" for r in message.content), "tool_result")]
    if isinstance(message, StopMessage):
        return [Turn(source, message.content, "note")]
    if isinstance(message, TextMessage | ToolCallSummaryMessage):
        kind = "task" if source == "user" else "human" if source == HUMAN else "message"
        return [Turn(source, message.content, kind, *tokens)]
    return []  # streaming chunks, input-requested events, thoughts: nothing to account


async def _run_one(backend, spec: TeamSpec, task: str, ask, batcher: GenerationBatcher,
                   on_turn: Callable[[Turn], None] | None) -> TeamRun:
    ledger, run, seen = Ledger(), TeamRun(), 0
    team = _team(spec, backend, ledger, batcher, ask, run)

    def add(turn: Turn) -> None:
        run.turns.append(turn)
        if on_turn:
            on_turn(turn)

    async for item in team.run_stream(task=task):
        turns = [] if isinstance(item, TaskResult) else _turns(item)
        if not (turns and turns[0].kind == "task"):
            # Selector calls made since the last message chose the speaker of this one: keep the order.
            for agent, p, c, text in ledger.calls[seen:]:
                if agent == SELECTOR:
                    add(Turn(SELECTOR, text, "selector", p, c))
            seen = len(ledger.calls)
        for turn in turns:
            add(turn)
        if isinstance(item, TaskResult):
            run.stop_reason = item.stop_reason or ""
    expected = (sum(p for _, p, _, _ in ledger.calls), sum(c for _, _, c, _ in ledger.calls))
    missing = (expected[0] - run.prompt_tokens, expected[1] - run.completion_tokens)
    if missing != (0, 0):  # a model call no message reported: still counted, never lost
        add(Turn("unattributed", "(model calls not attached to any message)", "note", *missing))
    return run


async def _run_all(backend, jobs, asks, on_turn, concurrency: int, on_done) -> list[TeamRun]:
    batcher = GenerationBatcher(backend, max_batch=max(1, concurrency))
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(i: int) -> TeamRun:
        async with gate:
            spec, task = jobs[i]
            run = await _run_one(backend, spec, task, asks[i], batcher,
                                 (lambda t: on_turn(i, t)) if on_turn else None)
        if on_done:
            on_done(1)
        return run
    return list(await asyncio.gather(*(one(i) for i in range(len(jobs)))))


def run_sync(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine from synchronous code, even when the caller already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = asyncio.run(coro)
        except BaseException as err:  # re-raised in the caller's thread
            box["error"] = err
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["result"]


def run_teams(backend, jobs: Sequence[tuple[TeamSpec, str]], asks: Sequence[Callable[[str], str] | None], *,
              on_turn=None, concurrency: int = 8, on_done=None) -> list[TeamRun]:
    if any(asks):  # a person answers one team at a time
        concurrency = 1
    return run_sync(_run_all(backend, list(jobs), list(asks), on_turn, concurrency, on_done))
