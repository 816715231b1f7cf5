"""setfit on the tiny encoder: fits (the encoder changes, the head is trained), predicts every label with
probabilities, and reloads from its saved artifact with the same predictions; unsupported options are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from tunewise.backends import load_backend
from tunewise.registry import strategy_config
from tunewise.strategies.base import FitContext, fit_or_load
from tunewise.strategies.finetuning.setfit import SetFit


def test_setfit_fits_predicts_and_reloads(tiny_encoder, small_task, tmp_path):
    backend = load_backend(tiny_encoder, "encoder", "cpu")
    strategy = SetFit(strategy_config({"name": "setfit", "num_iterations": 2, "batch_size": 8,
                                       "learning_rate": 1e-3}))
    seen = {}

    def remember(body):
        seen["before"] = {n: p.detach().clone() for n, p in body.named_parameters() if p.requires_grad}

    ctx = FitContext(artifact_dir=tmp_path, seed=0, on_train_start=remember)
    predictor, fitted = fit_or_load(strategy, backend, small_task, ctx)
    assert fitted
    after = dict(predictor.model.named_parameters())
    assert any(not torch.equal(after[n].detach(), p) for n, p in seen["before"].items()), "the encoder did not train"
    preds = predictor.predict(small_task.test)
    assert len(preds) == len(small_task.test)
    assert all(p.output in small_task.labels for p in preds)
    assert all(abs(sum(p.scores.values()) - 1) < 1e-6 for p in preds)
    assert ctx.stats["train_examples"] == len(small_task.train) and ctx.stats["train_tokens"] > 0
    assert ctx.stats["trainable_params"] > 0 and ctx.stats["head_params"] == 32 + 1  # 2 labels: one weight row
    assert not (tmp_path / "checkpoints").exists() and not Path("checkpoints").exists()  # no stray checkpoints
    head = json.loads((tmp_path / "head.json").read_text())
    assert head["classes"] == [0, 1]  # no pickle in the artifact
    again = SetFit(strategy.config).load(backend, small_task, FitContext(artifact_dir=tmp_path, seed=0))
    for a, b in zip(preds, again.predict(small_task.test), strict=True):
        assert a.output == b.output
        for label in small_task.labels:
            assert a.scores[label] == pytest.approx(b.scores[label], abs=1e-5)


def test_setfit_refuses_options_it_does_not_have():
    with pytest.raises(ValidationError, match="early stopping"):
        strategy_config({"name": "setfit", "early_stopping_patience": 2})
    with pytest.raises(ValidationError, match="gradient_accumulation"):
        strategy_config({"name": "setfit", "gradient_accumulation": 4})
    with pytest.raises(ValidationError, match="weight_decay"):
        strategy_config({"name": "setfit", "weight_decay": 0.01})
