"""The embedded default models, loaded offline from their PyPI packages (marked slow: seconds each)."""

from __future__ import annotations

import numpy as np
import pytest

from tunewise.backends import load_backend
from tunewise.backends.embedded import MINILM, SMOLLM2, cache_root
from tunewise.backends.scoring import score_continuations_naive
from tunewise.config import TaskConfig
from tunewise.data import load_task
from tunewise.registry import strategies, strategy_config
from tunewise.strategies.base import FitContext

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2():
    return load_backend(SMOLLM2, "causal", "cpu")


def test_smollm2_is_dequantised_once_and_cached(smollm2):
    cached = cache_root() / "models" / SMOLLM2
    assert (cached / "model.safetensors").is_file() and (cached / "config.json").is_file()
    assert "quantization_config" not in (cached / "config.json").read_text()
    assert 130e6 < smollm2.count_parameters() < 140e6
    assert smollm2.end_of_turn() == "<|im_end|>"


def test_smollm2_answers_a_question(smollm2):
    prompt = smollm2.render([{"role": "user", "content": "What is the capital of France?"}], True)
    (text, n), = smollm2.generate([prompt], max_new_tokens=12)
    assert "Paris" in text and 0 < n <= 12


def test_cached_scoring_equals_naive_on_the_real_model(smollm2):
    shared = [{"role": "system", "content": "Classify the review as positive or negative."},
              {"role": "user", "content": "I loved it"}, {"role": "assistant", "content": "positive"}]
    prefix, suffix = smollm2.split_prompt(shared, [{"role": "user", "content": "Terrible, broke in a day."}])
    labels = ["positive<|im_end|>", "negative<|im_end|>"]
    fast = smollm2.score(prefix, [suffix], labels)
    slow = score_continuations_naive(smollm2.model, smollm2.encode(prefix), [smollm2.encode(suffix)],
                                     [smollm2.encode(c) for c in labels])
    np.testing.assert_allclose(fast, slow, atol=2e-3)
    assert fast[0, 1] > fast[0, 0]  # the model knows this one


def test_minilm_embeds_offline():
    enc = load_backend(MINILM, "encoder", "cpu")
    vecs = enc.embed(["where is my parcel", "has my order shipped yet", "I forgot my password"])
    assert vecs.shape == (3, 384)
    assert float(vecs[0] @ vecs[1]) > float(vecs[0] @ vecs[2])


def test_few_shot_beats_chance_on_the_demo(smollm2, tmp_path):
    task = load_task(TaskConfig(source="demo"), seed=0, limit=24)
    predictor = strategies()["few-shot"](strategy_config("few-shot")).fit(smollm2, task, FitContext(tmp_path, 0))
    preds = predictor.predict(task.test)
    accuracy = np.mean([p.output == e.target for p, e in zip(preds, task.test, strict=True)])
    assert accuracy > 2 / len(task.labels)  # chance is 1/8
