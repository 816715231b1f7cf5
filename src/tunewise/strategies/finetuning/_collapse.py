"""Collapsed training: a fine-tuned classifier that answers one label for nearly every validation example while
the data has several. It has learned the label frequencies and nothing else, and a report would otherwise rank
it on accuracy as if it worked.

`train_guarded` wraps a strategy's training call: after training it predicts (up to CHECK_EXAMPLES of) the
validation split (when it has at least MIN_EXAMPLES and two labels), and when one label takes COLLAPSE_SHARE
of the answers it tries what a practitioner would, each a full retraining from the same starting weights:
balanced sampling of the training rows (every class equally often, same number of rows, so the same cost per
epoch), then balanced sampling with a ten times lower learning rate (a rate too high for the data is the other
usual cause). It stops at the first attempt that does not collapse; otherwise it keeps the attempt with the
best validation macro-F1. `ctx.stats['collapse']` (which lands in results under cost.details) says what was
seen, what was tried and what was kept; the leaderboard and report flag a model that is still collapsed.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from tunewise.data import Example
from tunewise.strategies.base import FitContext

COLLAPSE_SHARE = 0.98  # of validation answers given to one label
CHECK_EXAMPLES = 256  # validation examples predicted for the check (the split is already shuffled)
MIN_EXAMPLES = 20  # fewer validation examples than this share one answer by chance too often to tell
REMEDIES = [("balanced sampling", 1.0), ("balanced sampling with a 10x lower learning rate", 0.1)]


def collapse(outputs: Sequence[str], targets: Sequence[str]) -> dict[str, Any] | None:
    """{'label', 'share'} when one label is at least COLLAPSE_SHARE of `outputs` while `targets` hold two or more
    labels; None otherwise."""
    if len(set(targets)) < 2 or not outputs:
        return None
    label, n = Counter(outputs).most_common(1)[0]
    share = n / len(outputs)
    return {"label": label, "share": share} if share >= COLLAPSE_SHARE else None


def balanced_sample(rows: list[dict], row_labels: Sequence[str], seed: int) -> list[dict]:
    """As many rows as given, every label equally often: drawn with replacement within each label (seeded)."""
    by: dict[str, list[int]] = defaultdict(list)
    for i, label in enumerate(row_labels):
        by[label].append(i)
    rng = np.random.default_rng(seed)
    per_label = -(-len(rows) // len(by))  # ceil: every label gets the same count
    picked = np.concatenate([rng.choice(idx, size=per_label, replace=True) for idx in by.values()])
    rng.shuffle(picked)
    return [rows[i] for i in picked[:len(rows)]]


def _snapshot(model) -> dict[str, Any]:
    """The trainable parameters (a copy on the CPU) and every parameter's requires_grad flag. Parameters frozen
    at the start never change, and strategies that unfreeze during training make every parameter that will
    ever train trainable before the optimizer is built."""
    return {"values": {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if p.requires_grad},
            "flags": {n: p.requires_grad for n, p in model.named_parameters()}}


def _restore(model, snap: dict[str, Any]) -> None:
    import torch

    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in snap["values"]:
                p.copy_(snap["values"][name].to(p.device))
            p.requires_grad_(snap["flags"][name])


def _macro_f1(targets: Sequence[str], outputs: Sequence[str]) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(targets, outputs, labels=sorted(set(targets)), average="macro", zero_division=0))


def train_guarded(model, rows: list[dict], row_labels: Sequence[str], validation: Sequence[Example],
                  train_fn: Callable[[list[dict], Any, FitContext], Any],
                  predict_fn: Callable[[Sequence[Example]], list[str]], cfg, ctx: FitContext) -> None:
    """Train `model` in place with `train_fn(rows, cfg, ctx)`; when the result has collapsed, retrain with the
    REMEDIES. `row_labels[i]` is the label of `rows[i]`; `predict_fn(examples)` returns the model's answers."""
    check = list(validation[:CHECK_EXAMPLES])
    targets = [e.target for e in check]
    if len(check) < MIN_EXAMPLES or len(set(targets)) < 2:  # too few to tell, or one label: no check
        train_fn(rows, cfg, ctx)
        return
    initial = _snapshot(model)
    train_fn(rows, cfg, ctx)
    outputs = predict_fn(check)
    seen = collapse(outputs, targets)
    if seen is None:
        top, n = Counter(outputs).most_common(1)[0]
        ctx.stats["collapse"] = {"collapsed": False, "label": top, "share": n / len(outputs)}
        return
    tokens = ctx.stats.get("train_tokens", 0)
    # the best attempt so far; state None: its weights are the ones in the model now
    best = {"remedy": "none (the first training)", "collapse": seen, "score": _macro_f1(targets, outputs),
            "state": None}
    tried: list[dict[str, Any]] = []
    for attempt, (remedy, factor) in enumerate(REMEDIES, start=1):
        if best["state"] is None:
            best["state"] = _snapshot(model)
        _restore(model, initial)
        c = cfg.model_copy(update={"learning_rate": cfg.learning_rate * factor})
        attempt_ctx = dataclasses.replace(ctx, log=lambda record, a=attempt: ctx.log({**record, "attempt": a}))
        train_fn(balanced_sample(rows, row_labels, ctx.seed + attempt), c, attempt_ctx)
        tokens += ctx.stats.get("train_tokens", 0)
        outputs = predict_fn(check)
        found, score = collapse(outputs, targets), _macro_f1(targets, outputs)
        top, n = Counter(outputs).most_common(1)[0]
        tried.append({"remedy": remedy, "learning_rate": c.learning_rate, "label": top, "share": n / len(outputs),
                      "validation_macro_f1": score, "collapsed": found is not None})
        if found is None or score > best["score"]:
            best = {"remedy": remedy, "collapse": found, "score": score, "state": None}
        if found is None:
            break
    if best["state"] is not None:
        _restore(model, best["state"])  # an earlier attempt did better on validation
    ctx.stats["train_tokens"] = tokens  # every attempt was paid for
    final = best["collapse"] or {}
    ctx.stats["collapse"] = {"collapsed": bool(final), "label": final.get("label", seen["label"]),
                             "share": final.get("share"), "first": seen, "tried": tried, "kept": best["remedy"]}
