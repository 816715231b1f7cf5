"""What the run API measures about a fitted predictor, after `fit` and apart from it.

Forgetting (reference-text perplexity of the base vs the fine-tuned model, and optionally a second task's
zero-shot score) is a measurement, not training: it runs here, after `fit` or after `load` on resume when
it is still missing, and its own wall time lands in `cost.details.forgetting.seconds`, never in
`train_seconds`. Strategies only declare the `forgetting*` options; this module reads them.

Serving latency is measured here too: what one query costs on the path `tunewise serve` runs for a
strategy (its predictor, one request at a time, warm), as opposed to the batched evaluation loop's
seconds per example. The report prices serving from it (`report/cost_model.py`).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tunewise.evaluation.forgetting import measure_forgetting
from tunewise.registry import get_strategy, strategy_config
from tunewise.strategies.base import FitContext, Predictor, Strategy, stored_labels


def zero_shot_predictor(backend, task) -> Predictor:
    """The registered zero-shot strategy with its defaults, fitted on `backend` (the second-task probe)."""
    strategy = get_strategy("zero-shot")(strategy_config("zero-shot"))
    with tempfile.TemporaryDirectory(prefix="tunewise-probe-") as tmp:  # zero-shot saves nothing
        return stored_labels(strategy.fit(backend, task.named(), FitContext(artifact_dir=Path(tmp), seed=0)), task)


def wants_forgetting(strategy: Strategy) -> bool:
    """A causal-LM fine-tune whose `forgetting` option is on (encoder models have no reference text)."""
    return strategy.backend_kind == "causal" and bool(getattr(strategy.config, "forgetting", False))


def measure_after_fit(strategy: Strategy, backend, predictor: Predictor, ctx: FitContext) -> dict[str, Any] | None:
    """Forgetting of `predictor.model` against `backend.model`, into `ctx.stats["forgetting"]` (with its own
    `seconds`); None when the strategy does not ask for it or it is already measured (a resumed fit)."""
    if not wants_forgetting(strategy) or "forgetting" in ctx.stats:
        return None
    return measure_forgetting(backend, getattr(predictor, "model", None), ctx, strategy.config,
                              zero_shot=zero_shot_predictor)



SERVING_QUERIES = 4  # single queries timed per cell (after one warm-up query)
SERVING_ENGINE = "tunewise serve (transformers), one query at a time"


def serving_latency(strategy: Strategy, predictor: Predictor, task, ctx: FitContext,
                    backends: Iterable[Any] = ()) -> dict[str, Any] | None:
    """Seconds per query of the predictor `tunewise serve` runs for this strategy, one query at a time
    (`SERVING_QUERIES` test inputs after a warm-up one), into `ctx.stats["serving"]` with the engine's name.
    None when any of `backends` (every backend the run has loaded) is not local weights: a remote model may be
    on the predictor's path, and extra queries to it would be paid (its latency is the provider's anyway);
    None too when already measured (a resumed fit) or when the task has no test examples."""
    if "serving" in ctx.stats or not task.test or any(not b.capabilities.local_weights for b in backends):
        return None
    examples = task.test[:SERVING_QUERIES + 1]
    predictor.predict(examples[:1])  # warm-up: first-call allocations are not what a running server pays
    start = time.perf_counter()
    for example in examples[1:] or examples:
        predictor.predict([example])
    seconds = (time.perf_counter() - start) / len(examples[1:] or examples)
    ctx.stats["serving"] = {"seconds_per_query": seconds, "queries": len(examples[1:] or examples),
                            "engine": SERVING_ENGINE}
    return ctx.stats["serving"]
