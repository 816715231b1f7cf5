"""Cost model: prices from config, costs per strategy, Pareto front and break-even on hand-computed numbers."""

from __future__ import annotations

import pytest

from tunewise.config import ConstraintsConfig, ExperimentConfig, PricesConfig, parse_config
from tunewise.errors import UserError
from tunewise.prices import DEFAULT_API_PRICES, api_price
from tunewise.report import fmt
from tunewise.report.cost_model import (
    StrategyCost,
    break_even,
    break_evens,
    pareto_front,
    strategy_cost,
)


def cost(name, one_off, per_1k, quality=0.8, family="finetuning", latency=0.01):
    return StrategyCost(name, family, quality, quality - 0.05, quality + 0.05, one_off, per_1k, latency, "test")


def result(family="finetuning", **c):
    base = {"train_seconds": 0.0, "train_tokens": 0, "prompt_tokens_per_example": 0,
            "completion_tokens_per_example": 0, "seconds_per_example": 0.0}
    return {"strategy": "s", "name": "s", "family": family, "cost": {**base, **c},
            "metrics": {"primary": "accuracy", "accuracy": {"value": 0.9, "low": 0.8, "high": 0.95}}}


def test_break_even_by_hand():
    # lora: $2.00 up front, $0.30 per 1,000; few-shot: $0, $0.80 per 1,000.
    # 2.00 + 0.0003 N = 0.0008 N  ->  N = 2.00 / 0.0005 = 4,000 queries
    lora, few = cost("lora", 2.0, 0.30), cost("few-shot", 0.0, 0.80, family="prompting")
    assert break_even(lora, few) == pytest.approx(4000)
    assert break_even(few, lora) == pytest.approx(4000)
    assert lora.total(4000) == pytest.approx(few.total(4000)) == pytest.approx(3.2)
    [row] = break_evens([lora, few], ["lora", "few-shot"])
    assert row["pays_off"] == "lora" and row["versus"] == "few-shot"
    assert row["sentence"] == "lora costs $2.00 up front and becomes cheaper than few-shot after 4,000 queries"


def test_break_even_none_when_one_is_cheaper_at_every_volume():
    assert break_even(cost("a", 1.0, 0.5), cost("b", 2.0, 0.9)) is None  # a cheaper up front and per query
    assert break_even(cost("a", 1.0, 0.5), cost("b", 1.0, 0.5)) is None
    assert break_even(cost("a", 0.0, 0.5), cost("b", 0.0, 0.9)) is None


def test_break_even_below_one_query_is_no_break_even():
    # a costs $0.00005 more up front and saves $0.0001 per query: it is cheaper from the first query on.
    a, b = cost("a", 0.00005, 0.4), cost("b", 0.0, 0.5)
    assert break_even(a, b) is None
    assert break_evens([a, b], among=["a", "b"]) == []
    assert break_even(cost("a", 0.0002, 0.4), cost("b", 0.0, 0.5)) == pytest.approx(2)


def test_monthly_cost_spreads_the_one_off():
    c = cost("lora", 12.0, 0.50)
    assert c.monthly(10_000, 12) == pytest.approx(10 * 0.50 + 1.0)


def test_pareto_front_uses_quality_one_off_and_per_query():
    few = cost("few-shot", 0.0, 0.80, quality=0.80, family="prompting")
    lora = cost("lora", 2.0, 0.30, quality=0.85)
    worse = cost("head-only", 2.5, 0.40, quality=0.60)  # beaten by lora on all three
    zero = cost("zero-shot", 0.0, 0.50, quality=0.50, family="prompting")  # cheaper per query than few-shot
    assert pareto_front([few, lora, worse, zero]) == ["few-shot", "lora", "zero-shot"]


def test_local_strategy_priced_by_hardware_time():
    prices = PricesConfig()
    cpu = strategy_cost(result(train_seconds=3600, seconds_per_example=0.036), "smollm2-135m-instruct", prices, False)
    assert cpu.one_off_usd == pytest.approx(0.10)  # one hour at $0.10
    assert cpu.per_1k_usd == pytest.approx(0.001)  # 36 s per 1,000 queries
    assert cpu.priced_as == "CPU at $0.10/hour"
    gpu = strategy_cost(result(train_seconds=900), "smollm2-135m-instruct", prices, True)
    assert gpu.one_off_usd == pytest.approx(1.0)  # 15 minutes at the default $4/hour
    power = PricesConfig(electricity_per_kwh=0.25)  # 400 W x $0.25/kWh = $0.10/hour more
    assert strategy_cost(result(train_seconds=3600), "m", power, True).one_off_usd == pytest.approx(4.10)


def test_api_strategy_priced_by_tokens():
    prices = PricesConfig()
    few = strategy_cost(result("prompting", prompt_tokens_per_example=1000, completion_tokens_per_example=10),
                        "gpt-4o-mini", prices, False)
    assert few.per_1k_usd == pytest.approx(1000 * (1000 * 0.15 + 10 * 0.60) / 1e6)
    assert few.one_off_usd == 0 and few.priced_as == "API gpt-4o-mini"
    tuned = strategy_cost(result(train_tokens=1_000_000, prompt_tokens_per_example=1000,
                                 completion_tokens_per_example=10), "openai:gpt-4o-mini", prices, False)
    assert tuned.one_off_usd == pytest.approx(3.00)  # 1M training tokens at $3/M
    assert tuned.per_1k_usd == pytest.approx(1000 * (1000 * 0.30 + 10 * 1.20) / 1e6)  # fine-tuned prices
    no_training = strategy_cost(result(train_tokens=10), "gpt-5", prices, False)
    assert no_training.one_off_usd == 0 and no_training.notes
    unknown = strategy_cost(result("prompting", seconds_per_example=1.0), "openai:llama3?base_url=x", prices, False)
    assert unknown.per_1k_usd == 0 and "add it under prices: api:" in unknown.priced_as


def test_api_price_matches_snapshots_and_fine_tuned_names():
    table = PricesConfig().api
    assert api_price("gpt-4o-mini-2024-07-18", table)[0] == "gpt-4o-mini"
    assert api_price("ft:gpt-4o-mini-2024-07-18:acme::abc123", table)[:3:2] == ("gpt-4o-mini", True)
    assert api_price("openai:gpt-4o", table)[0] == "gpt-4o"
    assert api_price("openai:gpt-4o-mini?base_url=https://example.test/v1", table)[0] == "gpt-4o-mini"
    assert api_price("smollm2-135m-instruct", table) is None
    assert api_price("/models/gpt-4o-local-copy", table) is None


def test_prices_and_constraints_in_the_config():
    cfg = ExperimentConfig()
    assert set(DEFAULT_API_PRICES) <= set(cfg.prices.api) and cfg.prices.gpu_per_hour == 4.0
    assert cfg.constraints == ConstraintsConfig()
    custom = parse_config({"prices": {"gpu_per_hour": 2.5, "api": {"my-model": {"input": 1, "output": 2}}},
                           "constraints": {"min_quality": 0.9, "monthly_queries": 50000}})
    assert custom.prices.api["my-model"].input == 1 and "gpt-4o" in custom.prices.api  # merged with defaults
    assert custom.constraints.min_quality == 0.9
    for field in (*PricesConfig.model_fields.values(), *ConstraintsConfig.model_fields.values()):
        assert field.description


@pytest.mark.parametrize("bad,words", [
    ({"prices": {"gpu_per_hr": 3}}, ["prices.gpu_per_hr", "gpu_per_hour"]),
    ({"constraints": {"min_quality": 85}}, ["constraints.min_quality", "1"]),
    ({"constraints": {"monthly_querys": 5}}, ["constraints.monthly_querys", "monthly_queries"]),
    ({"prices": {"api": {"x": {"input": 1}}}}, ["prices.api.x.output"]),
])
def test_bad_prices_and_constraints_name_the_key(bad, words):
    with pytest.raises(UserError) as err:
        parse_config(bad)
    assert all(w in str(err.value) for w in words), str(err.value)


def test_formatting_keeps_units():
    assert fmt.money(0.23) == "$0.23" and fmt.money(1234.5) == "$1,234" and fmt.money(0.00042) == "$0.00042"
    assert fmt.money(0) == "$0" and fmt.money(1e-7) == "under $0.0001"
    assert fmt.count(41234) == "41,000" and fmt.count(1_234_567) == "1.2 million" and fmt.count(830) == "830"
    assert fmt.interval({"value": 0.861, "low": 0.806, "high": 0.917}) == "86.1% (95% CI 80.6%–91.7%)"
