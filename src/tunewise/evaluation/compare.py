"""Paired comparison of every strategy against the best one on the same test examples, and calibration.

Strategies are scored on the same held-out examples, so their differences are paired: McNemar's test for
classification (right/wrong per example), a paired bootstrap for generation scores. A strategy whose
p-value against the best is >= ALPHA is *tied* with it: the data cannot tell them apart.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tunewise.evaluation.stats import examples_to_separate, expected_calibration_error, mcnemar, paired_bootstrap

ALPHA = 0.05


def aligned_scores(predictions: dict[str, list[dict[str, Any]]]) -> tuple[list[str], dict[str, np.ndarray]]:
    """Per-example scores of every strategy on the examples all of them predicted, in one order."""
    if not predictions:
        return [], {}
    common = set.intersection(*({r["example_id"] for r in rows} for rows in predictions.values()))
    first = next(iter(predictions.values()))
    ids = [r["example_id"] for r in first if r["example_id"] in common]
    scores = {}
    for sid, rows in predictions.items():
        by_id = {r["example_id"]: float(r["score"]) for r in rows}
        scores[sid] = np.array([by_id[i] for i in ids])
    return ids, scores


def compare_to_best(predictions: dict[str, list[dict[str, Any]]], kind: str, seed: int = 0,
                    alpha: float = ALPHA) -> list[dict[str, Any]]:
    """One row per strategy, best first: mean score, difference to the best, p-value, tied or not."""
    ids, scores = aligned_scores(predictions)
    if not ids:
        return []
    order = sorted(scores, key=lambda s: -scores[s].mean())  # stable: ties keep the run's order
    best = order[0]
    out = []
    for sid in order:
        row: dict[str, Any] = {"strategy": sid, "n": len(ids), "mean": float(scores[sid].mean()),
                               "diff": float(scores[sid].mean() - scores[best].mean()), "is_best": sid == best,
                               "pvalue": None, "method": None, "tied": sid == best}
        if sid != best:
            row.update(_paired_test(scores[best], scores[sid], kind, seed))
            row["tied"] = row["pvalue"] >= alpha
        out.append(row)
    return out


def _paired_test(best: np.ndarray, other: np.ndarray, kind: str, seed: int) -> dict[str, Any]:
    if kind == "classification":
        b = int(((best == 1) & (other == 0)).sum())  # best right, other wrong
        c = int(((best == 0) & (other == 1)).sum())
        test = mcnemar(b, c)
        return {"pvalue": test["pvalue"], "method": test["method"], "b": b, "c": c}
    test = paired_bootstrap(other, best, seed=seed)
    return {"pvalue": test["pvalue"], "method": test["method"], "diff_low": test["low"], "diff_high": test["high"]}


def pairwise_pvalues(predictions: dict[str, list[dict[str, Any]]], kind: str, seed: int = 0
                     ) -> dict[tuple[str, str], float]:
    """p-value of the paired test for every pair of strategies, under both orders of the pair."""
    _, scores = aligned_scores(predictions)
    names = list(scores)
    out: dict[tuple[str, str], float] = {}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            p = _paired_test(scores[a], scores[b], kind, seed)["pvalue"]
            out[a, b] = out[b, a] = p
    return out


def separation(predictions: dict[str, list[dict[str, Any]]], first: str, second: str) -> dict[str, Any]:
    """How many test examples would separate two strategies, from their observed paired difference."""
    ids, scores = aligned_scores({k: predictions[k] for k in (first, second)})
    diffs = scores[first] - scores[second]
    needed = examples_to_separate(diffs)
    return {"n": len(ids), "needed": needed, "more": None if needed is None else max(0, needed - len(ids)),
            "diff": float(diffs.mean()) if len(ids) else float("nan")}


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
