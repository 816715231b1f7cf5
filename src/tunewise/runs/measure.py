"""What the run API measures about a fitted predictor, after `fit` and apart from it.

Forgetting (reference-text perplexity of the base vs the fine-tuned model, and optionally a second task's
zero-shot score) is a measurement, not training: it runs here, after `fit` or after `load` on resume when
it is still missing, and its own wall time lands in `cost.details.forgetting.seconds`, never in
`train_seconds`. Strategies only declare the `forgetting*` options; this module reads them.
"""

from __future__ import annotations

import tempfile
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

