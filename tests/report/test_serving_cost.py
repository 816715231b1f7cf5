"""The report prices a local model from the serving path (one query at a time, as `tunewise serve` runs it)
when the run measured it, and says which path a latency came from (report/cost_model.py, runs/measure.py)."""

from __future__ import annotations

import pytest

from tunewise.config import PricesConfig
from tunewise.report.cost_model import BATCHED, strategy_cost
from tunewise.runs.measure import SERVING_ENGINE, serving_latency
from tunewise.strategies.base import FitContext, Prediction, Predictor


def result(**details):
    cost = {"train_seconds": 0.0, "train_tokens": 0, "prompt_tokens_per_example": 10,
            "completion_tokens_per_example": 1, "seconds_per_example": 0.002, "details": details}
    return {"strategy": "s", "name": "s", "family": "prompting", "cost": cost,
            "metrics": {"primary": "accuracy", "accuracy": {"value": 0.9, "low": 0.8, "high": 0.95}}}


def test_local_cost_per_query_comes_from_the_serving_path():
    prices = PricesConfig(cpu_per_hour=3.6)  # $0.001 per second
    served = strategy_cost(result(serving={"seconds_per_query": 0.05, "engine": SERVING_ENGINE}), "tiny", prices,
                           gpu=False)
    assert served.latency_s == 0.05 and served.latency_from == SERVING_ENGINE
    assert served.per_1k_usd == pytest.approx(1000 * 0.05 * 0.001)
    batched = strategy_cost(result(), "tiny", prices, gpu=False)  # a run stored before serving was measured
    assert batched.latency_s == 0.002 and batched.latency_from == BATCHED
    assert batched.per_1k_usd == pytest.approx(1000 * 0.002 * 0.001)


def test_api_models_keep_their_token_prices():
    priced = strategy_cost(result(serving={"seconds_per_query": 9.0}), "openai:gpt-4o-mini", PricesConfig(),
                           gpu=False)
    assert priced.latency_from == BATCHED and priced.latency_s == 0.002


class Counting(Predictor):
    def __init__(self):
        self.batches: list[int] = []

    def predict(self, examples, on_batch=None):
        self.batches.append(len(examples))
        return [Prediction(output="a") for _ in examples]


def test_serving_latency_times_single_queries_after_a_warm_up(small_task, tmp_path):
    class Strategy:
        family = "prompting"

    predictor, ctx = Counting(), FitContext(artifact_dir=tmp_path, seed=0)
    measured = serving_latency(Strategy(), predictor, small_task, ctx)
    assert predictor.batches == [1, 1, 1, 1, 1]  # warm-up, then 4 queries one at a time
    assert ctx.stats["serving"] is measured and measured["queries"] == 4 and measured["seconds_per_query"] >= 0
    assert serving_latency(Strategy(), predictor, small_task, ctx) is None  # a resumed fit keeps its figure


def test_no_serving_queries_when_a_remote_model_is_loaded(small_task, tmp_path):
    """Extra queries to an API would be paid: with any non-local backend in the run, nothing is measured."""
    from tunewise.backends.fake import FakeBackend

    class Strategy:
        family = "prompting"

    predictor, ctx = Counting(), FitContext(artifact_dir=tmp_path, seed=0)
    assert serving_latency(Strategy(), predictor, small_task, ctx, [FakeBackend()]) is None
    assert predictor.batches == [] and "serving" not in ctx.stats
