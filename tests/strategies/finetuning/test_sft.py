"""Instruction tuning: chat-template pairs, loss on the response only, LoRA or full weights, reload."""

from __future__ import annotations

import pytest
import torch

from tunewise.backends import load_backend
from tunewise.data import Example, Task
from tunewise.registry import strategies, strategy_config
from tunewise.runs.measure import measure_after_fit
from tunewise.strategies.base import FitContext
from tunewise.strategies.finetuning import _causal

FAST = {"epochs": 1, "batch_size": 4, "learning_rate": 5e-3, "early_stopping_patience": None,
        "forgetting": False}


@pytest.fixture(scope="module")
def causal(tiny_causal):
    return load_backend(tiny_causal, "causal", "cpu")


def _pairs_task() -> Task:
    pairs = [("Name a primary colour.", "Red."), ("What is two plus two?", "Four."),
             ("Say hello in French.", "Bonjour."), ("Give an antonym of hot.", "Cold."),
             ("What do bees make?", "Honey."), ("Name a planet.", "Mars.")]
    ex = [Example(id=str(i), input=q, target=a) for i, (q, a) in enumerate(pairs)]
    return Task(name="pairs", kind="generation", train=ex[:4], validation=ex[4:5], test=ex[5:],
                instruction="Answer briefly.")


def test_loss_is_on_the_response_only(causal):
    task = _pairs_task()
    rows = _causal.encode_examples(causal, task, task.train, 512, shared=[])
    for row, ex in zip(rows, task.train, strict=True):
        answer = [t for t in row["labels"] if t != _causal.IGNORE]
        assert causal.tokenizer.decode(answer).startswith(ex.target)
        n_prompt = row["labels"].index(answer[0])
        assert row["labels"][:n_prompt] == [_causal.IGNORE] * n_prompt
        assert ex.input in causal.tokenizer.decode(row["input_ids"][:n_prompt])
    with_system = _causal.encode_examples(causal, task, task.train[:1], 512)
    assert "Answer briefly." in causal.tokenizer.decode(with_system[0]["input_ids"])
    assert "Answer briefly." not in causal.tokenizer.decode(rows[0]["input_ids"])


def test_sft_lora_on_a_generation_task(causal, tmp_path):
    task = _pairs_task()
    cfg = strategy_config({"name": "sft", **FAST, "system": "none", "max_new_tokens": 4})
    ctx = FitContext(artifact_dir=tmp_path, seed=0)
    predictor = strategies()["sft"](cfg).fit(causal, task, ctx)
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    assert ctx.stats["response_tokens"] > 0 and ctx.stats["trainable_params"] < ctx.stats["total_params"]
    preds = predictor.predict(task.test)
    assert len(preds) == 1 and preds[0].completion_tokens > 0
    again = strategies()["sft"](cfg).load(causal, task, ctx)
    assert again.predict(task.test)[0].output == preds[0].output


def test_sft_full_weights_train_everything_and_reload(causal, small_task, tmp_path):
    cfg = strategy_config({"name": "sft", **FAST, "method": "full"})
    assert cfg.resolved().learning_rate == 5e-3
    assert strategy_config({"name": "sft", "method": "full"}).resolved().learning_rate == 2e-5
    seen = {}
    ctx = FitContext(artifact_dir=tmp_path, seed=0, on_train_start=lambda m: seen.update(
        trainable=sum(p.numel() for p in m.parameters() if p.requires_grad)))
    predictor = strategies()["sft"](cfg).fit(causal, small_task, ctx)
    assert seen["trainable"] == ctx.stats["total_params"]  # every weight trained
    assert (tmp_path / "model" / "config.json").is_file()
    again = strategies()["sft"](cfg).load(causal, small_task, ctx)
    ids = torch.tensor([causal.encode("the price was poor")])
    with torch.no_grad():
        assert torch.allclose(again.model(input_ids=ids).logits, predictor.model(input_ids=ids).logits, atol=1e-5)
    # the shared base model is untouched
    with torch.no_grad():
        assert not torch.allclose(causal.model(input_ids=ids).logits, predictor.model(input_ids=ids).logits)


def test_sft_records_forgetting(causal, small_task, tmp_path):
    cfg = strategy_config({"name": "sft", **FAST, "forgetting": True, "forgetting_max_tokens": 256})
    ctx = FitContext(artifact_dir=tmp_path, seed=0)
    strategy = strategies()["sft"](cfg)
    predictor = strategy.fit(causal, small_task, ctx)
    assert "forgetting" not in ctx.stats  # a measurement, not part of fit (nor of its train time)
    measure_after_fit(strategy, causal, predictor, ctx)  # what the run API does after every fit
    forgetting = ctx.stats["forgetting"]
    assert forgetting["reference_tokens"] == 256
    assert forgetting["ppl_before"] > 1 and forgetting["ppl_after"] > 1
    assert forgetting["ppl_after"] != forgetting["ppl_before"]
