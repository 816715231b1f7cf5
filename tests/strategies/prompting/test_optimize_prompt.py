"""The `optimize-prompt` strategy: it never reads a test example, keeps the best instruction on
validation (never worse than the original), cleans proposals, and fits on the fake and tiny models."""

from __future__ import annotations

import numpy as np
import pytest

from tunewise.backends import load_backend
from tunewise.backends.fake import FakeBackend
from tunewise.data import Example, Task
from tunewise.registry import strategies, strategy_config
from tunewise.strategies.base import FitContext
from tunewise.strategies.prompting.optimize_prompt import clean_instruction, without_test

GOOD = "Route every MAGIC message by the service it mentions, delivery or refund."


def keyword_task(validation: bool = True) -> Task:
    words = {"delivery": ["delivery", "parcel late", "delivery status"], "refund": ["refund", "money back"]}
    ex = [Example(id=f"{y}{i}", input=f"customer {i}: {w} please", target=y)
          for y, ws in words.items() for i, w in enumerate(ws * 4)]
    test = [Example(id=f"t{i}", input=f"SECRET-TEST-{i} where is my delivery", target="delivery")
            for i in range(4)]
    val = ex[::4] if validation else []
    train = [e for e in ex if e not in val]
    return Task(name="kw", kind="classification", train=train, validation=val, test=test,
                instruction="Route it.", labels=["delivery", "refund"])


class Recorder:
    """Wraps a backend and records every string it is asked to render, score, generate or count."""

    def __init__(self, inner):
        self.inner, self.seen = inner, []

    def __getattr__(self, name):
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def recorded(*args, **kwargs):
            self.seen.append(repr((args, kwargs)))
            return attr(*args, **kwargs)
        return recorded


class Magic(FakeBackend):
    """A fake whose label scores are right only when the system prompt says MAGIC (inverted otherwise),
    and whose optimiser proposals are scripted."""

    def __init__(self, proposals):
        super().__init__("fake")
        self.proposals = proposals

    def score(self, prefix, suffixes, continuations, batch_size=16, on_batch=None):
        right = super().score(prefix, suffixes, continuations, batch_size, on_batch)
        return right if "MAGIC" in prefix else right[:, ::-1].copy()

    def sample(self, prompts, n=1, temperature=0.0, max_new_tokens=64, stop=(), batch_size=8, on_batch=None,
               top_p=1.0):
        return [[(self.proposals[i % len(self.proposals)], 9) for i in range(n)] for _ in prompts]


def fit(backend, task: Task, tmp_path, **options):
    ctx = FitContext(tmp_path, 0)
    strategy = strategies()["optimize-prompt"](strategy_config({"name": "optimize-prompt", **options}))
    return strategy, strategy.fit(backend, task, ctx), ctx


@pytest.mark.parametrize("validation", [True, False])
@pytest.mark.parametrize("backend_name", ["fake", "fake-nologprobs", "magic"])
def test_optimiser_never_sees_a_test_example(backend_name, validation, tmp_path):
    task = keyword_task(validation)
    inner = Magic([GOOD]) if backend_name == "magic" else load_backend(backend_name, "causal")
    backend = Recorder(inner)
    _, predictor, ctx = fit(backend, task, tmp_path, rounds=3, candidates=2, minibatch=4)
    assert len(backend.seen) > 5, "the recorder saw nothing; the test would prove nothing"
    assert not [s for s in backend.seen if "SECRET-TEST" in s]
    assert ctx.stats["validation_source"] == ("validation" if validation else "train slice")
    # Only now, outside fit, does the predictor meet the test split.
    assert len(predictor.predict(task.test)) == len(task.test)
    assert any("SECRET-TEST" in s for s in backend.seen)


def test_without_test_copies():
    task = keyword_task()
    safe = without_test(task)
    assert safe.test == [] and len(task.test) == 4
    assert safe.train == task.train and safe.train is not task.train


def test_better_proposal_is_kept(tmp_path):
    task = keyword_task()
    _, predictor, ctx = fit(Magic(["too short", f'Improved instruction: "{GOOD}"\n\nThis should help.']),
                            task, tmp_path, rounds=1, candidates=2)
    assert ctx.stats["instruction"] == GOOD
    history = ctx.stats["candidates"]
    assert history[0]["instruction"] == "Route it." and history[0]["source"] == "original"
    assert history[0]["validation_score"] < 0.5  # the fake inverts its scores without MAGIC
    assert {"round": 1, "instruction": GOOD, "validation_score": 1.0, "source": "proposal"} in history
    assert any(h.get("source", "").startswith("rejected") for h in history)  # "too short"
    assert ctx.stats["validation_score"] == 1.0
    preds = predictor.predict(task.test)
    assert [p.output for p in preds] == ["delivery"] * 4
    assert (tmp_path / "instruction.json").is_file()


def test_worse_proposals_never_replace_the_original(tmp_path):
    task = keyword_task()
    magic = Magic(["Always answer refund whatever the message says, please."])
    magic.score = lambda prefix, suffixes, conts, batch_size=16, on_batch=None: np.array(  # type: ignore
        [[0.0, -1.0] if "Always" in prefix else FakeBackend.score(magic, prefix, [s], conts)[0] for s in suffixes])
    strategy, _, ctx = fit(magic, task, tmp_path, rounds=2)
    assert ctx.stats["instruction"] == "Route it."
    scores = [h["validation_score"] for h in ctx.stats["candidates"] if h.get("validation_score") is not None]
    assert scores[0] == max(scores) and scores[0] > scores[1]
    reloaded = strategy.load(magic, task, ctx)  # --resume reuses the saved instruction
    assert [p.output for p in reloaded.predict(task.test)] == ["delivery"] * 4


@pytest.mark.parametrize("text, expected", [
    ('"Classify the message by intent."', "Classify the message by intent."),
    ("Here is the improved instruction:\n\n**Classify the message by intent.**\n\nExplanation: ...",
     "Classify the message by intent."),
    ("New instruction: Read carefully.\nThen answer.\n\nMore text", "Read carefully. Then answer."),
    ("word " * 200, ("word " * 200)[:60].rsplit(" ", 1)[0]),
    ("First sentence is long enough here. Second sentence goes past the cap", "First sentence is long enough here."),
    ("", ""),
])
def test_clean_instruction(text, expected):
    assert clean_instruction(text, 60 if len(text) > 100 else 50) == expected


def test_generation_task_and_separate_optimizer_model(tmp_path):
    ex = [Example(id=str(i), input=f"what is {i} plus 1? {i + 1}", target=str(i + 1)) for i in range(9)]
    task = Task(name="g", kind="generation", train=ex[:6], validation=ex[6:], test=ex[6:], instruction="Add.")
    _, predictor, ctx = fit(load_backend("fake-nologprobs", "causal"), task, tmp_path, optimizer_model="fake")
    assert ctx.stats["optimizer_model"] == "fake"
    assert ctx.stats["validation_score"] == 1.0
    assert [p.output for p in predictor.predict(task.test)] == [f"The answer is {i + 1}" for i in range(6, 9)]


def test_optimize_prompt_on_tiny_model(tiny_causal, small_task, tmp_path):
    backend = Recorder(load_backend(tiny_causal, "causal", "cpu"))
    _, predictor, ctx = fit(backend, small_task, tmp_path, rounds=1, candidates=2, minibatch=4,
                            max_proposal_tokens=24)
    history = ctx.stats["candidates"]
    assert history[0]["source"] == "original" and history[0]["instruction"] == small_task.instruction
    best = max(h["validation_score"] for h in history if h.get("validation_score") is not None)
    assert ctx.stats["validation_score"] == best >= history[0]["validation_score"]
    assert ctx.stats["optimization_tokens"]["completion"] > 0
    assert not [s for s in backend.seen if any(e.input in s for e in small_task.test
                                               if e.input not in {t.input for t in small_task.train})]
    preds = predictor.predict(small_task.test)
    assert all(p.output in small_task.labels and abs(sum(p.scores.values()) - 1) < 1e-5 for p in preds)
