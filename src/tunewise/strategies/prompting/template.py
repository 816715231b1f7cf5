"""template: the user writes the system and user messages as sandboxed Jinja2 templates.

Variables: `input`, `labels`, `instruction`, `examples` (k demonstrations from the training split),
`meta` and each meta field by name (see `_templates.py`). Classification scores the labels after the
rendered prompt (`prompt_predictor`); generation tasks generate. Each prediction's trace holds the
rendered messages, so `tunewise trace` shows exactly what the model saw.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

from pydantic import Field

from tunewise.data import Example, Task
from tunewise.errors import UserError
from tunewise.registry import register
from tunewise.strategies.base import Prediction, Predictor, Strategy
from tunewise.strategies.prompting._structured import StructuredOutputConfig, structured_output
from tunewise.strategies.prompting._templates import (
    DEFAULT_SYSTEM,
    PromptTemplate,
    demo_dicts,
    example_variables,
    fit_rendered,
    predict_rendered,
)
from tunewise.strategies.prompting.few_shot import select_demos


class TemplateConfig(StructuredOutputConfig):
    system: str | None = Field(
        DEFAULT_SYSTEM, description="Jinja2 template of the system message: inline text or a template file "
        "(.j2/.jinja/.txt). Variables: input, labels, instruction, examples, meta and meta fields. The "
        "default states the instruction, the label set and the demonstrations; null for no system message.")
    user: str = Field("{{ input }}", min_length=1, description="Jinja2 template of the user message (inline "
                      "text or a template file); same variables as `system`.")
    k: int = Field(4, ge=0, le=64, description="Demonstrations from the training split offered to the "
                   "templates as `examples` (0 for none).")
    selection: Literal["balanced", "random"] = Field(
        "balanced", description="How demonstrations are chosen: balanced over labels, or random.")
    batch_size: int = Field(16, gt=0, le=512, description="Examples per forward pass when scoring.")
    max_new_tokens: int = Field(64, gt=0, le=4096, description="Generation tasks: longest answer in tokens.")


class TemplatePredictor(Predictor):
    def __init__(self, backend, task: Task, system: PromptTemplate | None, user: PromptTemplate,
                 demos: list[dict], batch_size: int, max_new_tokens: int, structured=None):
        self.backend, self.task, self.system, self.user = backend, task, system, user
        self.model = backend.model
        self.demos, self.batch_size, self.max_new_tokens = demos, batch_size, max_new_tokens
        self.structured = structured

    def render(self, example: Example, text: str | None = None) -> tuple[str, str]:
        """(system, user) for `example`, with `text` as its input when given (a cut input)."""
        variables = example_variables(self.task, example, self.demos)
        if text is not None:
            variables["input"] = text
        system = self.system.render(variables) if self.system else ""
        if self.structured:  # the schema is part of what the model is told
            system = f"{system}\n{self.structured.instruction()}" if system else self.structured.instruction()
        user = self.user.render(variables)
        if not user:
            raise UserError(f"{self.user.where}: rendered empty for example {example.id}; the user message "
                            "needs text (e.g. '{{ input }}')")
        return system, user

    def predict(self, examples: Sequence[Example], on_batch: Callable[[int], None] | None = None
                ) -> list[Prediction]:
        fitted = [fit_rendered(self.backend, self.task, e, lambda t, e=e: self.render(e, t), self.max_new_tokens)
                  for e in examples]
        prompts = [prompt for prompt, _ in fitted]
        preds = predict_rendered(self.backend, self.task, prompts, self.batch_size, self.max_new_tokens, on_batch,
                                 self.structured)
        for (system, user), (_, cut), p in zip(prompts, fitted, preds, strict=True):
            step = {"step": "template", "input": user, "output": p.output,
                    "tokens": {"prompt": p.prompt_tokens, "completion": p.completion_tokens}}
            # an output_schema answer's extraction step stays last (it counts extraction failures)
            p.trace = ([cut] if cut else []) + [{**step, "system": system} if system else step] + (p.trace or [])
        return preds


def build_templates(system: str | None, user: str) -> tuple[PromptTemplate | None, PromptTemplate]:
    return (PromptTemplate(system, "system") if system else None), PromptTemplate(user, "user")


@register
class Template(Strategy):
    name = "template"
    family = "prompting"
    summary = "Your own sandboxed Jinja2 templates for the system and user messages."
    Config = TemplateConfig

    def fit(self, backend, task, ctx):
        c = self.config
        system, user = build_templates(c.system, c.user)  # fails here, before any example is scored
        demos = select_demos(task.train, c.k, c.selection, ctx.seed, task.is_classification) if c.k else []
        ctx.stats["demonstrations"] = [d.id for d in demos]
        predictor = TemplatePredictor(backend, task, system, user, demo_dicts(demos), c.batch_size,
                                      c.max_new_tokens, structured_output(c, backend, task))
        if task.train:  # render one training example now: a template error stops the fit, not the scoring
            predictor.render(task.train[0])
        return predictor
