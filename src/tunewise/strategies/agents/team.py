"""team: several agents with roles written in the config, in a round-robin or model-selected group chat,
ending when a message mentions `stop_text` (default "FINAL ANSWER") or after `max_messages` agent
messages. The answer is read from the final message (or the last message of `answer_from`).

    strategies:
      - name: team
        mode: round_robin            # or selector: the model picks who speaks next
        max_messages: 4
        roles:
          - {name: pro, system: "Argue for the most likely answer to: {instruction}"}
          - {name: con, system: "Argue against the previous answer if it is wrong."}
          - {name: judge, system: "Weigh both sides. End with 'FINAL ANSWER: <answer>'. Options: {labels}"}
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from tunewise.agents.team import Role, TeamSpec
from tunewise.foundation import Strict
from tunewise.registry import register
from tunewise.strategies.agents._base import AgentConfig, TeamPredictor, fill, task_message, team_stats
from tunewise.strategies.base import Strategy

NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,31}$"


class RoleConfig(Strict):
    name: str = Field(pattern=NAME, description="The agent's name (letters, digits, underscores); others see "
                      "its messages under this name.")
    system: str = Field(min_length=1, max_length=4000, description="Its system message; {instruction} and "
                        "{labels} are filled in from the task.")
    description: str = Field("", max_length=500, description="What it does, shown to the speaker selector "
                             "(selector mode).")


DEFAULT_ROLES = [
    RoleConfig(name="analyst", description="Points out the clues in the input.",
               system="You are an analyst. The task is: {instruction} Point out, in two or three short "
                      "sentences, the clues in the input that decide the answer. Do not answer yet."),
    RoleConfig(name="judge", description="Decides the final answer.",
               system="You are the judge. Use the analyst's clues and give the final answer in the requested "
                      "format."),
]


class TeamConfig(AgentConfig):
    roles: list[RoleConfig] = Field(
        default_factory=lambda: [r.model_copy() for r in DEFAULT_ROLES], min_length=1, max_length=8,
        description="The agents, in speaking order for round_robin: each {name, system, description}. Default: "
        "an analyst then a judge.")
    mode: Literal["round_robin", "selector"] = Field(
        "round_robin", description="round_robin: roles speak in order; selector: the model picks the next "
        "speaker (round-robin order when it names nobody valid; those calls are counted too).")
    max_messages: int = Field(2, ge=1, le=32, description="Most agent messages before the team stops.")
    stop_text: str = Field("FINAL ANSWER", min_length=1, max_length=64, description="A message containing this "
                           "text ends the team; the task message asks for '<stop_text>: <answer>'.")
    answer_from: str | None = Field(None, description="Role whose last message holds the answer (default: "
                                    "the final message).")

    @model_validator(mode="after")
    def _check_roles(self) -> TeamConfig:
        names = [r.name for r in self.roles]
        if len(set(names)) != len(names):
            raise ValueError(f"roles: names must differ (got {', '.join(names)})")
        if {"human", "user", "selector", "tunewise"} & set(names):
            raise ValueError("roles: 'human', 'user', 'selector' and 'tunewise' are reserved names")
        if self.answer_from is not None and self.answer_from not in names:
            raise ValueError(f"answer_from: '{self.answer_from}' is not a role ({', '.join(names)})")
        if self.mode == "selector" and len(names) < 2:
            raise ValueError("mode: selector needs at least two roles")
        return self


@register
class Team(Strategy):
    name = "team"
    family = "prompting"
    summary = "Agent team: roles from the config talk in a group chat until 'FINAL ANSWER' or a message cap."
    Config = TeamConfig

    def fit(self, backend, task, ctx):
        c = self.config
        roles = tuple(Role(r.name, fill(r.system, task), r.description or r.name) for r in c.roles)
        spec = TeamSpec(roles=roles, mode=c.mode, max_messages=c.max_messages, stop_text=c.stop_text,
                        human_turns=tuple(c.human_turns), max_new_tokens=c.max_new_tokens,
                        max_total_tokens=c.max_team_tokens)
        ctx.stats.update(team_stats(spec))
        answer_from = (c.answer_from,) if c.answer_from else None
        return TeamPredictor(backend, task, lambda e: (spec, task_message(task, e, c.stop_text)), c.concurrency,
                             c.answer, answer_from=answer_from)
