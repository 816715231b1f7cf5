"""Paired comparison of every strategy against the best one on the same test examples, and calibration.

Strategies are scored on the same held-out examples, so their differences are paired: McNemar's test for
classification accuracy (right/wrong per example), a paired bootstrap for generation scores and for metrics
that do not decompose per example (macro-F1, balanced accuracy, MCC: both systems scored on each resample).
A strategy whose p-value against the best is >= ALPHA is *tied* with it: the data cannot tell them apart;
one not significantly better than the trivial baselines (`versus_baselines`) has learned nothing shown here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tunewise.evaluation.label_metrics import SET_METRICS, paired_set_metric
from tunewise.evaluation.stats import examples_to_separate, expected_calibration_error, mcnemar, paired_bootstrap

ALPHA = 0.05
DEFAULT_METRIC = {"classification": "accuracy", "generation": "exact_match"}


def aligned_scores(predictions: dict[str, list[dict[str, Any]]]) -> tuple[list[str], dict[str, np.ndarray]]:
    """Per-example scores of every strategy on the examples all of them predicted, in one order."""
    ids, rows = _aligned(predictions)
    return ids, {sid: np.array([float(r["score"]) for r in rs]) for sid, rs in rows.items()}


def _aligned(predictions: dict[str, list[dict[str, Any]]]) -> tuple[list[str], dict[str, list[dict[str, Any]]]]:
    if not predictions:
        return [], {}
    common = set.intersection(*({r["example_id"] for r in rows} for rows in predictions.values()))
    first = next(iter(predictions.values()))
    ids = [r["example_id"] for r in first if r["example_id"] in common]
    rows = {}
    for sid, rs in predictions.items():
        by_id = {r["example_id"]: r for r in rs}
        rows[sid] = [by_id[i] for i in ids]
    return ids, rows


class Paired:
    """Every strategy's outputs on the common test examples, scored on one metric: per-example metrics
    (accuracy, exact match: the stored score; token F1) or a set-level one (macro-F1, balanced accuracy, MCC,
    which need the task's `labels`)."""

    def __init__(self, predictions: dict[str, list[dict[str, Any]]], kind: str, metric: str | None = None,
                 labels: list[str] | None = None):
        self.kind, self.metric = kind, metric or DEFAULT_METRIC[kind]
        self.ids, rows = _aligned(predictions)
        self.set_level = self.metric in SET_METRICS
        if self.set_level:
            self.labels = list(labels or [])
            index = {label: i for i, label in enumerate(self.labels)}
            first = next(iter(rows.values()), [])
            self.y_true = np.array([index[r["target"]] for r in first], dtype=np.int64)
            self.preds = {sid: np.array([index.get(r["output"], -1) for r in rs], dtype=np.int64)
                          for sid, rs in rows.items()}
        else:
            self.scores = {sid: np.array([self._score(r) for r in rs]) for sid, rs in rows.items()}

    def _score(self, row: dict[str, Any]) -> float:
        if self.metric == "token_f1":
            from tunewise.data import Example
            from tunewise.evaluation.metrics import token_f1

            return token_f1(Example("", "", row["target"]), row["output"])
        return float(row["score"])

    @property
    def names(self) -> list[str]:
        return list(self.preds if self.set_level else self.scores)

    def value(self, sid: str) -> float:
        if not self.ids:
            return float("nan")
        if self.set_level:
            from tunewise.evaluation.label_metrics import confusion_stack

            return float(SET_METRICS[self.metric](confusion_stack(self.y_true, self.preds[sid], len(self.labels)))[0])
        return float(self.scores[sid].mean())

    def test(self, a: str, b: str, seed: int = 0) -> dict[str, Any]:
        """Paired test of a against b: McNemar on right/wrong for classification accuracy, a paired bootstrap
        of the mean for other per-example metrics, a paired bootstrap of the metric for set-level ones."""
        if self.set_level:
            t = paired_set_metric(self.metric, self.y_true, self.preds[a], self.preds[b], len(self.labels), seed)
            return {"pvalue": t["pvalue"], "method": t["method"], "diff_low": t["low"], "diff_high": t["high"],
                    "se": _se(t)}
        sa, sb = self.scores[a], self.scores[b]
        if self.kind == "classification":
            n_a = int(((sa == 1) & (sb == 0)).sum())  # a right, b wrong
            n_b = int(((sa == 0) & (sb == 1)).sum())
            test = mcnemar(n_a, n_b)
            return {"pvalue": test["pvalue"], "method": test["method"], "b": n_a, "c": n_b}
        t = paired_bootstrap(sb, sa, seed=seed)
        return {"pvalue": t["pvalue"], "method": t["method"], "diff_low": t["low"], "diff_high": t["high"]}


def _se(test: dict[str, Any]) -> float:
    """Standard error of a paired difference from its 95% percentile interval (normal approximation)."""
    return (test["high"] - test["low"]) / (2 * 1.96)


def compare_to_best(predictions: dict[str, list[dict[str, Any]]], kind: str, seed: int = 0,
                    alpha: float = ALPHA, metric: str | None = None, labels: list[str] | None = None
                    ) -> list[dict[str, Any]]:
    """One row per strategy, best first on `metric` (default: accuracy / exact match): its value ('mean'),
    difference to the best, p-value, tied or not."""
    paired = Paired(predictions, kind, metric, labels)
    if not paired.ids:
        return []
    values = {sid: paired.value(sid) for sid in paired.names}
    order = sorted(values, key=lambda s: -values[s])  # stable: ties keep the run's order
    best = order[0]
    out = []
    for sid in order:
        row: dict[str, Any] = {"strategy": sid, "n": len(paired.ids), "mean": values[sid],
                               "diff": values[sid] - values[best], "is_best": sid == best,
                               "pvalue": None, "method": None, "tied": sid == best}
        if sid != best:
            row.update({k: v for k, v in paired.test(best, sid, seed).items() if k != "se"})
            row["tied"] = row["pvalue"] >= alpha
        out.append(row)
    return out


def pairwise_pvalues(predictions: dict[str, list[dict[str, Any]]], kind: str, seed: int = 0,
                     metric: str | None = None, labels: list[str] | None = None) -> dict[tuple[str, str], float]:
    """p-value of the paired test for every pair of strategies, under both orders of the pair."""
    paired = Paired(predictions, kind, metric, labels)
    names = paired.names
    out: dict[tuple[str, str], float] = {}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            out[a, b] = out[b, a] = paired.test(a, b, seed)["pvalue"]
    return out


def versus_baselines(predictions: dict[str, list[dict[str, Any]]], baselines: list[str], kind: str, seed: int = 0,
                     metric: str | None = None, labels: list[str] | None = None, alpha: float = ALPHA
                     ) -> dict[str, dict[str, Any]]:
    """For every strategy that is not a baseline: whether it is significantly better than every baseline on
    `metric` (higher, and the paired test's p < alpha), with the first baseline (in the order given: the
    majority label first) it fails to beat, or the last one tested when it beats them all:
    {'beats', 'baseline', 'value', 'baseline_value', 'pvalue', 'method'}."""
    paired = Paired(predictions, kind, metric, labels)
    present = [b for b in baselines if b in paired.names]
    if not present or not paired.ids:
        return {}
    out = {}
    for sid in (s for s in paired.names if s not in present):
        value, verdict = paired.value(sid), None
        for b in present:
            test = paired.test(sid, b, seed)
            verdict = {"beats": value > paired.value(b) and test["pvalue"] < alpha, "baseline": b, "value": value,
                       "baseline_value": paired.value(b), "pvalue": test["pvalue"], "method": test["method"]}
            if not verdict["beats"]:
                break
        out[sid] = verdict
    return out


def separation(predictions: dict[str, list[dict[str, Any]]], first: str, second: str, kind: str = "classification",
               metric: str | None = None, labels: list[str] | None = None) -> dict[str, Any]:
    """How many test examples would separate two strategies, from their observed paired difference.

    Per-example metrics: stats.examples_to_separate. Set-level metrics: the paired bootstrap's standard error
    shrinks as 1/sqrt(n), so n examples become n * ((z_0.975 + z_0.8) * se / diff)^2 for 5% level, 80% power.
    """
    from scipy.stats import norm

    paired = Paired({k: predictions[k] for k in (first, second)}, kind, metric, labels)
    n = len(paired.ids)
    if paired.set_level:
        diff = paired.value(first) - paired.value(second) if n else float("nan")
        se = paired.test(first, second)["se"] if n else 0.0
        z = norm.ppf(0.975) + norm.ppf(0.8)
        needed = None if not n or diff == 0 else max(1, int(np.ceil(n * (z * se / abs(diff)) ** 2)))
    else:
        diffs = paired.scores[first] - paired.scores[second]
        needed, diff = examples_to_separate(diffs), float(diffs.mean()) if n else float("nan")
    return {"n": n, "needed": needed, "more": None if needed is None else max(0, needed - n), "diff": diff}


def calibration(rows: list[dict[str, Any]], n_bins: int = 10) -> dict[str, Any] | None:
    """ECE and reliability bins for predictions that carry label probabilities; None when they do not."""
    conf, correct = [], []
    for r in rows:
        scores = r.get("scores")
        if not scores:
            return None
        total = sum(scores.values())
        label, p = max(scores.items(), key=lambda kv: kv[1])
        conf.append(p / total if total > 0 else 0.0)  # label log-likelihoods may not sum to one
        correct.append(float(label == r["target"]))
    if not conf:
        return None
    conf_a, correct_a = np.array(conf), np.array(correct)
    bins = np.clip(np.ceil(conf_a * n_bins).astype(int) - 1, 0, n_bins - 1)
    reliability = [{"bin": k, "count": int((bins == k).sum()), "confidence": float(conf_a[bins == k].mean()),
                    "accuracy": float(correct_a[bins == k].mean())} for k in range(n_bins) if (bins == k).any()]
    return {"ece": expected_calibration_error(conf_a, correct_a, n_bins), "bins": reliability,
            "mean_confidence": float(conf_a.mean())}
