"""prompt_format: plain lays the prompt out as completion text (as lm-evaluation-harness does) and scores
' label\\n' after 'Answer:' (or the task's own field names: 'Review:' / 'Sentiment:'); chat keeps the chat
template; plain is refused on API models."""

from __future__ import annotations

import dataclasses

import pytest

from tunewise.backends.fake import FakeBackend
from tunewise.data import Example, Task
from tunewise.errors import UserError
from tunewise.registry import strategies, strategy_config
from tunewise.strategies.base import FitContext


class Scored(FakeBackend):
    def __init__(self, local: bool = True):
        super().__init__("fake")
        self.capabilities = dataclasses.replace(self.capabilities, local_weights=local)
        self.calls: list[tuple[str, list[str], list[str]]] = []

    def score(self, prefix, suffixes, continuations, batch_size=16, on_batch=None):
        self.calls.append((prefix, list(suffixes), list(continuations)))
        return super().score(prefix, suffixes, continuations, batch_size, on_batch)


def _task(**fields) -> Task:
    ex = [Example("a", "positive vibes", "positive"), Example("b", "negative mood", "negative")]
    return Task(name="s", kind="classification", train=ex, validation=[], test=ex,
                instruction="Classify the review.", labels=["negative", "positive"], **fields)


def _fit(backend, tmp_path, name="zero-shot", task=None, **options):
    strategy = strategies()[name](strategy_config({"name": name, **options}))
    return strategy.fit(backend, task or _task(), FitContext(tmp_path, 0))


def test_plain_prompts_read_like_lm_eval_and_score_the_label_after_the_cue(tmp_path):
    backend = Scored()
    preds = _fit(backend, tmp_path, prompt_format="plain", calibrate=False).predict(_task().test)
    prefix, suffixes, continuations = backend.calls[-1]
    assert prefix == "Classify the review.\n\n"  # labels listed nowhere: scoring ranks only them
    assert suffixes == ["Input: positive vibes\nAnswer:", "Input: negative mood\nAnswer:"]
    assert continuations == [" negative", " positive"]  # the label alone: neither label's tokens begin the other
    assert len(preds) == 2 and all(set(p.scores) == {"negative", "positive"} for p in preds)


def test_plain_few_shot_demonstrations_answer_after_the_same_cue(tmp_path):
    backend = Scored()
    _fit(backend, tmp_path, "few-shot", k=2, prompt_format="plain").predict(_task().test[:1])
    prefix = backend.calls[-1][0]
    assert "Input: positive vibes\nAnswer: positive\n\n" in prefix
    assert "<user>" not in prefix


def test_the_tasks_field_names_replace_input_and_answer_in_plain_prompts_and_demonstrations(tmp_path):
    backend = Scored()
    task = _task(input_name="Review", target_name="Sentiment")
    _fit(backend, tmp_path, "few-shot", task=task, k=1, prompt_format="plain", calibrate=False).predict(task.test)
    prefix, suffixes, _ = backend.calls[-1]
    assert "Review: " in prefix and "\nSentiment: " in prefix and "Input:" not in prefix
    assert suffixes == ["Review: positive vibes\nSentiment:", "Review: negative mood\nSentiment:"]


def test_chat_keeps_the_chat_template_and_plain_is_refused_without_local_weights(tmp_path):
    backend = Scored(local=False)
    _fit(backend, tmp_path, prompt_format="chat", calibrate=False).predict(_task().test[:1])
    assert backend.calls[-1][1][0].startswith("<user>positive vibes</user>")
    with pytest.raises(UserError, match=r"strategies\.zero-shot\.prompt_format: plain needs a local model"):
        _fit(backend, tmp_path, prompt_format="plain")


def test_the_end_of_the_answer_is_scored_only_where_one_labels_tokens_begin_anothers():
    from tunewise.strategies.prompting._common import label_slot, scored_answers

    local, api = Scored(), Scored(local=False)
    assert scored_answers(local, ["World", "Sci Tech"]) == ["World", "Sci Tech"]
    # "Sci" is the first token of "Sci Tech": without the end, P(Sci) >= P(Sci Tech) always, so it is kept
    assert scored_answers(local, ["Sci", "Sci Tech"]) == ["Sci</assistant>", "Sci Tech</assistant>"]
    assert scored_answers(api, ["World", "Sci Tech"]) == ["World</assistant>", "Sci Tech</assistant>"]
    assert label_slot(local, ["World", "Sci Tech"]) == 2 and label_slot(local, ["Sci", "Sci Tech"]) == 2
