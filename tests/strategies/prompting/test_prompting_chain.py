"""The `chain` strategy: config checks, step outputs feeding later steps, traces and token sums."""

from __future__ import annotations

import pytest

from conftest import keyword_task
from tunewise.backends import load_backend
from tunewise.config import parse_config
from tunewise.data import Example, Task
from tunewise.errors import UserError
from tunewise.registry import strategies, strategy_config
from tunewise.strategies.base import FitContext

STEPS = [
    {"name": "facts", "template": "Key facts of: {{ input }}", "max_tokens": 8},
    {"name": "label", "kind": "answer", "system": "{{ instruction }} Answer with exactly one of: "
     "{{ labels | join(', ') }}.", "template": "{{ input }}\nFacts: {{ facts }}"},
]


def fit(config: dict, backend, task: Task, tmp_path):
    strategy = strategies()["chain"](strategy_config({"name": "chain", **config}))
    return strategy.fit(backend, task, FitContext(tmp_path, 0))


@pytest.mark.parametrize("steps, expected", [
    ([{"name": "a", "template": "{{ input }}"}], "steps[0].kind: the last step decides the prediction"),
    ([{"name": "a", "kind": "answer", "template": "x"}, {"name": "b", "kind": "answer", "template": "y"}],
     "steps[0].kind: only the last step can be 'answer'"),
    ([{"name": "a", "template": "x"}, {"name": "a", "kind": "answer", "template": "y"}],
     "steps[1].name: 'a' is used by an earlier step"),
    ([{"name": "input", "kind": "answer", "template": "x"}], "steps[0].name: 'input' is a template variable"),
    ([{"name": "two words", "kind": "answer", "template": "x"}], "String should match pattern"),
    ([{"name": "a", "kind": "answer", "template": "x", "max_tokns": 3}], "max_tokns"),
])
def test_bad_steps_are_one_line_config_errors(steps, expected):
    with pytest.raises(UserError) as info:
        parse_config({"strategies": [{"name": "chain", "steps": steps}]}, "exp.yaml")
    message = str(info.value)
    assert message.startswith("exp.yaml: strategies[0]")
    assert expected in message
    assert "\n" not in message


def test_step_using_a_later_step_fails_at_fit(tmp_path):
    steps = [{"name": "first", "template": "{{ input }} {{ second }}"},
             {"name": "second", "kind": "answer", "template": "{{ first }}"}]
    with pytest.raises(UserError, match="inline template 'first.template': uses 'second', the output of this "
                                        r"or a later step; a step can use only earlier steps \(none here\)"):
        fit({"steps": steps}, load_backend("fake", "causal"), keyword_task(), tmp_path)


def test_misspelt_variable_names_step_line_and_variable(tmp_path):
    steps = [STEPS[0], {**STEPS[1], "template": "{{ input }}\n{{ fact }}"}]
    with pytest.raises(UserError, match=r"inline template 'label.template' line 2: undefined variable 'fact' "
                                        r"\(variables: examples, facts, input"):
        fit({"steps": steps}, load_backend("fake", "causal"), keyword_task(), tmp_path)


@pytest.mark.parametrize("backend_name", ["fake", "fake-nologprobs"])
def test_chain_on_fake_backend_traces_every_step(backend_name, tmp_path):
    task = keyword_task()
    fake = load_backend(backend_name, "causal")
    preds = fit({"steps": STEPS}, fake, task, tmp_path).predict(task.test)
    assert [p.output for p in preds] == [e.target for e in task.test]
    for p, e in zip(preds, task.test, strict=True):
        facts, label = p.trace
        assert facts["step"] == "facts" and facts["input"] == f"Key facts of: {e.input}"
        assert facts["output"] == "unknown"  # the fake's answer to a prompt with no label list or number
        assert label["step"] == "label" and label["input"] == f"{e.input}\nFacts: unknown"
        assert label["system"].startswith("Route it. Answer with exactly one of: delivery, refund.")
        assert label["output"] == p.output
        assert p.prompt_tokens == facts["tokens"]["prompt"] + label["tokens"]["prompt"] > 0
        assert p.completion_tokens == facts["tokens"]["completion"] + label["tokens"]["completion"]
    if backend_name == "fake":
        assert all(p.scores[p.output] > 0.5 for p in preds)


def test_three_steps_see_every_earlier_output(tmp_path):
    steps = [{"name": "a", "template": "Total 41 {{ input }}", "max_tokens": 4},
             {"name": "b", "template": "Got {{ a }}; add 1: 42"},
             {"name": "final", "kind": "answer", "template": "{{ a }} | {{ b }} | {{ input }}"}]
    ex = [Example(id="1", input="sum it", target="42")]
    task = Task(name="g", kind="generation", train=ex, validation=[], test=ex, instruction="Add.")
    pred = fit({"steps": steps}, load_backend("fake-nologprobs", "causal"), task, tmp_path).predict(ex)[0]
    assert [s["output"] for s in pred.trace] == ["The answer is 41", "The answer is 42", "The answer is 42"]
    assert pred.trace[2]["input"] == "The answer is 41 | The answer is 42 | sum it"
    assert pred.output == "The answer is 42"


def test_chain_on_tiny_model(tiny_causal, small_task, tmp_path):
    backend = load_backend(tiny_causal, "causal", "cpu")
    steps = [{**STEPS[0], "max_tokens": 4}, STEPS[1]]
    ctx = FitContext(tmp_path, 0)
    strategy = strategies()["chain"](strategy_config({"name": "chain", "steps": steps, "k": 2}))
    preds = strategy.fit(backend, small_task, ctx).predict(small_task.test[:3])
    assert ctx.stats["steps"] == ["facts", "label"] and len(ctx.stats["demonstrations"]) == 2
    assert all(p.output in small_task.labels for p in preds)
    assert all(abs(sum(p.scores.values()) - 1) < 1e-5 for p in preds)
    for p, e in zip(preds, small_task.test, strict=False):
        assert [s["step"] for s in p.trace] == ["facts", "label"]
        assert 0 < p.trace[0]["tokens"]["completion"] <= 4
        # the random tiny model may generate only whitespace, which the template's strip() removes
        assert p.trace[1]["input"] == f"{e.input}\nFacts: {p.trace[0]['output']}".strip()
