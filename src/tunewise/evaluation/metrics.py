"""Metrics: per-example functions `(example, prediction) -> float` and whole-set aggregates."""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score

from tunewise.data import Example, Task
from tunewise.evaluation.stats import bootstrap_ci

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def normalize(text: str) -> str:
    """SQuAD-style: lower case, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _as_number(text: str) -> float | None:
    try:
        return float(text.replace(",", "").strip())
    except ValueError:
        return None


def last_number(text: str) -> float | None:
    found = _NUMBER.findall(text)
    return _as_number(found[-1]) if found else None


def exact_match(example: Example, output: str) -> float:
    """Numbers compare as numbers (the last number in the output); text after normalisation."""
    target_num = _as_number(example.target)
    if target_num is not None:
        got = last_number(output)
        return float(got is not None and abs(got - target_num) < 1e-6)
    return float(normalize(output) == normalize(example.target))


def token_f1(example: Example, output: str) -> float:
    pred, gold = normalize(output).split(), normalize(example.target).split()
    if not pred or not gold:
        return float(pred == gold)
    common = sum((Counter(pred) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def label_correct(example: Example, output: str) -> float:
    return float(output == example.target)


PRIMARY = {"classification": "accuracy", "generation": "exact_match"}


def evaluate(task: Task, examples: Sequence[Example], outputs: Sequence[str], seed: int = 0,
             n_boot: int = 1000) -> dict:
    """Aggregate metrics with 95% bootstrap intervals; classification adds macro-F1 and a confusion matrix."""
    result: dict = {"n": len(examples), "primary": PRIMARY[task.kind]}
    if task.is_classification:
        labels = task.labels
        y_true = np.array([labels.index(e.target) for e in examples])
        y_pred = np.array([labels.index(o) if o in labels else -1 for o in outputs])
        correct = (y_true == y_pred).astype(float)
        result["accuracy"] = bootstrap_ci(correct, np.mean, seed=seed, n_boot=n_boot)

        def macro_f1(idx: np.ndarray) -> float:
            return float(f1_score(y_true[idx], y_pred[idx], labels=range(len(labels)), average="macro",
                                  zero_division=0))
        result["macro_f1"] = bootstrap_ci(np.arange(len(examples)), macro_f1, seed=seed, n_boot=n_boot,
                                          index=True)
        result["confusion"] = {"labels": labels, "matrix": confusion_matrix(
            y_true, y_pred, labels=range(len(labels))).tolist()}
    else:
        em = np.array([exact_match(e, o) for e, o in zip(examples, outputs, strict=True)])
        f1 = np.array([token_f1(e, o) for e, o in zip(examples, outputs, strict=True)])
        result["exact_match"] = bootstrap_ci(em, np.mean, seed=seed, n_boot=n_boot)
        result["token_f1"] = bootstrap_ci(f1, np.mean, seed=seed, n_boot=n_boot)
    return result


def per_example_score(task: Task, example: Example, output: str) -> float:
    return label_correct(example, output) if task.is_classification else exact_match(example, output)
