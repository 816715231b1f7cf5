"""Bottleneck adapters: identical to the base model at the start, trained after, saved and reloaded."""

from __future__ import annotations

import pytest
import torch

from tunewise.backends import load_backend
from tunewise.errors import UserError
from tunewise.registry import strategies, strategy_config
from tunewise.strategies.base import FitContext
from tunewise.strategies.finetuning._bottleneck import Bottleneck, adapter_state, add_bottlenecks

FAST = {"epochs": 2, "batch_size": 4, "learning_rate": 5e-3, "early_stopping_patience": None,
        "forgetting": False}


@pytest.fixture(scope="module")
def causal(tiny_causal):
    return load_backend(tiny_causal, "causal", "cpu")


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_zero_initialised_adapters_leave_the_model_unchanged(causal):
    ids = torch.tensor([causal.encode("the delivery was late and the box was broken")])
    base = _logits(causal.model, ids)
    model = causal.fresh_model()
    names = add_bottlenecks(model, placement="houlsby", reduction_factor=4)
    assert len(names) == 4  # 2 layers x (attention output + MLP output)
    assert torch.equal(_logits(model.eval(), ids), base)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".adapter." in n for n in trainable)
    assert set(adapter_state(model)) == trainable


def test_pfeiffer_adapts_only_the_mlp(causal):
    model = causal.fresh_model()
    names = add_bottlenecks(model, placement="pfeiffer")
    assert names and all(n.endswith("mlp.down_proj") for n in names)


def test_bottleneck_is_a_residual_that_learns():
    block = Bottleneck(8, 2)
    h = torch.randn(3, 8)
    assert torch.equal(block(h), h)
    torch.nn.init.normal_(block.up.weight)
    assert not torch.equal(block(h), h)


def test_adapters_train_save_and_reload(causal, small_task, tmp_path):
    # early stopping on: the best epoch's checkpoint (adapters included) is saved and restored by Trainer
    options = {**FAST, "reduction_factor": 4, "early_stopping_patience": 1}
    strategy = strategies()["adapters"](strategy_config({"name": "adapters", **options}))
    seen = {}
    ctx = FitContext(artifact_dir=tmp_path, seed=0,
                     on_train_start=lambda m: seen.update(before={n: t.clone() for n, t in adapter_state(m).items()}))
    predictor = strategy.fit(causal, small_task, ctx)
    after = adapter_state(predictor.model)
    changed = [n for n in after if not torch.equal(after[n], seen["before"][n])]
    assert len(changed) == len(after)  # every adapter tensor (up projections included) moved
    assert (tmp_path / "adapters" / "bottleneck.safetensors").is_file()
    assert ctx.stats["trainable_params"] == sum(t.numel() for t in after.values())
    ids = torch.tensor([causal.encode("the screen was awful")])
    assert not torch.equal(_logits(predictor.model, ids), _logits(causal.model, ids))
    again = strategy.load(causal, small_task, ctx)
    assert torch.allclose(_logits(again.model, ids), _logits(predictor.model, ids), atol=1e-5)
    assert strategy.load(causal, small_task, FitContext(tmp_path / "empty", 0)) is None


def test_unknown_target_module_is_a_one_line_error(causal, small_task, tmp_path):
    cfg = strategy_config({"name": "adapters", **FAST, "target_modules": ["nope"]})
    with pytest.raises(UserError, match="strategies.adapters.target_modules") as info:
        strategies()["adapters"](cfg).fit(causal, small_task, FitContext(tmp_path, 0))
    assert "\n" not in str(info.value)
