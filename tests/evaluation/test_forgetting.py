"""Forgetting score: reference-text perplexity (and a second task) before vs after a weight change."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from conftest import ROOT
from tunewise.backends import load_backend
from tunewise.evaluation import forgetting
from tunewise.evaluation.forgetting import measure_forgetting, perplexity, reference_text
from tunewise.registry import strategies, strategy_config
from tunewise.runs.measure import measure_after_fit, zero_shot_predictor
from tunewise.strategies.base import FitContext
from tunewise.strategies.finetuning._causal import CausalTrainConfig


@pytest.fixture(scope="module")
def causal(tiny_causal):
    return load_backend(tiny_causal, "causal", "cpu")


def _cfg(**kw) -> CausalTrainConfig:
    return CausalTrainConfig(**{"name": "probe", "forgetting_max_tokens": 300, **kw})


def _perturbed(backend, scale: float = 0.5):
    model = backend.fresh_model()
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * scale * p.std())
    return model


def test_reference_text_is_shipped_general_prose():
    text = reference_text()
    words = len(text.split())
    assert 3000 <= words <= 5000
    assert len({p.split()[0] for p in text.split("\n\n")}) > 20  # many different paragraphs
    root = ROOT
    package_data = (root / "pyproject.toml").read_text().split("[tool.setuptools.package-data]")[1]
    assert '"data/*.txt"' in package_data.split("[")[1]  # the wheel ships it


def test_perplexity_is_finite_and_batching_does_not_change_it(causal):
    ids = causal.encode(reference_text())[:300]
    one = perplexity(causal.model, ids, window=64, batch_size=1)
    many = perplexity(causal.model, ids, window=64, batch_size=4)
    assert 1 < one < 10 * len(causal.tokenizer)  # a random tiny model is near uniform over the vocab
    assert many == pytest.approx(one, rel=1e-4)
    with pytest.raises(ValueError):
        perplexity(causal.model, ids[:1])


def test_same_weights_no_forgetting_changed_weights_some(causal, tmp_path):
    ctx = FitContext(artifact_dir=tmp_path, seed=0)
    same = measure_forgetting(causal, causal.fresh_model(), ctx, _cfg())
    assert same["ppl_before"] == pytest.approx(same["ppl_after"], rel=1e-5)
    assert same["ppl_change_pct"] == pytest.approx(0, abs=1e-3)
    assert same["reference_tokens"] == 300
    changed = measure_forgetting(causal, _perturbed(causal), ctx, _cfg())
    assert changed["ppl_before"] == same["ppl_before"]  # the base is measured once, then cached
    assert changed["ppl_after"] != changed["ppl_before"]
    assert changed["ppl_change_pct"] == pytest.approx(
        100 * (changed["ppl_after"] - changed["ppl_before"]) / changed["ppl_before"], abs=1e-2)
    assert ctx.stats["forgetting"] == changed


def test_base_perplexity_is_cached_per_base_model(causal, tmp_path, monkeypatch):
    calls = []
    real = forgetting.perplexity
    monkeypatch.setattr(forgetting, "perplexity", lambda m, ids, **kw: calls.append(m) or real(m, ids, **kw))
    cfg = _cfg(forgetting_max_tokens=128)
    for _ in range(2):
        measure_forgetting(causal, causal.fresh_model(), FitContext(tmp_path, 0), cfg)
    assert sum(m is causal.model for m in calls) == 1 and len(calls) == 3


def test_second_task_accuracy_before_and_after(causal, sentiment_csv, tmp_path):
    cfg = _cfg(forgetting_task=str(sentiment_csv), forgetting_task_examples=6)
    with pytest.raises(ValueError, match="zero-shot"):  # the predictor must come from the caller (run API)
        measure_forgetting(causal, _perturbed(causal, 2.0), FitContext(tmp_path, 0), cfg)
    result = measure_forgetting(causal, _perturbed(causal, 2.0), FitContext(tmp_path, 0), cfg,
                                zero_shot=zero_shot_predictor)
    assert result["second_task"] == "sentiment"
    assert 0 <= result["second_task_before"] <= 1 and 0 <= result["second_task_after"] <= 1
    # the change is stored rounded to 4 decimals
    assert result["second_task_change"] == pytest.approx(result["second_task_after"] - result["second_task_before"],
                                                         abs=1e-4)


def _strategy(name: str, **options):
    return strategies()[name](strategy_config({"name": name, "forgetting_max_tokens": 300, **options}))


def test_measure_after_fit_honours_the_switch_encoders_and_fake_backends(causal, tmp_path):
    ctx = FitContext(tmp_path, 0)
    fitted = SimpleNamespace(model=causal.fresh_model())  # what a causal fine-tune's predictor carries
    assert measure_after_fit(_strategy("lora", forgetting=False), causal, fitted, ctx) is None
    assert "forgetting" not in ctx.stats
    assert measure_after_fit(_strategy("full-finetune"), causal, fitted, ctx) is None  # encoder: nothing
    assert "forgetting" not in ctx.stats
    measured = measure_after_fit(_strategy("lora"), causal, fitted, ctx)
    assert "ppl_after" in ctx.stats["forgetting"] and measured == ctx.stats["forgetting"]
    assert measured["seconds"] >= 0
    assert measure_after_fit(_strategy("lora"), causal, fitted, ctx) is None  # measured once (resume)
    assert measure_forgetting(load_backend("fake", "causal"), None, FitContext(tmp_path, 0), _cfg()) == {}


def test_a_missing_second_task_fails_at_config_time(tmp_path):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="file not found"):
        _cfg(forgetting_task=str(tmp_path / "nope.csv"))
    assert _cfg(forgetting_task="demo").forgetting_task == "demo"
