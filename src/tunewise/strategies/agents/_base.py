"""What the agent strategies share: common options, the task message, and the predictor that runs one
team per example and turns the conversation into a scored `Prediction`.

Accounting: `prompt_tokens`/`completion_tokens` are the sums over every model call of every agent
(speaker selection included); the trace has one entry per message (agent, kind, content, tokens), so
the entries add up to the totals, and a last `answer` entry with the extraction (`failed: true` when no
answer could be read; the output is then "" and scored wrong) and the number of agent turns.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Annotated, Literal

from pydantic import Field

from tunewise.agents.team import TeamSpec, run_teams
from tunewise.backends.context import fit_text, limit_for, name_of
from tunewise.data import Example, Task
from tunewise.strategies.base import Prediction, Predictor, StrategyConfig
from tunewise.strategies.prompting._extract import extraction_step, extractor_for

Build = Callable[[Example], tuple[TeamSpec, str]]


class AgentConfig(StrategyConfig):
    max_new_tokens: int = Field(128, gt=0, le=4096, description="Longest message of any agent, in tokens "
                                "(bounds every model call).")
    max_team_tokens: int | None = Field(None, gt=0, description="Stop a team once its messages used this many "
                                        "tokens (prompt + completion), on top of the message cap.")
    concurrency: int = Field(8, ge=1, le=64, description="Examples whose teams run at once; their model calls "
                             "are batched into one forward pass.")
    human_turns: list[Annotated[int, Field(ge=1, le=1000)]] = Field(
        default_factory=list, max_length=32, description="Agent-message numbers after which a person approves "
        "(Enter) or edits in the terminal, e.g. [1]; skipped with a note in the trace when the run is not "
        "interactive (stdin not a terminal, or CI set), so it never waits.")
    answer: Literal["auto", "number", "text"] = Field(
        "auto", description="Generation tasks: read the answer as a number (maths) or text; auto picks number "
        "when every training target is a number. Classification maps the answer to the closest label.")


def fill(template: str, task: Task) -> str:
    """`{instruction}` and `{labels}` in a role's system message (plain replacement: no format language)."""
    labels = ", ".join(task.labels)
    return template.replace("{instruction}", task.instruction).replace("{labels}", labels).strip()


def task_message(task: Task, example: Example, marker: str = "Answer") -> str:
    """The message that starts every team: the input, then the question and the answer format (small models
    follow a format stated at the end of the user message far more often than one in a system message)."""
    if task.is_classification:
        return (f"Input: {example.input}\n\nWhich one fits best? Choose one of: {', '.join(task.labels)}.\n"
                f"Reply as '{marker}: <label>'.")
    return (f"Input: {example.input}\n\n{task.instruction}\nWork it out step by step, then end with "
            f"'{marker}: <answer>' on its own last line.")


class TeamPredictor(Predictor):
    """One team per example (up to `concurrency` at once); the answer is read from `answer_from`'s last
    message (a person's edit wins), or the last agent message."""

    def __init__(self, backend, task: Task, build: Build, concurrency: int, answer: str = "auto",
                 answer_from: Sequence[str] | None = None):
        self.backend, self.task, self.build = backend, task, build
        self.model = backend.model
        self.concurrency, self.answer_from = concurrency, answer_from
        self.extract = extractor_for(task, answer)

    def predict(self, examples: Sequence[Example], on_batch: Callable[[int], None] | None = None
                ) -> list[Prediction]:
        if not examples:
            return []
        fitted = [self._fit(e) for e in examples]
        runs = run_teams(self.backend, [job for job, _ in fitted], concurrency=self.concurrency, on_done=on_batch)
        preds = []
        for run, (_, cut) in zip(runs, fitted, strict=True):
            raw = run.final_text(self.answer_from)
            extracted = self.extract(raw) if raw.strip() else None
            final = {"step": "answer", "agent": "tunewise", "kind": "answer", "content": extracted or "",
                     "tokens": {"prompt": 0, "completion": 0}, "turns": len(run.agent_messages),
                     "stop_reason": run.stop_reason, **extraction_step(raw, extracted)}
            preds.append(Prediction(output=extracted or "", prompt_tokens=run.prompt_tokens,
                                    completion_tokens=run.completion_tokens,
                                    trace=([cut] if cut else []) + run.trace() + [final]))
        return preds

    def _fit(self, example: Example) -> tuple[tuple[TeamSpec, str], dict | None]:
        """The team and its task message, the example's input cut by `task.long_inputs` so that every role's
        first call (its system message, the task message and its longest reply) fits the model. Later turns
        that outgrow the context are the model client's to trim (agents/client.py)."""
        spec, _ = self.build(example)
        longest = max((r.max_new_tokens or spec.max_new_tokens for r in spec.roles), default=spec.max_new_tokens)

        speakers = [r for r in spec.roles if r.function is None]  # the roles that call the model

        def measure(text: str) -> int:
            _, message = self.build(dataclasses.replace(example, input=text))
            first = [{"role": "user", "content": message}]
            return max((self.backend.count_tokens(self.backend.render(
                ([{"role": "system", "content": r.system}] if r.system else []) + first, add_generation_prompt=True))
                for r in speakers), default=0)

        limit = limit_for(self.backend.context_window, self.task, longest)
        text, cut = fit_text(self.backend, limit, name_of(example), example.input, measure)
        return (self.build(dataclasses.replace(example, input=text)) if cut else self.build(example)), cut


def team_stats(spec: TeamSpec) -> dict:
    return {"agents": [r.name for r in spec.roles], "mode": spec.mode, "max_messages": spec.max_messages,
            "stop_text": spec.stop_text, "max_new_tokens": spec.max_new_tokens,
            "tools": sorted({t.__name__ for r in spec.roles for t in r.tools}), "human_turns": list(spec.human_turns)}
