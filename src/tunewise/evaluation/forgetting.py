"""Catastrophic forgetting: how much general ability a causal LM lost by being fine-tuned.

Two probes, both measured on the base model and on the fine-tuned one:
- perplexity on a shipped reference text of general English prose (`tunewise/data/general_reference.txt`,
  no labels and no network needed); a fine-tune that overwrote general language skills raises it;
- optionally, zero-shot accuracy on a second task the model was not trained on.
The base model's numbers depend only on the base weights, so they are cached per base model: a run with
several causal fine-tunes measures the base once.

This runs after `fit`, called by the run API (`tunewise.runs`), and is timed on its own: it is a
measurement, not part of training. The zero-shot predictor for the second task comes from the caller
(the run API builds it with the registered zero-shot strategy), so evaluation needs no strategy code.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from importlib.resources import files
from typing import Any

import torch

from tunewise.evaluation.cost import Timer

# (backend over the model to probe, task) -> a predictor with `predict(examples)`: zero-shot prompting
ZeroShot = Callable[[Any, Any], Any]
WINDOW = 256  # tokens per scored window: fits every model's context, bounds the logits' memory
_base_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # base model -> {key: value}


def reference_text() -> str:
    return (files("tunewise.data") / "general_reference.txt").read_text(encoding="utf-8")


@torch.no_grad()
def perplexity(model, token_ids: list[int], window: int = WINDOW, batch_size: int = 2) -> float:
    """exp(mean next-token loss) over non-overlapping windows of `token_ids` (no gradients, batched)."""
    chunks = [token_ids[i:i + window] for i in range(0, len(token_ids), window)]
    chunks = [c for c in chunks if len(c) > 1]
    if not chunks:
        raise ValueError("perplexity needs at least two tokens")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()  # dropout off: the score must depend on the weights only
    total, count = 0.0, 0
    try:
        for start in range(0, len(chunks), batch_size):
            batch = chunks[start:start + batch_size]
            longest = max(map(len, batch))
            ids = torch.zeros(len(batch), longest, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for row, chunk in enumerate(batch):
                ids[row, :len(chunk)] = torch.tensor(chunk)
                mask[row, :len(chunk)] = 1
            ids, mask = ids.to(device), mask.to(device)
            # the last len(ids) positions: prompt tuning (PEFT) prepends virtual tokens to the logits
            logits = model(input_ids=ids, attention_mask=mask).logits[:, -ids.shape[1]:-1].float()
            targets = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
            total += torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100,
                reduction="sum").item()
            count += int((targets != -100).sum())
    finally:
        model.train(was_training)
    return math.exp(total / count)


def _cached(base_model, key: tuple, compute):
    per_model = _base_cache.setdefault(base_model, {})
    if key not in per_model:
        per_model[key] = compute()
    return per_model[key]


def second_task_score(backend, model, source: str, max_examples: int, seed: int, zero_shot: ZeroShot
                      ) -> tuple[str, float]:
    """(task name, primary metric) of zero-shot prompting with `model` on another task's test split."""
    from tunewise.data import load_task
    from tunewise.data.config import TaskConfig
    from tunewise.evaluation.metrics import evaluate

    task = load_task(TaskConfig(source=source, max_test_examples=max_examples), seed=seed)
    target = backend if model is backend.model else backend.with_model(model)
    preds = zero_shot(target, task).predict(task.test)
    metrics = evaluate(task, task.test, [p.output for p in preds], seed=seed, n_boot=1)
    return task.name, float(metrics[metrics["primary"]]["value"])


def measure_forgetting(backend, model, ctx, cfg, zero_shot: ZeroShot | None = None) -> dict[str, Any]:
    """Put `forgetting` = {ppl_before, ppl_after, ppl_change_pct, ..., seconds} into ctx.stats and return it.

    `backend.model` is the untouched base model (strategies train a `fresh_model()` copy); `model` is the
    fine-tuned one; `ctx` has `seed` and `stats`; `cfg` has the forgetting options. `zero_shot` builds the
    second task's predictor (needed only with `forgetting_task`). Backends without local weights (fake,
    APIs) have nothing to measure: {}. Raises ValueError when a second task is asked for without `zero_shot`.
    """
    base = backend.model
    if base is None or model is None:
        return {}
    max_tokens = getattr(cfg, "forgetting_max_tokens", 2048)
    ids = backend.encode(reference_text())[:max_tokens]
    source = getattr(cfg, "forgetting_task", None)
    if source and zero_shot is None:
        raise ValueError("a forgetting_task needs a zero-shot predictor factory")
    with Timer() as timer:
        before = _cached(base, ("ppl", len(ids), hash(tuple(ids))), lambda: perplexity(base, ids))
        after = perplexity(model, ids)
        result: dict[str, Any] = {
            "ppl_before": round(before, 4), "ppl_after": round(after, 4),
            "ppl_change_pct": round(100 * (after - before) / before, 3), "reference_tokens": len(ids)}
        if source:
            n = getattr(cfg, "forgetting_task_examples", 50)
            name, score_before = _cached(base, ("task", source, n, ctx.seed),
                                         lambda: second_task_score(backend, base, source, n, ctx.seed, zero_shot))
            _, score_after = second_task_score(backend, model, source, n, ctx.seed, zero_shot)
            result.update(second_task=name, second_task_before=score_before, second_task_after=score_after,
                          second_task_change=round(score_after - score_before, 4))
    result["seconds"] = round(timer.seconds, 3)  # measured after fit: not part of train_seconds
    ctx.stats["forgetting"] = result
    return result
