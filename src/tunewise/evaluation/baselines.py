"""Trivial baselines every run scores for free: what a strategy must beat to be worth anything.

Classification: the majority label of the training split, and a stratified random guess (labels drawn in
their training proportions, seeded). Generation: the cheaper of two references chosen on the training split
(the empty answer, or the input echoed back). They are plain functions of the task and the seed returning
one output per test example; the run stores them as results of family "baseline" at zero cost, and the
verdict never recommends them (it refuses any strategy that does not beat them significantly).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from tunewise.data import Task

FAMILY = "baseline"
SUFFIX = "-baseline"  # result ids: majority-baseline, random-baseline, echo-baseline, empty-baseline


@dataclass(frozen=True)
class Baseline:
    id: str
    description: str  # completes "no strategy beats ..." and "better than ..."
    outputs: list[str]  # one per test example, in test order


def majority_label(task: Task) -> str | None:
    """The most frequent training label (the first in the task's label order on a tie); None without one."""
    counts = Counter(e.target for e in task.train)
    if not counts:
        return None
    top = max(counts.values())
    return next(label for label in task.labels if counts.get(label) == top)


def majority(task: Task) -> Baseline | None:
    label = majority_label(task)
    if label is None:
        return None
    return Baseline(f"majority{SUFFIX}", f"always answering {shown(task, label)}", [label] * len(task.test))


def shown(task: Task, label: str) -> str:
    """'positive' (1) for a label named positive stored as 1; '1' for a label without a name."""
    name = task.name_of(label)
    return f"'{name}' ({label})" if name != label else f"'{label}'"


def stratified_random(task: Task, seed: int) -> Baseline | None:
    """Labels drawn independently per test example with the training split's label frequencies."""
    counts = Counter(e.target for e in task.train)
    if not counts:
        return None
    labels = [label for label in task.labels if counts.get(label)]
    p = np.array([counts[label] for label in labels], dtype=float)
    draws = np.random.default_rng(seed).choice(len(labels), size=len(task.test), p=p / p.sum())
    return Baseline(f"random{SUFFIX}", "guessing labels at random in their training proportions",
                    [labels[i] for i in draws])


def generation_reference(task: Task) -> Baseline:
    """The empty answer or the input echoed, whichever scores higher on the training split (exact match, then
    token F1); the empty answer when there is no training split."""
    from tunewise.evaluation.metrics import exact_match, token_f1

    def score(answer) -> tuple[float, float]:
        n = max(len(task.train), 1)
        return (sum(exact_match(e, answer(e)) for e in task.train) / n,
                sum(token_f1(e, answer(e)) for e in task.train) / n)

    if task.train and score(lambda e: e.input) > score(lambda e: ""):
        return Baseline(f"echo{SUFFIX}", "repeating the input as the answer", [e.input for e in task.test])
    return Baseline(f"empty{SUFFIX}", "giving an empty answer", [""] * len(task.test))


def baselines(task: Task, seed: int) -> list[Baseline]:
    """The task's trivial baselines, strongest reference first (majority, then random, for classification)."""
    if task.is_classification:
        return [b for b in (majority(task), stratified_random(task, seed)) if b is not None]
    return [generation_reference(task)]


def is_baseline(result: dict) -> bool:
    """Whether a stored result row is a trivial baseline rather than a strategy."""
    return result.get("family") == FAMILY
