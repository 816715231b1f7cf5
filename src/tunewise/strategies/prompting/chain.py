"""chain: prompt chaining, a multi-step pipeline declared in the config.

Each step renders its own sandboxed Jinja2 template (the variables of `template`, plus every earlier
step's output by its name) and either generates free text for later steps or, as the last step, gives
the answer: label scoring for classification when the backend has log-probabilities, generation
otherwise. Steps run batched over the examples, one step at a time. Every step's rendered input, output
and tokens go to `Prediction.trace` (shown by `tunewise trace`); tokens are summed over the steps.

    strategies:
      - name: chain
        steps:
          - {name: facts, template: "List the key facts in: {{ input }}", max_tokens: 48}
          - {name: label, kind: answer, template: "{{ input }}\\nFacts: {{ facts }}"}
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

from pydantic import Field, model_validator

from tunewise.data import Example, Task
from tunewise.errors import UserError
from tunewise.foundation import Strict
from tunewise.registry import register
from tunewise.strategies.base import Prediction, Predictor, Strategy, StrategyConfig
from tunewise.strategies.prompting._templates import (
    DEFAULT_SYSTEM,
    RESERVED,
    PromptTemplate,
    demo_dicts,
    example_variables,
    fit_rendered,
    predict_rendered,
)
from tunewise.strategies.prompting.few_shot import select_demos


class ChainStep(Strict):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=64, description="Step name; later "
                      "steps use this step's output as the variable of this name.")
    template: str = Field(min_length=1, description="Jinja2 template of the step's user message (inline or "
                          "a template file); variables: input, labels, instruction, examples, meta, meta "
                          "fields and the outputs of earlier steps.")
    system: str | None = Field(None, description="Optional Jinja2 template of the step's system message.")
    kind: Literal["generate", "answer"] = Field(
        "generate", description="generate: free text for later steps; answer: the last step, whose output "
        "is the prediction (label scoring for classification when the model has log-probabilities).")
    max_tokens: int = Field(64, gt=0, le=4096, description="Longest output of the step in tokens (generate "
                            "steps, and the answer step of generation tasks).")


DEFAULT_STEPS = [
    ChainStep(name="facts", max_tokens=48, template=(
        "Task: {{ instruction }}\n\nMessage: {{ input }}\n\nIn one or two short sentences, state the key "
        "facts in the message that matter for the task.")),
    ChainStep(name="answer", kind="answer", system=DEFAULT_SYSTEM,
              template="{{ input }}\n\nKey facts: {{ facts }}"),
]


class ChainConfig(StrategyConfig):
    steps: list[ChainStep] = Field(
        default_factory=lambda: [s.model_copy() for s in DEFAULT_STEPS], min_length=1, max_length=16,
        description="The pipeline, in order: each step has name, template, optional system, kind (generate "
        "or answer; the last step must be the only answer step) and max_tokens. Default: extract the key "
        "facts, then answer given {{ facts }}.")
    k: int = Field(0, ge=0, le=64, description="Demonstrations from the training split offered to every "
                   "step's templates as `examples`.")
    batch_size: int = Field(8, gt=0, le=512, description="Examples per batch in each step.")

    @model_validator(mode="after")
    def _check_steps(self) -> ChainConfig:
        seen: set[str] = set()
        for i, step in enumerate(self.steps):
            if step.name in RESERVED:
                raise ValueError(f"steps[{i}].name: '{step.name}' is a template variable "
                                 f"({', '.join(RESERVED)}); pick another name")
            if step.name in seen:
                raise ValueError(f"steps[{i}].name: '{step.name}' is used by an earlier step; names must differ")
            seen.add(step.name)
            if step.kind == "answer" and i != len(self.steps) - 1:
                raise ValueError(f"steps[{i}].kind: only the last step can be 'answer'")
        if self.steps[-1].kind != "answer":
            raise ValueError(f"steps[{len(self.steps) - 1}].kind: the last step decides the prediction; "
                             "set its kind to 'answer'")
        return self


class CompiledStep:
    def __init__(self, step: ChainStep):
        self.step = step
        self.user = PromptTemplate(step.template, f"{step.name}.template")
        self.system = PromptTemplate(step.system, f"{step.name}.system") if step.system else None

    def fit(self, backend, task: Task, example: Example, variables: dict, scoring: bool | None = None
            ) -> tuple[tuple[str, str], dict | None]:
        """(system, user) with the example's input cut by `task.long_inputs` to fit with this step's answer."""
        return fit_rendered(backend, task, example, lambda text: self.render({**variables, "input": text}),
                            self.step.max_tokens, scoring)

    def render(self, variables: dict) -> tuple[str, str]:
        user = self.user.render(variables)
        if not user:
            raise UserError(f"{self.user.where}: rendered empty; give the step some text (e.g. '{{{{ input }}}}')")
        return (self.system.render(variables) if self.system else ""), user


class ChainPredictor(Predictor):
    def __init__(self, backend, task: Task, steps: list[CompiledStep], demos: list[dict], batch_size: int):
        self.backend, self.task, self.steps, self.demos = backend, task, steps, demos
        self.batch_size = batch_size
        self.model = backend.model

    def predict(self, examples: Sequence[Example], on_batch: Callable[[int], None] | None = None
                ) -> list[Prediction]:
        variables = [example_variables(self.task, e, self.demos) for e in examples]
        traces: list[list[dict]] = [[] for _ in examples]
        used = [[0, 0] for _ in examples]  # prompt, completion tokens over all steps
        cuts: list[dict | None] = [None] * len(examples)  # the first cut of each example's input
        for compiled in self.steps[:-1]:
            rendered = self._fit(compiled, examples, variables, cuts, scoring=False)
            prompts = [self.backend.render(_messages(system, user), add_generation_prompt=True)
                       for system, user in rendered]
            outs = self.backend.generate(prompts, max_new_tokens=compiled.step.max_tokens,
                                         batch_size=self.batch_size)
            for i, ((system, user), prompt, (text, n)) in enumerate(zip(rendered, prompts, outs, strict=True)):
                variables[i][compiled.step.name] = text
                tokens = {"prompt": self.backend.count_tokens(prompt), "completion": n}
                traces[i].append(_trace(compiled.step.name, system, user, text, tokens))
                used[i][0] += tokens["prompt"]
                used[i][1] += n
        last = self.steps[-1]
        rendered = self._fit(last, examples, variables, cuts, scoring=None)
        preds = predict_rendered(self.backend, self.task, rendered, self.batch_size, last.step.max_tokens,
                                 on_batch)
        for i, ((system, user), p) in enumerate(zip(rendered, preds, strict=True)):
            tokens = {"prompt": p.prompt_tokens, "completion": p.completion_tokens}
            traces[i].append(_trace(last.step.name, system, user, p.output, tokens))
            p.prompt_tokens += used[i][0]
            p.completion_tokens += used[i][1]
            p.trace = ([cuts[i]] if cuts[i] else []) + traces[i]
        return preds

    def _fit(self, compiled: CompiledStep, examples: Sequence[Example], variables: list[dict],
             cuts: list[dict | None], scoring: bool | None) -> list[tuple[str, str]]:
        rendered = []
        for i, (e, v) in enumerate(zip(examples, variables, strict=True)):
            prompt, cut = compiled.fit(self.backend, self.task, e, v, scoring)
            rendered.append(prompt)
            cuts[i] = cuts[i] or cut
        return rendered


def _messages(system: str, user: str) -> list[dict[str, str]]:
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]


def _trace(step: str, system: str, user: str, output: str, tokens: dict) -> dict:
    row = {"step": step, "input": user, "output": output, "tokens": tokens}
    return {**row, "system": system} if system else row


def compile_steps(steps: list[ChainStep], task: Task, demos: list[dict]) -> list[CompiledStep]:
    """Compile every template, refuse a step that uses the output of itself or a later step, and render
    each once on a training example (earlier outputs as placeholders): template errors stop the fit."""
    compiled = [CompiledStep(s) for s in steps]
    names = [s.name for s in steps]
    for i, c in enumerate(compiled):
        used = c.user.variables | (c.system.variables if c.system else set())
        later = sorted(used & set(names[i:]))
        if later:
            raise UserError(f"{c.user.where}: uses '{later[0]}', the output of this or a later step; a step "
                            f"can use only earlier steps ({', '.join(names[:i]) or 'none here'})")
    if task.train:
        variables = example_variables(task, task.train[0], demos)
        for c in compiled:
            c.render(variables)
            variables[c.step.name] = f"(output of step {c.step.name})"
    return compiled


@register
class Chain(Strategy):
    name = "chain"
    family = "prompting"
    summary = "Prompt chaining: templated steps feed each other; the last step answers (label scoring)."
    Config = ChainConfig

    def fit(self, backend, task, ctx):
        c = self.config
        demos = select_demos(task.train, c.k, "balanced", ctx.seed, task.is_classification) if c.k else []
        steps = compile_steps(c.steps, task, demo_dicts(demos))
        ctx.stats["demonstrations"] = [d.id for d in demos]
        ctx.stats["steps"] = [s.name for s in c.steps]
        return ChainPredictor(backend, task, steps, demo_dicts(demos), c.batch_size)
