"""reflect: a solver answers, a critic checks the answer against the task's instructions and replies
APPROVE or with feedback, the solver revises; at most `rounds` revisions (as Reflexion / self-refine, with
the critic as a second agent). The answer is read from the solver's last message.

    strategies:
      - name: reflect
        rounds: 1          # solver, critic, solver: three model calls at most per example
"""

from __future__ import annotations

from pydantic import Field

from tunewise.agents.team import Role, TeamSpec
from tunewise.registry import register
from tunewise.strategies.agents._base import AgentConfig, TeamPredictor, fill, task_message, team_stats
from tunewise.strategies.base import Strategy

SOLVER = "You are the solver. {instruction} When a critic gives feedback, give a corrected answer."
CRITIC = ("You are a strict critic. The task is: {instruction} Check the solver's latest answer against the "
          "task and the input. If it is correct and follows the instructions, reply with the single word "
          "APPROVE. Otherwise say in one sentence what is wrong.")
APPROVE = "APPROVE"


class ReflectConfig(AgentConfig):
    rounds: int = Field(1, ge=1, le=8, description="Most revisions by the solver after critiques (each round "
                        "is one critic and one solver message); an APPROVE ends earlier.")
    solver_system: str = Field(SOLVER, min_length=1, description="The solver's system message; {instruction} "
                               "and {labels} are filled in. (The task message states the answer format.)")
    critic_max_new_tokens: int = Field(48, gt=0, le=4096, description="Longest critique, in tokens (the "
                                       "critic only accepts or says what is wrong).")
    critic_system: str = Field(CRITIC, min_length=1, description="The critic's system message; {instruction} "
                               "and {labels} are filled in. It must reply APPROVE to accept an answer.")


@register
class Reflect(Strategy):
    name = "reflect"
    family = "prompting"
    summary = "Agent team: a solver answers, a critic checks it against the instructions, the solver revises."
    Config = ReflectConfig

    def fit(self, backend, task, ctx):
        c = self.config
        labels = f" The answer must be one of: {', '.join(task.labels)}." if task.is_classification else ""
        spec = TeamSpec(roles=(Role("solver", fill(c.solver_system, task), "Answers the task and revises."),
                               Role("critic", fill(c.critic_system, task) + labels,
                                    "Checks the answer; replies APPROVE or with feedback.",
                                    max_new_tokens=c.critic_max_new_tokens)),
                        max_messages=1 + 2 * c.rounds, stop_text=APPROVE, stop_sources=("critic",),
                        human_turns=tuple(c.human_turns), max_new_tokens=c.max_new_tokens,
                        max_total_tokens=c.max_team_tokens)
        ctx.stats.update(team_stats(spec) | {"rounds": c.rounds})
        return TeamPredictor(backend, task, lambda e: (spec, task_message(task, e)), c.concurrency, c.answer,
                             answer_from=("solver",))
