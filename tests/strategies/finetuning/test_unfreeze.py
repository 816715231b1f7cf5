"""Whole-model strategies: gradual-unfreeze follows its schedule (groups unfreeze at their epoch, change only
after it, frozen ones never move), and full-finetune also trains the causal LM when asked to."""

from __future__ import annotations

import pytest
import torch

from tunewise.backends import load_backend
from tunewise.config import parse_config
from tunewise.errors import UserError
from tunewise.registry import strategies, strategy_config
from tunewise.runs.measure import measure_after_fit
from tunewise.strategies.base import FitContext
from tunewise.strategies.finetuning import _encoder, _lm_fit
from tunewise.strategies.finetuning.gradual_unfreeze import layer_groups, start_epochs

FAST = {"batch_size": 4, "learning_rate": 5e-3, "early_stopping_patience": None}


@pytest.fixture(scope="module")
def backends(tiny_causal, tiny_encoder):
    return {"causal": load_backend(tiny_causal, "causal", "cpu"),
            "encoder": load_backend(tiny_encoder, "encoder", "cpu")}


def _recorder(log: list):
    """Records, at every epoch end, which groups were trainable and a copy of every group's weights."""
    from transformers import TrainerCallback

    class Record(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kw):
            self.groups = layer_groups(model, "causal" if hasattr(model, "lm_head") else "encoder")
            log.append(("start", None, self._weights()))

        def on_epoch_end(self, args, state, control, **kw):
            trainable = [name for name, ps in self.groups if all(p.requires_grad for p in ps)]
            log.append(("epoch", trainable, self._weights()))

        def _weights(self):
            return {name: [p.detach().clone() for p in ps] for name, ps in self.groups}

    return Record()


def _with_recorder(monkeypatch, log: list) -> None:
    for module in (_encoder, _lm_fit):  # the encoder path calls train() in _encoder, the causal path in _lm_fit
        real = module.train

        def spy(*args, real=real, callbacks=None, **kwargs):
            return real(*args, callbacks=list(callbacks or []) + [_recorder(log)], **kwargs)

        monkeypatch.setattr(module, "train", spy)


def _changed(a: list, b: list) -> bool:
    return any(not torch.equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "expected"), [
    # 3 epochs of 4 groups: the embeddings (due at epoch 3) never unfreeze
    ("encoder", [["head"], ["head", "layer 1"], ["head", "layer 1", "layer 0"]]),
    # the causal LM starts with its top layer; 2 epochs of 3 groups
    ("causal", [["head + layer 1"], ["head + layer 1", "layer 0"]]),
])
def test_groups_unfreeze_one_per_epoch_from_the_top(kind, expected, backends, small_task, tmp_path, monkeypatch):
    log: list = []
    _with_recorder(monkeypatch, log)
    cfg = strategy_config({"name": "gradual-unfreeze", "model": kind, "epochs": len(expected), **FAST})
    strategy = strategies()["gradual-unfreeze"](cfg)
    assert strategy.backend_kind == kind
    ctx = FitContext(artifact_dir=tmp_path, seed=0)
    predictor = strategy.fit(backends[kind], small_task, ctx)
    assert [trainable for step, trainable, _ in log if step == "epoch"] == expected
    weights = [w for _, _, w in log]  # at the start, then after each epoch
    for name in weights[0]:
        first = next((i for i, names in enumerate(expected) if name in names), None)
        for epoch in range(len(expected)):
            moved = _changed(weights[epoch][name], weights[epoch + 1][name])
            assert moved == (first is not None and epoch >= first), (name, epoch)
    assert "embeddings" in weights[0]  # ... and, never unfrozen, they never moved (checked above)
    assert ctx.stats["unfreeze_schedule"] == {names[-1]: i for i, names in enumerate(expected)}
    again = strategy.load(backends[kind], small_task, ctx).predict(small_task.test)
    assert [p.output for p in again] == [p.output for p in predictor.predict(small_task.test)]


def test_explicit_schedule_and_groups(backends, small_task):
    model = backends["encoder"].classifier(small_task.labels)
    groups = layer_groups(model, "encoder")
    assert [name for name, _ in groups] == ["head", "layer 1", "layer 0", "embeddings"]
    assert any(p is model.classifier.weight for p in groups[0][1])
    n_params = sum(p.numel() for _, ps in groups for p in ps)
    assert n_params == sum(p.numel() for p in model.parameters())  # every weight is in exactly one group
    cfg = strategy_config({"name": "gradual-unfreeze", "schedule": [2, 5]})
    assert start_epochs(4, cfg) == [0, 2, 5, float("inf")]
    assert start_epochs(4, strategy_config({"name": "gradual-unfreeze", "unfreeze_every": 2})) == [0, 2, 4, 6]


@pytest.mark.parametrize(("options", "key"), [
    ({"name": "gradual-unfreeze", "schedule": [3, 1]}, "strategies[0].schedule"),
    ({"name": "gradual-unfreeze", "unfreeze_every": 0}, "strategies[0].unfreeze_every"),
    ({"name": "gradual-unfreeze", "model": "decoder"}, "strategies[0].model"),
    ({"name": "full-finetune", "model": "causal", "learning_rate": -1}, "strategies[0].learning_rate"),
])
def test_bad_options_name_the_option(options, key):
    with pytest.raises(UserError) as info:
        parse_config({"strategies": [options]}, "exp.yaml")
    assert key in str(info.value) and "\n" not in str(info.value)


def test_per_model_defaults_and_backend_kind():
    causal = strategy_config({"name": "full-finetune", "model": "causal"})
    assert causal.learning_rate == 2e-5 and causal.max_length == 256
    assert strategy_config(causal.model_dump(mode="json")) == causal
    assert strategy_config({"name": "full-finetune", "model": "causal", "learning_rate": 1e-4}).learning_rate == 1e-4
    assert strategy_config("full-finetune").learning_rate == 1e-4
    full = strategies()["full-finetune"]
    assert full(causal).backend_kind == "causal" and "generation" in full(causal).task_kinds
    assert full(strategy_config("full-finetune")).backend_kind == "encoder"
    assert full.backend_kind == "encoder"  # the class default is untouched


@pytest.mark.slow
def test_full_finetune_on_the_causal_lm(backends, small_task, tmp_path, tiny_causal):
    from transformers import AutoModelForCausalLM

    strategy = strategies()["full-finetune"](strategy_config(
        {"name": "full-finetune", "model": "causal", "epochs": 1, **FAST}))
    seen = {}

    def remember(model):
        seen["model"], seen["before"] = model, {n: p.detach().clone() for n, p in model.named_parameters()}

    ctx = FitContext(artifact_dir=tmp_path, seed=0, on_train_start=remember)
    predictor = strategy.fit(backends["causal"], small_task, ctx)
    preds = predictor.predict(small_task.test)
    measure_after_fit(strategy, backends["causal"], predictor, ctx)  # what the run API does after every fit
    after = dict(seen["model"].named_parameters())
    assert all(p.requires_grad for p in after.values())
    assert all(not torch.equal(after[n].detach(), seen["before"][n]) for n in after)
    assert ctx.stats["trainable_params"] == ctx.stats["total_params"]
    assert ctx.stats["forgetting"]["ppl_change_pct"] != 0
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "model")  # a whole model, plain transformers
    assert sum(p.numel() for p in plain.parameters()) == ctx.stats["total_params"]
    again = strategy.load(backends["causal"], small_task, ctx).predict(small_task.test)
    for a, b in zip(preds, again, strict=True):
        assert a.output == b.output
        assert a.scores[a.output] == pytest.approx(b.scores[b.output], abs=1e-4)
    base = backends["causal"].model  # the shared model is untouched
    assert torch.equal(base.model.embed_tokens.weight, AutoModelForCausalLM.from_pretrained(
        tiny_causal).model.embed_tokens.weight)
