"""Knowledge distillation: the student learns the teacher's labels; soft labels; teacher config checks."""

from __future__ import annotations

import random

import pytest
from pydantic import ValidationError

from tunewise.backends import load_backend
from tunewise.data import Example, Task
from tunewise.registry import strategies, strategy_config
from tunewise.strategies.base import FitContext, Prediction
from tunewise.strategies.finetuning.distill import soft_labels

FILLER = ["hello", "please", "today", "again", "my", "the", "order", "help", "thanks", "now", "asap", "still"]


def _keyword_task(n_train: int = 48, seed: int = 0) -> Task:
    """'delivery'/'refund' messages; a fifth of the *gold* training labels are flipped, so a student that
    follows the teacher (a keyword rule) and one that follows the gold labels behave differently."""
    rng = random.Random(seed)

    def make(i: int, split: str, noisy: bool) -> Example:
        label = rng.choice(["delivery", "refund"])
        words = rng.sample(FILLER, 3) + [label]
        rng.shuffle(words)
        target = {"delivery": "refund", "refund": "delivery"}[label] if noisy and i % 5 == 0 else label
        return Example(id=f"{split}{i}", input=" ".join(words), target=target)

    return Task(name="kw", kind="classification", instruction="Route the message.",
                labels=["delivery", "refund"], train=[make(i, "t", True) for i in range(n_train)],
                validation=[make(i, "v", False) for i in range(8)],
                test=[make(i, "x", False) for i in range(24)])


@pytest.fixture(scope="module")
def encoder(tiny_encoder):
    return load_backend(tiny_encoder, "encoder", "cpu")


def test_student_learns_the_teachers_labels(encoder, tmp_path):
    task = _keyword_task(32)
    cfg = strategy_config({"name": "distill", "teacher": "zero-shot", "teacher_model": "fake", "alpha": 1.0,
                           "epochs": 6, "batch_size": 8, "learning_rate": 1e-2, "early_stopping_patience": None})
    ctx = FitContext(artifact_dir=tmp_path, seed=0)
    student = strategies()["distill"](cfg).fit(encoder, task, ctx)
    teacher = strategies()["zero-shot"](strategy_config("zero-shot")).fit(
        load_backend("fake", "causal"), task, FitContext(tmp_path, 0))
    teacher_out = [p.output for p in teacher.predict(task.test)]
    student_out = [p.output for p in student.predict(task.test)]
    agreement = sum(a == b for a, b in zip(teacher_out, student_out, strict=True)) / len(task.test)
    assert agreement >= 0.8, agreement  # chance is 0.5
    stats = ctx.stats["distillation"]
    assert stats["teacher"] == "zero-shot" and stats["teacher_model"] == "fake"
    assert stats["teacher_val_accuracy"] == 1.0  # the keyword rule is right on clean labels
    assert 0 <= stats["student_val_accuracy"] <= 1
    assert stats["teacher_seconds_per_example"] > 0 and stats["student_seconds_per_example"] > 0
    assert stats["speedup"] == pytest.approx(stats["teacher_seconds_per_example"]
                                             / stats["student_seconds_per_example"])
    assert stats["soft_label_examples"] == len(task.train)  # the fake teacher gives probabilities
    again = strategies()["distill"](cfg).load(encoder, task, ctx)
    assert [p.output for p in again.predict(task.test)] == student_out


def test_hard_label_teacher_without_probabilities(encoder, tmp_path):
    task = _keyword_task(16)
    cfg = strategy_config({"name": "distill", "teacher": "zero-shot", "teacher_model": "fake-nologprobs",
                           "epochs": 1, "batch_size": 8, "early_stopping_patience": None})
    ctx = FitContext(artifact_dir=tmp_path, seed=0)
    strategies()["distill"](cfg).fit(encoder, task, ctx)
    assert ctx.stats["distillation"]["soft_label_examples"] == 0  # one-hot labels from generation
    assert ctx.stats["distillation"]["unusable_teacher_labels"] == 0


def test_soft_labels_from_scores_answers_or_nothing():
    labels = ["a", "b"]
    preds = [Prediction("a", scores={"a": 0.6, "b": 0.2}), Prediction("b"), Prediction("zzz")]
    soft = soft_labels(preds, labels)
    assert soft[0] == pytest.approx([0.75, 0.25])
    assert soft[1] == [0.0, 1.0]
    assert soft[2] is None


def test_teacher_config_is_validated_and_round_trips():
    cfg = strategy_config({"name": "distill", "teacher": {"name": "few-shot", "k": 2}})
    assert cfg.teacher.name == "few-shot" and cfg.teacher.k == 2
    assert strategy_config(cfg.model_dump(mode="json")) == cfg
    with pytest.raises(ValidationError, match="teacher.k"):
        strategy_config({"name": "distill", "teacher": {"name": "few-shot", "k": 0}})
    with pytest.raises(ValidationError, match="unknown strategy 'nope'"):
        strategy_config({"name": "distill", "teacher": "nope"})
    with pytest.raises(ValidationError, match="cannot itself be 'distill'"):
        strategy_config({"name": "distill", "teacher": "distill"})


def test_bad_teacher_option_is_one_line_in_an_experiment_config():
    from tunewise.config import parse_config
    from tunewise.errors import UserError

    with pytest.raises(UserError, match=r"strategies\[0\]\.teacher") as info:
        parse_config({"strategies": [{"name": "distill", "teacher": {"name": "few-shot", "k": 0}}]})
    assert "\n" not in str(info.value)
