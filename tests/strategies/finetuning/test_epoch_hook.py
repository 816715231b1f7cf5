"""`FitContext.on_epoch`: the training path hands a search (Ray Tune's ASHA) the model's answers after every
epoch, on both fine-tuning skeletons (causal LM and encoder classifier)."""

from __future__ import annotations

import pytest

from tunewise.backends import load_backend
from tunewise.registry import strategies, strategy_config
from tunewise.strategies.base import FitContext

FAST = {"epochs": 2, "batch_size": 4, "learning_rate": 5e-3, "early_stopping_patience": None}


@pytest.mark.parametrize("name", ["lora", "head-only"])
def test_on_epoch_gets_the_answers_of_the_model_after_each_epoch(name, small_task, tmp_path, tiny_causal,
                                                                 tiny_encoder):
    cls = strategies()[name]
    backend = load_backend(tiny_causal if cls.backend_kind == "causal" else tiny_encoder, cls.backend_kind, "cpu")
    answers = []
    ctx = FitContext(artifact_dir=tmp_path, seed=0,
                     on_epoch=lambda answer: answers.append(answer(small_task.validation)))
    predictor = cls(strategy_config({"name": name, **FAST})).fit(backend, small_task, ctx)
    assert len(answers) == FAST["epochs"]
    assert all(len(a) == len(small_task.validation) and set(a) <= set(small_task.labels) for a in answers)
    # after the last epoch the model is the one the fit returns (no early stopping restores another)
    assert answers[-1] == [p.output for p in predictor.predict(small_task.validation)]

