"""The `template` strategy and the sandboxed Jinja2 templates it shares with `chain`."""

from __future__ import annotations

import pytest

from conftest import keyword_task
from tunewise.backends import load_backend
from tunewise.data import Example, Task
from tunewise.errors import UserError
from tunewise.registry import strategies, strategy_config
from tunewise.strategies.base import FitContext
from tunewise.strategies.prompting._templates import PromptTemplate, looks_like_path

VARS = {"input": "hello", "labels": ["a", "b"], "instruction": "Do it.", "examples": [], "meta": {}}


def fit(config: dict, backend, task: Task, tmp_path):
    strategy = strategies()["template"](strategy_config({"name": "template", **config}))
    return strategy.fit(backend, task, FitContext(tmp_path, 0))


@pytest.mark.parametrize("source", [
    "{{ ''.__class__.__mro__ }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ input.__class__.__base__.__subclasses__() }}",
    "{{ labels.append('x') }}",
    "{{ (examples|attr('__class__')) }}",
])
def test_sandbox_refuses_python_internals(source):
    with pytest.raises(UserError) as info:
        PromptTemplate(source, "user").render(VARS)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("inline template 'user' line 1: ")
    assert "sandbox" in message or "undefined" in message


def test_undefined_variable_names_template_line_and_variable():
    with pytest.raises(UserError) as info:
        PromptTemplate("Intro\n\nText: {{ input }} {{ chanel }}", "user").render(VARS)
    message = str(info.value)
    assert message.startswith("inline template 'user' line 3: undefined variable 'chanel'")
    assert "variables: examples, input, instruction, labels, meta" in message
    assert "\n" not in message


def test_file_template_errors_name_the_file(tmp_path):
    path = tmp_path / "user.j2"
    path.write_text("Message:\n{{ input }}\n{% for x in labels %}{{ x }} {{ y }}{% endfor %}\n", encoding="utf-8")
    assert looks_like_path(str(path))
    with pytest.raises(UserError, match=rf"template file {path} line 3: undefined variable 'y'"):
        PromptTemplate(str(path), "user").render(VARS)
    path.write_text("line one\n{% if input %}\nno end\n", encoding="utf-8")
    with pytest.raises(UserError, match=rf"template file {path} line \d+: .*fix the Jinja2 syntax"):
        PromptTemplate(str(path), "user")
    with pytest.raises(UserError, match="missing.j2 .*not found"):
        PromptTemplate(str(tmp_path / "missing.j2"), "user")


def test_inline_syntax_error_and_runtime_error():
    with pytest.raises(UserError, match=r"inline template 'system' line 2: .*fix the Jinja2 syntax"):
        PromptTemplate("ok\n{{ input | nosuchfilter }}", "system")
    with pytest.raises(UserError, match=r"line 1: ZeroDivisionError"):
        PromptTemplate("{{ 1 / 0 }}", "user").render(VARS)


def test_variables_meta_fields_and_examples(small_task, tmp_path):
    fake = load_backend("fake", "causal")
    predictor = fit({"k": 2, "system": "{{ instruction }} [{{ labels|join('|') }}]\n"
                     "{% for ex in examples %}{{ ex.input }} => {{ ex.target }}\n{% endfor %}",
                     "user": "({{ source }} / {{ meta.source }}) {{ input }}"}, fake, small_task, tmp_path)
    system, user = predictor.render(small_task.test[0])
    assert system.startswith("Is the review positive or negative? [negative|positive]\n")
    assert system.count(" => ") == 2
    assert user == f"(mem:18 / mem:18) {small_task.test[0].input}"


@pytest.mark.parametrize("backend_name", ["fake", "fake-nologprobs"])
def test_template_on_fake_backend(backend_name, tmp_path):
    task = keyword_task(meta=True)
    preds = fit({"user": "[{{ channel }}] {{ input }}"}, load_backend(backend_name, "causal"), task,
                tmp_path).predict(task.test)
    assert [p.output for p in preds] == [e.target for e in task.test]
    assert all(p.prompt_tokens > 0 for p in preds)
    assert preds[0].trace[0]["input"] == "[email] where is my delivery"
    assert "Answer with exactly one of: delivery, refund." in preds[0].trace[0]["system"]
    if backend_name == "fake":
        assert all(p.scores[p.output] > 0.5 for p in preds)


def test_system_template_per_example_and_no_system(tmp_path):
    task = keyword_task(meta=True)
    fake = load_backend("fake", "causal")
    per_example = fit({"system": "{{ instruction }} (about: {{ input[:5] }})"}, fake, task, tmp_path)
    assert [p.output for p in per_example.predict(task.test)] == [e.target for e in task.test]
    none = fit({"system": None, "user": "{{ input }}"}, fake, task, tmp_path)
    preds = none.predict(task.test)
    assert [p.output for p in preds] == [e.target for e in task.test]
    assert "system" not in preds[0].trace[0]


def test_generation_task_generates(tmp_path):
    ex = [Example(id=str(i), input=f"what is {i} plus {i}?", target=str(2 * i)) for i in range(4)]
    task = Task(name="sum", kind="generation", train=ex, validation=[], test=ex, instruction="Add.")
    preds = fit({"user": "Q: {{ input }} Answer: {{ input.split()[2] }}"}, load_backend("fake-nologprobs", "causal"),
                task, tmp_path).predict(task.test)
    assert [p.output for p in preds] == [f"The answer is {i}" for i in range(4)]
    assert all(p.completion_tokens > 0 and p.scores is None for p in preds)


def test_bad_template_fails_at_fit_not_at_scoring(tmp_path):
    with pytest.raises(UserError, match="inline template 'user' line 1: undefined variable 'text'"):
        fit({"user": "{{ text }}"}, load_backend("fake", "causal"), keyword_task(meta=True), tmp_path)
    with pytest.raises(UserError, match="rendered empty"):
        fit({"user": "{% if false %}{{ input }}{% endif %}"}, load_backend("fake", "causal"), keyword_task(meta=True),
            tmp_path)


def test_template_file_from_config(tmp_path):
    (tmp_path / "system.j2").write_text("{{ instruction }}\nAnswer with exactly one of: "
                                        "{{ labels | join(', ') }}.\n", encoding="utf-8")
    task = keyword_task(meta=True)
    predictor = fit({"system": str(tmp_path / "system.j2")}, load_backend("fake-nologprobs", "causal"), task,
                    tmp_path)
    assert [p.output for p in predictor.predict(task.test)] == [e.target for e in task.test]


def test_template_on_tiny_model(tiny_causal, small_task, tmp_path):
    backend = load_backend(tiny_causal, "causal", "cpu")
    predictor = fit({"k": 2, "user": "Review ({{ meta.source }}): {{ input }}"}, backend, small_task, tmp_path)
    preds = predictor.predict(small_task.test)
    assert all(p.output in small_task.labels for p in preds)
    assert all(abs(sum(p.scores.values()) - 1) < 1e-5 for p in preds)
    assert preds[0].trace[0]["input"].startswith("Review (mem:18): ")
    assert preds[0].prompt_tokens > 0
