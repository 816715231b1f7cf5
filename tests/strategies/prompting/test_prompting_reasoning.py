"""chain-of-thought and self-consistency: answer extraction, voting, worked examples, and runs on the fake
backend, a stub with fixed reasoning paths, the tiny model and (slow) the embedded SmolLM2 on GSM8K."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tunewise.backends import load_backend
from tunewise.backends.fake import FakeBackend
from tunewise.data import Example, Task
from tunewise.errors import UserError
from tunewise.registry import strategies, strategy_config
from tunewise.strategies.base import FitContext
from tunewise.strategies.prompting._extract import (
    Extractor,
    extraction_failed,
    extraction_summary,
    extractor_for,
)
from tunewise.strategies.prompting.chain_of_thought import vote

LABELS = ["negative", "positive"]


@pytest.mark.parametrize("text, expected", [
    ("Answer: positive", "positive"),
    ("**Answer:** Negative.", "negative"),
    ("The answer is: NEGATIVE", "negative"),
    ("Let me see. The review praises it.\nFinal answer: positive", "positive"),
    ("To answer this we read it.\nAnswer: negative", "negative"),  # "to answer" is not a marker
    ("Answer: positive\nHmm, wait.\nFinal Answer: negative", "negative"),  # "final answer" wins
    ("Answer:\n\n  positive", "positive"),
    ("It sounds happy overall.\nSo it is positive.", "positive"),  # no marker: the last line
    ("Answer: negative, not positive", "negative"),  # first named
    ("$\\boxed{positive}$", "positive"),
    ("Answer: neither", None),
    ("I cannot tell.", None),
    ("", None),
])
def test_label_extraction(text, expected):
    assert Extractor("label", LABELS)(text) == expected


def test_label_extraction_prefers_longer_labels_and_reads_label_words():
    labels = ["billing", "billing issue", "order_status", "order_cancel"]
    extract = Extractor("label", labels)
    assert extract("Answer: this is a billing issue") == "billing issue"
    assert extract("Answer: Order Status") == "order_status"
    assert extract("Answer: the status of it") == "order_status"  # the only label with a word present
    assert extract("Answer: order") is None  # two labels share the word: ambiguous, counted as a failure


@pytest.mark.parametrize("text, expected", [
    ("She has 16 - 3 - 4 = 9 eggs. 9 * 2 = 18\n#### 18", "18"),
    ("The answer is $1,234.50.", "1234.5"),
    ("Answer: 18 eggs", "18"),
    ("3 apples and 4 pears make 7 fruits", "7"),  # no marker: the last number of the text
    ("x = 5.0", "5"),
    ("Answer: 12.\nThen another question: 99", "12"),
    ("3 apples. Answer: forty", None),  # the answer line has no number
    ("no numbers at all", None),
])
def test_number_extraction(text, expected):
    assert Extractor("number")(text) == expected


def test_text_extraction_and_answer_kind():
    assert Extractor("text")("Capital cities...\nAnswer: Paris.") == "Paris"
    assert Extractor("text")("Paris") == "Paris"
    maths = Task("m", "generation", [Example("1", "q", "18")], [], [], "Solve.")
    words = Task("w", "generation", [Example("1", "q", "Paris")], [], [], "Answer.")
    assert extractor_for(maths).kind == "number"
    assert extractor_for(words).kind == "text"
    assert extractor_for(words, "number").kind == "number"


def test_vote_majority_ties_and_failures():
    assert vote(["18", "7", "18", None]) == ("18", {"18": 2, "7": 1})
    assert vote(["7", "18", "18", "7"])[0] == "7"  # tie: the first seen
    assert vote([None, None, "3"]) == ("3", {"3": 1})  # failures do not vote
    assert vote([None, None]) == (None, {})
    key = Extractor("text").vote_key
    assert vote(["Paris", "paris ", "Rome"], key)[0] == "Paris"


def test_extraction_summary_counts_failed_predictions():
    traces = [[{"raw": "x", "extracted": "", "failed": True}], [{"raw": "y", "extracted": "1", "failed": False}],
              None, [{"step": "demonstrations", "ids": ["1"]}]]
    assert extraction_summary(traces) == {"extraction_failures": {"count": 1, "rate": 0.5, "n": 2}}
    assert extraction_summary([None, [{"raw": "x"}]]) == {}


def _keyword_task() -> Task:
    texts = [("where is my delivery", "delivery"), ("i want a refund please", "refund"),
             ("delivery is late again", "delivery"), ("refund my money", "refund")]
    ex = [Example(id=str(i), input=t, target=y) for i, (t, y) in enumerate(texts)]
    return Task(name="kw", kind="classification", train=ex, validation=[], test=ex, instruction="Route it.",
                labels=["delivery", "refund"])


def _maths_task() -> Task:
    rows = [("Tom has 3 apples and gets 4 more. How many?", "7", "3 + 4 = <<3+4=7>>7 apples."),
            ("A box holds 12 eggs. How many in 2 boxes?", "24", "2 * 12 = <<2*12=24>>24 eggs."),
            ("Sue reads 5 pages a day for 6 days. How many pages?", "30", "5 * 6 = 30 pages.")]
    ex = [Example(id=str(i), input=q, target=a, meta={"rationale": r}) for i, (q, a, r) in enumerate(rows)]
    return Task(name="maths", kind="generation", train=ex, validation=[], test=ex, instruction="Solve it.")


def _fit(name: str, backend, task: Task, tmp_path, **options):
    ctx = FitContext(tmp_path, 0)
    predictor = strategies()[name](strategy_config({"name": name, **options})).fit(backend, task, ctx)
    return predictor, ctx


@pytest.mark.parametrize("backend_name", ["fake", "fake-nologprobs"])
@pytest.mark.parametrize("name", ["chain-of-thought", "self-consistency"])
def test_reasoning_on_fake_backend(name, backend_name, tmp_path):
    task = _keyword_task()
    predictor, _ = _fit(name, load_backend(backend_name, "causal"), task, tmp_path)
    preds = predictor.predict(task.test)
    assert [p.output for p in preds] == [e.target for e in task.test]
    assert all(p.prompt_tokens > 0 and p.completion_tokens > 0 for p in preds)
    assert all(extraction_failed(p.trace) is False for p in preds)
    if name == "self-consistency":  # five identical fake paths: a unanimous vote, vote shares as scores
        assert preds[0].trace[-1]["votes"] == {"delivery": 5}
        assert preds[0].scores == {"delivery": 1.0, "refund": 0.0}
        assert preds[0].completion_tokens == 5  # the fake counts one token for "delivery", per path


def test_chain_of_thought_on_a_maths_task_reads_numbers(tmp_path):
    task = _maths_task()
    predictor, ctx = _fit("chain-of-thought", load_backend("fake", "causal"), task, tmp_path)
    assert ctx.stats["answer_kind"] == "number"
    preds = predictor.predict(task.test)
    assert [p.output for p in preds] == ["4", "2", "6"]  # the fake echoes the last number of the question
    assert preds[0].trace[0]["raw"] == "The answer is 4"


class FixedPaths(FakeBackend):
    """Returns the same reasoning paths for every prompt and remembers how it was asked."""

    def __init__(self, paths: list[str]):
        super().__init__("fake")
        self.paths, self.calls, self.prompts = paths, [], []

    def sample(self, prompts, n=1, temperature=0.0, max_new_tokens=64, stop=(), batch_size=8, on_batch=None,
               top_p=1.0):
        self.calls.append({"n": n, "temperature": temperature, "top_p": top_p, "max_new_tokens": max_new_tokens})
        self.prompts += list(prompts)
        return [[(self.paths[i % len(self.paths)], 10 + i) for i in range(n)] for _ in prompts]


def test_self_consistency_votes_over_paths(tmp_path):
    paths = ["so 3 + 4 = 7.\nAnswer: 7", "I get 8. Answer: 8", "Answer: 7.0", "no idea", "Answer: 8"]
    backend = FixedPaths(paths)
    task = _maths_task()
    predictor, ctx = _fit("self-consistency", backend, task, tmp_path, n=5, temperature=0.9, top_p=0.95)
    preds = predictor.predict(task.test[:1])
    assert backend.calls == [{"n": 5, "temperature": 0.9, "top_p": 0.95, "max_new_tokens": 256}]
    p = preds[0]
    assert p.output == "7"  # 7 and 7.0 vote together (2), 8 has 2 too: the tie goes to 7, seen first
    assert p.trace[-1] == {"step": "vote", "votes": {"7": 2, "8": 2}, "extracted": "7", "failed": False,
                           "paths_failed": 1}
    assert [s["extracted"] for s in p.trace[:-1]] == ["7", "8", "7", "", "8"]
    assert p.trace[3]["failed"] is True
    assert p.completion_tokens == sum(10 + i for i in range(5))
    assert p.prompt_tokens == 5 * backend.count_tokens(backend.prompts[0])
    assert ctx.stats["paths"] == 5


def test_failed_extraction_is_empty_output_not_a_crash(tmp_path):
    task = _keyword_task()
    backend = FixedPaths(["I really cannot decide."])
    preds = _fit("chain-of-thought", backend, task, tmp_path)[0].predict(task.test)
    assert all(p.output == "" and p.trace[0]["failed"] and p.trace[0]["raw"] for p in preds)
    assert extraction_summary(p.trace for p in preds)["extraction_failures"]["rate"] == 1.0
    sc = _fit("self-consistency", FixedPaths(["unsure", "Answer: refund"]), task, tmp_path, n=2)[0]
    p = sc.predict(task.test[:1])[0]
    assert p.output == "refund" and p.trace[-1]["paths_failed"] == 1
    assert p.scores == {"delivery": 0.0, "refund": 1.0}


def test_zero_shot_prompt_opens_with_the_trigger(tmp_path):
    backend = FixedPaths(["Answer: refund"])
    task = _keyword_task()
    _fit("chain-of-thought", backend, task, tmp_path, trigger="Think first.")[0].predict(task.test[:1])
    prompt = backend.prompts[0]
    assert prompt.endswith("<assistant>Think first.")
    assert "one of: delivery, refund." in prompt and "Answer: <answer>" in prompt


def test_few_shot_worked_examples_from_the_data(tmp_path):
    backend = FixedPaths(["Answer: 1"])
    task = _maths_task()
    predictor, ctx = _fit("chain-of-thought", backend, task, tmp_path, mode="few-shot", k=2)
    predictor.predict(task.test[:1])
    assert len(ctx.stats["demonstrations"]) == 2
    prompt = backend.prompts[0]
    assert prompt.count("<assistant>Let's think step by step.") == 3  # two worked examples and the query
    assert "<<" not in prompt  # calculator annotations are dropped
    assert "\nAnswer: " in prompt


def test_few_shot_worked_examples_from_the_config(tmp_path):
    backend = FixedPaths(["Answer: refund"])
    task = _keyword_task()
    rationales = [{"input": "parcel missing", "rationale": "It is about a parcel.", "answer": "delivery"}]
    predictor, ctx = _fit("chain-of-thought", backend, task, tmp_path, mode="few-shot", rationales=rationales)
    predictor.predict(task.test[:1])
    assert ctx.stats["demonstrations"] == ["rationales[0]"]
    assert "<user>parcel missing</user><assistant>Let's think step by step. It is about a parcel.\nAnswer: delivery" \
        in backend.prompts[0]


def test_few_shot_mode_errors_are_one_line(tmp_path):
    fake = load_backend("fake", "causal")
    with pytest.raises(UserError, match="rationale") as info:
        _fit("chain-of-thought", fake, _keyword_task(), tmp_path, mode="few-shot")
    assert "\n" not in str(info.value)
    bad = [{"input": "x", "rationale": "y", "answer": "maybe"}]
    with pytest.raises(UserError, match=r"rationales\[0\]\.answer"):
        _fit("chain-of-thought", fake, _keyword_task(), tmp_path, mode="few-shot", rationales=bad)


def test_config_validation():
    with pytest.raises(ValidationError, match="temperature"):
        strategy_config({"name": "self-consistency", "n": 3, "temperature": 0})
    with pytest.raises(ValidationError):
        strategy_config({"name": "self-consistency", "n": 0})
    assert strategy_config({"name": "self-consistency", "n": 1, "temperature": 0}).n == 1
    with pytest.raises(ValidationError, match="few-shot"):
        strategy_config({"name": "chain-of-thought", "rationales": [{"input": "a", "rationale": "b", "answer": "c"}]})


@pytest.fixture(scope="module")
def tiny(tiny_causal):
    return load_backend(tiny_causal, "causal", "cpu")


@pytest.mark.parametrize("name, options", [("chain-of-thought", {}), ("self-consistency", {"n": 2})])
def test_reasoning_on_tiny_model(name, options, tiny, small_task, tmp_path):
    predictor, _ = _fit(name, tiny, small_task, tmp_path, max_new_tokens=8, **options)
    preds = predictor.predict(small_task.test[:3])
    assert len(preds) == 3
    for p in preds:
        failed = extraction_failed(p.trace)
        assert failed is not None
        assert (p.output == "") if failed else (p.output in small_task.labels)
        assert p.prompt_tokens > 0 and 0 < p.completion_tokens <= 8 * options.get("n", 1)


@pytest.mark.slow
def test_chain_of_thought_on_smollm2_gsm8k(tmp_path):
    from tunewise.config import TaskConfig
    from tunewise.data import load_task

    task = load_task(TaskConfig(source="gsm8k", max_test_examples=3), seed=0)
    backend = load_backend("smollm2-135m-instruct", "causal", "cpu")
    predictor, ctx = _fit("chain-of-thought", backend, task, tmp_path, max_new_tokens=96)
    assert ctx.stats["answer_kind"] == "number"
    preds = predictor.predict(task.test[:3])
    read = [p for p in preds if not p.trace[0]["failed"]]
    assert read, [p.trace[0]["raw"] for p in preds]
    for p in read:
        float(p.output)  # a number, whatever its accuracy
