"""Label names reach every prompt: strategies fitted through `fit_or_load` see `task.named()`, so a recorded
prompt shows each label's name and never its stored code, and the predictor answers in the stored codes."""

from __future__ import annotations

import re

import pytest

from conftest import keyword_task
from tunewise.backends import load_backend
from tunewise.backends.fake import FakeBackend
from tunewise.data import Task
from tunewise.registry import strategies, strategy_config
from tunewise.strategies.base import FitContext, fit_or_load
from tunewise.strategies.finetuning import _causal

NAMES = {"7": "delivery", "9": "refund"}  # the fake answers by word overlap, and the names are words of the input
CODE = re.compile(r"(?<!\w)[79](?!\w)")
CHAIN = [{"name": "facts", "template": "Key facts of: {{ input }}", "max_tokens": 8},
         {"name": "label", "kind": "answer", "system": "{{ instruction }} Answer with exactly one of: "
          "{{ labels | join(', ') }}.", "template": "{{ input }}\nFacts: {{ facts }}"}]
TEMPLATE = "{{ instruction }}\n{% for ex in examples %}{{ ex.input }} -> {{ ex.target }}\n{% endfor %}" \
           "Answer with exactly one of: {{ labels | join(', ') }}.\n{{ input }} ->"


def coded_task() -> Task:
    """keyword_task with its labels stored as the codes 7 and 9, named delivery and refund."""
    named = keyword_task()
    code = {v: k for k, v in NAMES.items()}
    task = keyword_task()
    for split in ("train", "test"):
        setattr(task, split, [type(e)(e.id, e.input, code[e.target], e.meta) for e in getattr(named, split)])
    task.labels, task.label_names = ["7", "9"], dict(NAMES)
    return task


class Recording(FakeBackend):
    """The fake backend, keeping every text it is asked to render, score or generate from."""

    def __init__(self, name: str = "fake"):
        super().__init__(name)
        self.seen: list[str] = []

    def render(self, messages, add_generation_prompt: bool) -> str:
        self.seen += [str(m["content"]) for m in messages]
        return super().render(messages, add_generation_prompt)

    def score(self, prefix, suffixes, continuations, *args, **kwargs):
        self.seen += [prefix, *suffixes, *continuations]
        return super().score(prefix, suffixes, continuations, *args, **kwargs)

    def generate(self, prompts, *args, **kwargs):
        self.seen += list(prompts)
        return super().generate(prompts, *args, **kwargs)


@pytest.mark.parametrize("backend_name", ["fake", "fake-nologprobs"])
@pytest.mark.parametrize("entry", [
    {"name": "zero-shot"}, {"name": "few-shot", "k": 2}, {"name": "chain-of-thought"},
    {"name": "template", "system": TEMPLATE, "k": 2}, {"name": "chain", "steps": CHAIN},
], ids=lambda e: e["name"])
def test_prompts_show_names_and_answers_come_back_as_codes(entry, backend_name, tmp_path):
    task, backend = coded_task(), Recording(backend_name)
    predictor, _ = fit_or_load(strategies()[entry["name"]](strategy_config(entry)), backend, task,
                               FitContext(tmp_path, 0))
    preds = predictor.predict(task.test)
    text = "\n".join(backend.seen)
    assert "delivery" in text and "refund" in text
    assert not CODE.search(text), CODE.search(text)
    assert [p.output for p in preds] == [e.target for e in task.test]  # named answers mapped back to codes
    assert all(set(p.scores) == {"7", "9"} for p in preds if p.scores)


def test_an_agent_strategy_shows_names(tmp_path):
    pytest.importorskip("autogen_agentchat")
    task, backend = coded_task(), Recording()
    predictor, _ = fit_or_load(strategies()["reflect"](strategy_config("reflect")), backend, task,
                               FitContext(tmp_path, 0))
    preds = predictor.predict(task.test[:2])
    text = "\n".join(backend.seen)
    assert "delivery, refund" in text and not CODE.search(text)
    assert {p.output for p in preds} <= {"7", "9"}


def test_sft_learns_the_name_as_its_answer(tiny_causal, tmp_path, monkeypatch):
    backend = load_backend(tiny_causal, "causal", "cpu")
    answers: list[str] = []
    encode = _causal.encode_examples

    def recording(backend, task, examples, *args, **kwargs):
        rows = encode(backend, task, examples, *args, **kwargs)
        answers.extend(backend.tokenizer.decode([t for t in r["labels"] if t != _causal.IGNORE]) for r in rows)
        return rows

    monkeypatch.setattr(_causal, "encode_examples", recording)
    cfg = strategy_config({"name": "sft", "epochs": 1, "batch_size": 4, "early_stopping_patience": None,
                           "forgetting": False, "max_new_tokens": 2})
    predictor, _ = fit_or_load(strategies()["sft"](cfg), backend, coded_task(), FitContext(tmp_path, 0))
    assert answers and all(a.split("<")[0].strip() in ("delivery", "refund") for a in answers), answers
    assert {p.output for p in predictor.predict(coded_task().test)} <= {"7", "9"}
