"""User-written Jinja2 prompt templates, rendered in a sandbox, shared by `template` and `chain`.

A template value in a config is either inline text or the path of a template file (one line, no Jinja
markers, ending in .j2/.jinja/.jinja2/.tmpl/.txt/.md, or naming an existing file). Relative paths start
at the current folder. Templates render in `ImmutableSandboxedEnvironment` (no attribute access to
Python internals, no mutation of the variables) with `StrictUndefined` (a misspelt variable is an
error, not an empty string), `trim_blocks` and `lstrip_blocks` (a `{% ... %}` line leaves no blank
line). Every template problem becomes a one-line `UserError` naming the template, line and variable.

Variables: `input`, `labels`, `instruction`, `examples` (demonstrations: dicts with input, target,
meta), `meta` (the example's extra columns) and each meta field by its own name.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from jinja2 import BaseLoader, StrictUndefined, TemplateError, TemplateSyntaxError, UndefinedError, meta
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from tunewise.backends.context import fit_text, limit_for, name_of
from tunewise.data import Example, Task
from tunewise.errors import UserError
from tunewise.strategies.base import Prediction
from tunewise.strategies.prompting._common import answer_reserve, prompt_predictor, prompt_tokens, uses_scoring

TEMPLATE_SUFFIXES = (".j2", ".jinja", ".jinja2", ".tmpl", ".txt", ".md")
RESERVED = ("input", "labels", "instruction", "examples", "meta")

DEFAULT_SYSTEM = """{{ instruction }}
{% if labels %}
Answer with exactly one of: {{ labels | join(", ") }}.
{% endif %}
{% if examples %}

Examples:
{% for ex in examples %}

Input: {{ ex.input }}
Output: {{ ex.target }}
{% endfor %}
{% endif %}"""


def looks_like_path(value: str) -> bool:
    if "\n" in value or any(m in value for m in ("{{", "{%", "{#")):
        return False
    # os.path.isfile, not Path.is_file: it answers False (not an error) for over-long or NUL-holding text
    return value.strip().lower().endswith(TEMPLATE_SUFFIXES) or os.path.isfile(os.path.expanduser(value))


class _OneTemplate(BaseLoader):
    """Hands Jinja the source under our own file name, so error tracebacks carry the template's line."""

    def __init__(self, source: str, filename: str):
        self.source, self.filename = source, filename

    def get_source(self, environment, template):
        return self.source, self.filename, lambda: True


class PromptTemplate:
    """One compiled template; `render(variables)` returns stripped text or raises a one-line UserError."""

    def __init__(self, value: str, name: str):
        if looks_like_path(value):
            path = Path(value.strip()).expanduser()
            self.where = f"template file {path}"
            source = _read(path, name)
        else:
            self.where = f"inline template '{name}'"
            source = value
        self.filename = f"<tunewise {self.where}>"
        env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                                            loader=_OneTemplate(source, self.filename))
        try:
            self.template = env.get_template(name)
            self.variables = set(meta.find_undeclared_variables(env.parse(source)))
        except TemplateSyntaxError as err:
            raise UserError(f"{self.where} line {err.lineno}: {_one_line(err.message)}; fix the Jinja2 "
                            "syntax") from None

    def render(self, variables: dict[str, Any]) -> str:
        try:
            return self.template.render(variables).strip()
        except (TemplateError, ArithmeticError, TypeError, ValueError, LookupError) as err:
            problem = _describe(err, variables)
            raise UserError(f"{self.where} line {self._line(err)}: {problem}") from None

    def _line(self, err: BaseException) -> int | str:
        tb, line = err.__traceback__, "?"
        while tb is not None:  # jinja rewrites the traceback: template frames carry template lines
            if tb.tb_frame.f_code.co_filename == self.filename:
                line = tb.tb_lineno
            tb = tb.tb_next
        return line


def _describe(err: BaseException, variables: dict[str, Any]) -> str:
    text = _one_line(str(err))
    if isinstance(err, SecurityError):
        return f"refused: {text} (templates run in a sandbox; use only the variables)"
    if isinstance(err, UndefinedError) and text.endswith(" is undefined"):
        return f"undefined variable {text.removesuffix(' is undefined')} (variables: {', '.join(sorted(variables))})"
    if isinstance(err, UndefinedError):
        return text
    return f"{type(err).__name__}: {text}"


def _read(path: Path, name: str) -> str:
    if not path.is_file():
        raise UserError(f"template file {path} (for '{name}') not found; give an existing file (a relative "
                        "path starts at the config file's folder, else the current folder) or inline template text")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"template file {path}: not valid UTF-8; save it as UTF-8") from None


def _one_line(text: str) -> str:
    return " ".join(text.split())


def demo_dicts(demos: Sequence[Example]) -> list[dict[str, Any]]:
    return [{"input": d.input, "target": d.target, "meta": dict(d.meta)} for d in demos]


def example_variables(task: Task, example: Example, demos: list[dict[str, Any]]) -> dict[str, Any]:
    """The variables a template sees for one example (meta fields never shadow the reserved names)."""
    fields = {k: v for k, v in example.meta.items() if k not in RESERVED and isinstance(k, str)}
    return {**fields, "input": example.input, "labels": list(task.labels), "instruction": task.instruction,
            "examples": demos, "meta": dict(example.meta)}


def fit_rendered(backend, task: Task, example: Example, render: Callable[[str], tuple[str, str]],
                 max_new_tokens: int, scoring: bool | None = None) -> tuple[tuple[str, str], dict | None]:
    """render(input) -> (system, user), with the example's input cut by `task.long_inputs` so that the
    prompt and its answer slot fit the model (measured as `predict_rendered` or `generate` will run it);
    and the trace step of the cut, or None. `scoring` None: as `prompt_predictor` decides."""
    scoring = uses_scoring(backend, task) if scoring is None else scoring
    reserve = answer_reserve(backend, task, max_new_tokens) if scoring else max_new_tokens

    def measure(text: str) -> int:
        system, user = render(text)
        shared = [{"role": "system", "content": system}] if system else []
        return prompt_tokens(backend, shared, [{"role": "user", "content": user}], scoring)

    limit = limit_for(backend.context_window, task, reserve)
    text, cut = fit_text(backend, limit, name_of(example), example.input, measure)
    return render(text), cut


def predict_rendered(backend, task: Task, prompts: Sequence[tuple[str, str]], batch_size: int = 16,
                     max_new_tokens: int = 64, on_batch: Callable[[int], None] | None = None,
                     structured=None) -> list[Prediction]:
    """Predict from rendered (system, user) pairs with `prompt_predictor` (label scoring or generation).

    Examples are grouped by their system message, so a system template that does not depend on the
    example keeps one shared prefix (and one KV cache) for the whole batch. `structured`: generate under
    its JSON schema (`_structured.Structured`).
    """
    groups: dict[str, list[int]] = {}
    for i, (system, _) in enumerate(prompts):
        groups.setdefault(system, []).append(i)
    out: list[Prediction | None] = [None] * len(prompts)
    for system, idx in groups.items():
        shared = [{"role": "system", "content": system}] if system else []
        predictor = prompt_predictor(backend, task, shared, batch_size=batch_size, max_new_tokens=max_new_tokens,
                                     structured=structured)
        stand_ins = [Example(id=str(i), input=prompts[i][1], target="") for i in idx]
        for i, pred in zip(idx, predictor.predict(stand_ins, on_batch=on_batch), strict=True):
            out[i] = pred
    return out  # type: ignore[return-value]
