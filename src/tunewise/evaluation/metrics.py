"""Metrics: per-example functions `(example, prediction) -> float` and whole-set aggregates."""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from tunewise.data import Example, Task
from tunewise.errors import UserError
from tunewise.evaluation.label_metrics import SET_METRICS, set_metric_ci
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
METRICS = {"classification": ("accuracy", "macro_f1", "balanced_accuracy", "mcc"),
           "generation": ("exact_match", "token_f1")}
# Above this share of the test labels in one class, accuracy rewards answering that class every time (a
# constant scores the share), so macro-F1, which weighs every class equally, becomes the primary metric.
IMBALANCED_SHARE = 0.6


def choose_primary(kind: str, targets: Sequence[str], metric: str | None = None) -> tuple[str, str]:
    """(primary metric, why): `metric` when given (config `metric:`), else macro-F1 for classification whose
    largest test class holds over 60% of the labels, accuracy for other classification, exact match for
    generation. Raises UserError for a metric of the other task kind."""
    if metric and metric != "auto":
        if metric not in METRICS[kind]:
            raise UserError(f"metric: '{metric}' does not apply to {kind} tasks; use auto or one of "
                            f"{', '.join(METRICS[kind])}")
        return metric, f"set by `metric: {metric}` in the config"
    if kind != "classification" or not targets:
        return PRIMARY[kind], f"{PRIMARY[kind].replace('_', ' ')} is the default for {kind} tasks"
    label, top = Counter(targets).most_common(1)[0]
    share = top / len(targets)
    if share > IMBALANCED_SHARE:
        return "macro_f1", (f"the test labels are imbalanced: '{label}' holds {100 * share:.0f}% of them (over "
                            f"{100 * IMBALANCED_SHARE:.0f}%), so accuracy would reward always answering '{label}'; "
                            "macro-F1 weighs every class equally")
    return "accuracy", (f"the test labels are balanced enough for accuracy: the largest class, '{label}', holds "
                        f"{100 * share:.0f}% of them (macro-F1 decides above {100 * IMBALANCED_SHARE:.0f}%)")


def companions(metrics: dict) -> list[str]:
    """The metrics shown beside the primary one: for classification judged on another metric than accuracy,
    MCC when there are two classes, then accuracy; otherwise the other metric of the task kind."""
    primary = metrics.get("primary", "accuracy")
    if "exact_match" in metrics or "token_f1" in metrics:
        return [m for m in ("exact_match", "token_f1") if m != primary][:1]
    if primary == "accuracy":
        return ["macro_f1"]
    binary = len((metrics.get("confusion") or {}).get("labels") or []) == 2
    order = ["macro_f1", "mcc" if binary else "balanced_accuracy", "accuracy"]
    return [m for m in order if m != primary and m in metrics][:2]


def evaluate(task: Task, examples: Sequence[Example], outputs: Sequence[str], seed: int = 0,
             n_boot: int = 1000, metric: str | None = None) -> dict:
    """Aggregate metrics with 95% bootstrap intervals, the primary metric and why it was chosen
    (`choose_primary`; `metric` overrides it). Classification adds macro-F1, balanced accuracy and Matthews
    correlation (scikit-learn), a confusion matrix and per-class precision, recall and F1."""
    primary, reason = choose_primary(task.kind, [e.target for e in examples], metric)
    result: dict = {"n": len(examples), "primary": primary, "primary_reason": reason}
    if task.is_classification:
        labels = task.labels
        y_true = np.array([labels.index(e.target) for e in examples], dtype=np.int64)
        y_pred = np.array([labels.index(o) if o in labels else -1 for o in outputs], dtype=np.int64)
        correct = (y_true == y_pred).astype(float)
        result["accuracy"] = bootstrap_ci(correct, np.mean, seed=seed, n_boot=n_boot)
        for name in SET_METRICS:
            result[name] = set_metric_ci(name, y_true, y_pred, len(labels), seed=seed, n_boot=n_boot)
        result["confusion"] = {"labels": labels, "matrix": confusion_matrix(
            y_true, y_pred, labels=range(len(labels))).tolist()}
        result["per_class"] = per_class(y_true, y_pred, labels)
    else:
        em = np.array([exact_match(e, o) for e, o in zip(examples, outputs, strict=True)])
        f1 = np.array([token_f1(e, o) for e, o in zip(examples, outputs, strict=True)])
        result["exact_match"] = bootstrap_ci(em, np.mean, seed=seed, n_boot=n_boot)
        result["token_f1"] = bootstrap_ci(f1, np.mean, seed=seed, n_boot=n_boot)
    return result


def per_class(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str]) -> dict[str, dict[str, float]]:
    """{label: {'precision', 'recall', 'f1', 'support'}}: scikit-learn's precision_recall_fscore_support (the
    numbers of its classification_report, keyed safely even for a label called 'accuracy')."""
    if not len(y_true):
        return {}
    p, r, f, support = precision_recall_fscore_support(y_true, y_pred, labels=range(len(labels)), zero_division=0)
    return {label: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(support[i])}
            for i, label in enumerate(labels)}


def per_example_score(task: Task, example: Example, output: str) -> float:
    return label_correct(example, output) if task.is_classification else exact_match(example, output)
