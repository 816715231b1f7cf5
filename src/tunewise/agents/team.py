"""Framework-neutral description of an agent team and of what it did (roles, bounds, turns, tokens).

tunewise's own logic (strategies, the prompt-optimisation and writing teams) builds a `TeamSpec`, hands
it to `run_teams`, and reads back `TeamRun`s: a list of `Turn`s with the tokens each model call used.
Only `autogen_team.py` and `client.py` know AutoGen; moving to another agent framework means rewriting
those two files, not this one or the strategies.

Human in the loop: `human_turns` lists agent-message numbers after which a person approves (Enter) or
types a replacement. Without an interactive terminal (stdin not a TTY, or CI set) the person is never
asked: each such turn becomes a `note` turn saying it was skipped, so a batch run can never hang.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from tunewise.errors import UserError

HUMAN = "human"
TurnKind = Literal["task", "message", "tool_call", "tool_result", "selector", "human", "note"]


@dataclass(frozen=True)
class Role:
    """One participant. `function` makes a deterministic participant (no model): it reads the
    conversation so far as [(agent, text)] and returns its message (e.g. an evaluator)."""

    name: str
    system: str = ""
    description: str = ""
    tools: tuple[Callable[..., Any], ...] = ()
    function: Callable[[list[tuple[str, str]]], str] | None = None
    max_new_tokens: int | None = None  # this role's cap per model call (default: the team's)


@dataclass(frozen=True)
class TeamSpec:
    roles: tuple[Role, ...]
    mode: Literal["round_robin", "selector"] = "round_robin"
    max_messages: int = 4  # agent messages (the task and human replies do not count)
    stop_text: str | None = None  # a message containing it ends the team
    stop_sources: tuple[str, ...] | None = None  # whose messages may stop it (default: every role)
    human_turns: tuple[int, ...] = ()
    max_new_tokens: int = 128  # per model call
    max_tool_calls: int = 2  # model calls per turn that may request tools (then one plain answer)
    max_total_tokens: int | None = None  # the team stops once its messages used this many tokens

    def __post_init__(self) -> None:
        names = [r.name for r in self.roles]
        if not names:
            raise UserError("roles: a team needs at least one role")
        if len(set(names)) != len(names) or HUMAN in names or "user" in names:
            raise UserError(f"roles: names must be unique and not '{HUMAN}' or 'user' (got {', '.join(names)})")
        if self.mode == "selector" and len(names) < 2:
            raise UserError("mode: 'selector' needs at least two roles; use 'round_robin'")


@dataclass
class Turn:
    agent: str
    content: str
    kind: TurnKind = "message"
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def trace(self) -> dict[str, Any]:
        return {"step": f"{self.agent} ({self.kind})", "agent": self.agent, "kind": self.kind, "content": self.content,
                "tokens": {"prompt": self.prompt_tokens, "completion": self.completion_tokens}}


@dataclass
class TeamRun:
    turns: list[Turn] = field(default_factory=list)
    stop_reason: str = ""

    @property
    def prompt_tokens(self) -> int:
        return sum(t.prompt_tokens for t in self.turns)

    @property
    def completion_tokens(self) -> int:
        return sum(t.completion_tokens for t in self.turns)

    @property
    def agent_messages(self) -> list[Turn]:
        return [t for t in self.turns if t.kind == "message"]

    def final_text(self, sources: Sequence[str] | None = None) -> str:
        """The answer-bearing text: a person's edit if one came after the last agent message, else the last
        message of `sources` (default: any agent)."""
        for t in reversed(self.turns):
            if t.kind == "human" and t.content.strip() and t.content.strip().upper() != "APPROVE":
                return t.content
            if t.kind == "message" and (sources is None or t.agent in sources):
                return t.content
        return ""

    def trace(self) -> list[dict[str, Any]]:
        return [t.trace() for t in self.turns]


# --- human in the loop ---------------------------------------------------------------------------
def is_interactive() -> bool:
    """A person can answer: stdin is a terminal and we are not under CI."""
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        return False
    try:
        return sys.stdin is not None and not sys.stdin.closed and sys.stdin.isatty()
    except (ValueError, OSError):
        return False


def terminal_input(prompt: str) -> str:
    """Ask the person in the terminal; Enter approves. End of input counts as approval."""
    try:
        reply = input(prompt)
    except EOFError:
        return "APPROVE"
    return reply.strip() or "APPROVE"


def human_input(spec: TeamSpec, input_fn: Callable[[str], str] | None = None
                ) -> Callable[[str], str] | None:
    """The function that asks the person, or None when nobody should be asked (no turns, or no terminal)."""
    if not spec.human_turns:
        return None
    if input_fn is not None:
        return input_fn
    return terminal_input if is_interactive() else None


def add_skip_notes(run: TeamRun, human_turns: Sequence[int]) -> TeamRun:
    """Record each human turn that was skipped because the run is not interactive."""
    out, seen = [], 0
    for t in run.turns:
        out.append(t)
        if t.kind == "message":
            seen += 1
            if seen in human_turns:
                out.append(Turn(HUMAN, f"(human turn after message {seen} skipped: not an interactive terminal)",
                                kind="note"))
    run.turns = out
    return run


def run_teams(backend, jobs: Sequence[tuple[TeamSpec, str]], *, input_fn: Callable[[str], str] | None = None,
              on_turn: Callable[[int, Turn], None] | None = None, concurrency: int = 8,
              on_done: Callable[[int], None] | None = None) -> list[TeamRun]:
    """Run each (team, task text) on the backend, up to `concurrency` at once (their model calls are batched)."""
    try:
        autogen_team = importlib.import_module("tunewise.agents.autogen_team")
    except ImportError as err:
        raise UserError(f"agent teams need AutoGen ({err.name} is missing); run "
                        "`pip install 'tunewise[agents]'`") from None
    asks = [human_input(spec, input_fn) for spec, _ in jobs]
    runs = autogen_team.run_teams(backend, jobs, asks, on_turn=on_turn, concurrency=concurrency,
                                  on_done=on_done)
    for run, (spec, _), ask in zip(runs, jobs, asks, strict=True):
        if spec.human_turns and ask is None:
            add_skip_notes(run, spec.human_turns)
    return runs
