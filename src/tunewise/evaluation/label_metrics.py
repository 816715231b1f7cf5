"""Classification metrics that do not decompose per example (macro-F1, balanced accuracy, MCC), with their
bootstrap intervals and paired bootstrap tests.

Point values come from scikit-learn (f1_score, balanced_accuracy_score, matthews_corrcoef). A bootstrap needs
the metric on thousands of resamples, per strategy and per pair of strategies, and scikit-learn takes about a
millisecond per call with its input checks; so resamples are counted into a stack of confusion matrices at
once and the same formulas are applied in numpy. tests/test_metrics.py checks them against scikit-learn.

Labels are indices 0..K-1 into the task's label list; a prediction outside the label set is -1 and is
always wrong (it gets its own column, K, in the confusion matrices).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

from tunewise.evaluation.stats import bootstrap_difference


def confusion_stack(y_true: np.ndarray, y_pred: np.ndarray, n_labels: int,
                    draws: np.ndarray | None = None) -> np.ndarray:
    """Counts of shape (n_draws, K, K + 1): [d, true, predicted], column K for predictions outside the label
    set. `draws` (n_draws, n) holds resampled example indices; None means the examples as they are."""
    k = n_labels
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    y_pred = np.where(y_pred < 0, k, y_pred)
    if draws is None:
        draws = np.arange(len(y_true))[None, :]
    codes = y_true[draws] * (k + 1) + y_pred[draws] + np.arange(len(draws))[:, None] * (k * (k + 1))
    return np.bincount(codes.ravel(), minlength=len(draws) * k * (k + 1)).reshape(len(draws), k, k + 1)


def _tp_fp_fn(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    k = cm.shape[1]
    tp = cm[:, np.arange(k), np.arange(k)].astype(float)
    return tp, cm[:, :, :k].sum(axis=1) - tp, cm.sum(axis=2) - tp


def macro_f1_of(cm: np.ndarray) -> np.ndarray:
    """Unweighted mean over the K labels of F1 = 2TP / (2TP + FP + FN); 0 for a label never seen nor
    predicted (scikit-learn's f1_score(labels=range(K), average='macro', zero_division=0))."""
    tp, fp, fn = _tp_fp_fn(cm)
    denom = 2 * tp + fp + fn
    return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0).mean(axis=1)


def balanced_accuracy_of(cm: np.ndarray) -> np.ndarray:
    """Mean recall over the labels present among the true labels (scikit-learn's balanced_accuracy_score)."""
    tp, _, fn = _tp_fp_fn(cm)
    support = tp + fn
    present = support > 0
    recall = np.where(present, tp / np.maximum(support, 1), 0.0)
    return recall.sum(axis=1) / np.maximum(present.sum(axis=1), 1)


def mcc_of(cm: np.ndarray) -> np.ndarray:
    """Matthews correlation, multiclass form (Gorodkin 2004), as scikit-learn's matthews_corrcoef: in [-1, 1],
    0 for a constant prediction."""
    k = cm.shape[1]
    cm = cm.astype(float)
    t_sum, p_sum = cm.sum(axis=2), cm.sum(axis=1)  # (D, K) true counts, (D, K + 1) predicted counts
    correct = cm[:, np.arange(k), np.arange(k)].sum(axis=1)
    n = t_sum.sum(axis=1)
    cov_tp = correct * n - (t_sum * p_sum[:, :k]).sum(axis=1)
    cov_pp = n ** 2 - (p_sum ** 2).sum(axis=1)
    cov_tt = n ** 2 - (t_sum ** 2).sum(axis=1)
    denom = cov_tt * cov_pp
    return np.where(denom > 0, cov_tp / np.sqrt(np.where(denom > 0, denom, 1.0)), 0.0)


def _sklearn(name: str, y_true: np.ndarray, y_pred: np.ndarray, n_labels: int) -> float:
    from sklearn.metrics import balanced_accuracy_score, f1_score, matthews_corrcoef

    if name == "macro_f1":
        return float(f1_score(y_true, y_pred, labels=range(n_labels), average="macro", zero_division=0))
    with warnings.catch_warnings():  # an output outside the label set is a class absent from y_true: no news
        warnings.simplefilter("ignore")
        fn = balanced_accuracy_score if name == "balanced_accuracy" else matthews_corrcoef
        return float(fn(y_true, y_pred))


SET_METRICS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "macro_f1": macro_f1_of, "balanced_accuracy": balanced_accuracy_of, "mcc": mcc_of}


def set_metric_ci(name: str, y_true: np.ndarray, y_pred: np.ndarray, n_labels: int, seed: int = 0,
                  n_boot: int = 1000, level: float = 0.95) -> dict[str, float]:
    """{'value', 'low', 'high'}: scikit-learn's value and the percentile-bootstrap interval (the same resamples
    as stats.bootstrap_ci with the same seed)."""
    n = len(y_true)
    if n == 0:
        return {"value": float("nan"), "low": float("nan"), "high": float("nan")}
    draws = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    stats = SET_METRICS[name](confusion_stack(y_true, y_pred, n_labels, draws))
    alpha = (1 - level) / 2
    low, high = np.quantile(stats, [alpha, 1 - alpha])
    return {"value": _sklearn(name, y_true, y_pred, n_labels), "low": float(low), "high": float(high)}


def paired_set_metric(name: str, y_true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, n_labels: int,
                      seed: int = 0, n_boot: int = 2000) -> dict[str, float | str]:
    """Paired bootstrap of metric(a) - metric(b) on the same examples: both systems are scored on each
    resample of the examples. {'diff', 'low', 'high', 'pvalue', 'method'} (stats.bootstrap_difference)."""
    n = len(y_true)
    if n == 0:
        return {"diff": float("nan"), "low": float("nan"), "high": float("nan"), "pvalue": 1.0,
                "method": "paired bootstrap"}
    fn = SET_METRICS[name]
    draws = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    def metric(pred: np.ndarray, resamples: np.ndarray | None) -> np.ndarray:
        return fn(confusion_stack(y_true, pred, n_labels, resamples))

    boot = metric(pred_a, draws) - metric(pred_b, draws)
    observed = float(metric(pred_a, None)[0] - metric(pred_b, None)[0])
    return {**bootstrap_difference(observed, boot), "method": f"paired bootstrap on {name}"}
