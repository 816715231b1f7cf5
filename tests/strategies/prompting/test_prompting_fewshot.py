"""few-shot demonstration selection by similarity (kNN on embeddings) and contextual calibration of the
label-scoring predictors (zero-shot, few-shot)."""

from __future__ import annotations

import numpy as np
import pytest

from tunewise.backends import cache, load_backend
from tunewise.backends.fake import FakeBackend
from tunewise.data import Example, Task
from tunewise.errors import UserError
from tunewise.registry import strategies, strategy_config
from tunewise.strategies.base import FitContext
from tunewise.strategies.prompting._common import ScoringPredictor, calibrated
from tunewise.strategies.prompting.few_shot import NearestDemos

# Hand-made embeddings: each text's vector counts its topic words, so neighbours are known in advance.
TOPICS = {"parcel": 0, "delivery": 0, "courier": 0, "refund": 1, "money": 1, "charge": 1, "password": 2}


class StubEmbedder:
    def __init__(self):
        self.calls = 0

    def embed(self, texts):
        self.calls += 1
        out = np.full((len(texts), 3), 0.01)
        for i, text in enumerate(texts):
            for word in text.split():
                if word in TOPICS:
                    out[i, TOPICS[word]] += 1
        return out


def _task() -> Task:
    train = [("my parcel never came", "delivery"), ("courier lost the parcel", "delivery"),
             ("refund my money", "refund"), ("a double charge, refund it", "refund"),
             ("reset my password", "account"), ("password not accepted", "account")]
    test = [("courier lost my parcel, delivery late", "delivery"), ("give my money back, refund", "refund"),
            ("account password forgotten", "account")]
    tr = [Example(id=f"t{i}", input=x, target=y) for i, (x, y) in enumerate(train)]
    te = [Example(id=f"q{i}", input=x, target=y) for i, (x, y) in enumerate(test)]
    return Task(name="support", kind="classification", train=tr, validation=[], test=te, instruction="Route it.",
                labels=["account", "delivery", "refund"])


def test_nearest_demos_pick_the_most_similar_examples_nearest_last():
    task = _task()
    select = NearestDemos(task.train, 2, StubEmbedder())
    demos = select(task.test)
    assert [[d.id for d in ds] for ds in demos] == [["t0", "t1"], ["t3", "t2"], ["t5", "t4"]]
    # The most similar demonstration comes last, next to the query.
    assert demos[0][-1].id == "t1"  # the closest direction: two parcel-topic words, as the query
    # An example is never its own demonstration.
    assert all(d.id != "t2" for d in select([task.train[2]])[0])
    assert NearestDemos([], 2, StubEmbedder())(task.test) == [[], [], []]


class Spy(FakeBackend):
    """The fake backend reading only the query (the last user message), plus an optional constant bias
    towards the first label; it remembers every scoring call."""

    def __init__(self, name="fake", bias: float = 0.0):
        super().__init__(name)
        self.bias, self.score_calls = bias, []

    def score(self, prefix, suffixes, continuations, batch_size=16, on_batch=None):
        self.score_calls.append((prefix, list(suffixes)))
        queries = [s.rsplit("<user>", 1)[-1] for s in suffixes]
        out = super().score(prefix, queries, continuations, batch_size, on_batch)
        out[:, 0] += self.bias  # a constant preference for the first label, whatever the input
        return out


def _fit(name, backend, task, tmp_path, **options):
    ctx = FitContext(tmp_path, 0)
    return strategies()[name](strategy_config({"name": name, **options})).fit(backend, task, ctx), ctx


@pytest.fixture
def stub_embedder(monkeypatch):
    stub = StubEmbedder()
    # the embedder reaches the strategy through the backends of its FitContext (the run's cache)
    monkeypatch.setattr(cache, "load_backend", lambda name, kind, device: stub if kind == "encoder" else None)
    return stub


def test_similar_few_shot_is_one_batched_call_with_the_system_prompt_cached(stub_embedder, tmp_path):
    task, spy = _task(), Spy()
    predictor, ctx = _fit("few-shot", spy, task, tmp_path, k=2, selection="similar")
    preds = predictor.predict(task.test)
    assert [p.output for p in preds] == [e.target for e in task.test]
    assert len(spy.score_calls) == 1  # every example in one call (the backend batches it)
    prefix, suffixes = spy.score_calls[0]
    assert prefix.startswith("<system>") and "<user>" not in prefix  # shared system prompt, cached
    assert "<user>my parcel never came</user>" in suffixes[0] and "refund my money" not in suffixes[0]
    assert [p.trace for p in preds][0] == [{"step": "demonstrations", "ids": ["t0", "t1"]}]
    assert stub_embedder.calls == 2  # the training set once at fit, the test batch once
    assert "nearest" in ctx.stats["demonstrations"]


def test_similar_few_shot_without_logprobs_generates_per_example(stub_embedder, tmp_path):
    task = _task()
    predictor, _ = _fit("few-shot", load_backend("fake-nologprobs", "causal"), task, tmp_path, k=1,
                        selection="similar")
    preds = predictor.predict(task.test)
    assert [p.output for p in preds] == [e.target for e in task.test]
    assert preds[1].trace == [{"step": "demonstrations", "ids": ["t2"]}]


@pytest.fixture(scope="module")
def tiny(tiny_causal):
    return load_backend(tiny_causal, "causal", "cpu")


def test_similar_few_shot_on_tiny_models_matches_fixed_prompts(tiny, tiny_encoder, small_task, tmp_path):
    predictor, _ = _fit("few-shot", tiny, small_task, tmp_path, k=3, selection="similar", embedder=tiny_encoder)
    test = small_task.test
    preds = predictor.predict(test)
    assert all(abs(sum(p.scores.values()) - 1) < 1e-5 and p.prompt_tokens > 0 for p in preds)
    # Scoring each example alone with its own demonstrations as a fixed (cached) prefix gives the same
    # probabilities as the batched per-example path.
    chosen = predictor.demos_for(test)
    for example, demos, p in zip(test, chosen, preds, strict=True):
        assert p.trace[0]["ids"] == [d.id for d in demos]
        shared = predictor.shared + [m for d in demos for m in (
            {"role": "user", "content": d.input}, {"role": "assistant", "content": d.target})]
        alone = ScoringPredictor(tiny, small_task, shared).predict([example])[0]
        for label in small_task.labels:
            assert p.scores[label] == pytest.approx(alone.scores[label], abs=1e-4)


def test_calibrated_divides_out_the_content_free_distribution():
    logp = np.log(np.array([0.6, 0.3, 0.1]))
    q = calibrated(logp, np.array([0.6, 0.3, 0.1]))
    np.testing.assert_allclose(q, [1 / 3] * 3)
    q = calibrated(np.log(np.array([0.5, 0.5])), np.array([0.8, 0.2]))
    np.testing.assert_allclose(q, [0.2, 0.8])


@pytest.mark.parametrize("name, options", [("zero-shot", {}), ("few-shot", {"k": 2}),
                                           ("few-shot", {"k": 2, "selection": "similar"})])
def test_calibration_removes_a_constant_label_bias(name, options, stub_embedder, tmp_path):
    task = _task()
    biased = Spy(bias=12.0)  # "account" wins every input by a wide margin
    plain = _fit(name, biased, task, tmp_path, calibrate=False, **options)[0].predict(task.test)
    assert {p.output for p in plain} == {"account"}
    predictor, ctx = _fit(name, biased, task, tmp_path, calibrate=True, **options)
    preds = predictor.predict(task.test)
    assert [p.output for p in preds] == [e.target for e in task.test]  # the content decides again
    assert all(abs(sum(p.scores.values()) - 1) < 1e-9 for p in preds)
    if options.get("selection") == "similar":  # measured per example, and paid for per example
        uncalibrated = _fit(name, Spy(), task, tmp_path, calibrate=False, **options)[0].predict(task.test)
        assert all(p.prompt_tokens > u.prompt_tokens for p, u in zip(preds, uncalibrated, strict=True))
    else:  # measured once, at fit
        assert ctx.stats["calibration"]["account"] > 0.99


def test_calibration_needs_label_scoring(tmp_path):
    task = _task()
    with pytest.raises(UserError, match="calibrate") as info:
        _fit("zero-shot", load_backend("fake-nologprobs", "causal"), task, tmp_path, calibrate=True)
    assert "\n" not in str(info.value)
    maths = Task("m", "generation", [Example("1", "q", "1")], [], [Example("2", "q", "2")], "Solve.")
    with pytest.raises(UserError, match="generation"):
        _fit("few-shot", load_backend("fake", "causal"), maths, tmp_path, calibrate=True)


def test_zero_shot_calibrates_by_default_only_where_labels_are_scored(tmp_path):
    task = _task()
    _, scored = _fit("zero-shot", load_backend("fake", "causal"), task, tmp_path)
    assert set(scored.stats["calibration"]) == set(task.labels)
    _, generated = _fit("zero-shot", load_backend("fake-nologprobs", "causal"), task, tmp_path)
    assert "calibration" not in generated.stats  # auto: off without log-probabilities, and no error
    maths = Task("m", "generation", [Example("1", "q", "1")], [], [Example("2", "q", "2")], "Solve.")
    _fit("zero-shot", load_backend("fake", "causal"), maths, tmp_path)


def test_calibration_on_the_tiny_model(tiny, small_task, tmp_path):
    predictor, ctx = _fit("few-shot", tiny, small_task, tmp_path, k=4, calibrate=True)
    p_cf = np.array([ctx.stats["calibration"][label] for label in small_task.labels])
    assert p_cf.sum() == pytest.approx(1.0)
    raw = _fit("few-shot", tiny, small_task, tmp_path, k=4)[0].predict(small_task.test)
    preds = predictor.predict(small_task.test)
    for p, r in zip(preds, raw, strict=True):
        expected = calibrated(np.log([r.scores[label] for label in small_task.labels]), p_cf)
        np.testing.assert_allclose([p.scores[label] for label in small_task.labels], expected, atol=1e-6)
        assert p.prompt_tokens == r.prompt_tokens  # a fixed prompt's calibration is a one-off cost
