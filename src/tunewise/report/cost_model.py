"""Cost model: turn measured time and tokens into money, find the Pareto front and break-even volumes.

Every strategy gets a one-off cost (training) and a cost per query; total cost after N queries is
`one_off + N * per_query`, so two strategies cross at most once. The prices are configurable
(`prices:` in the experiment config); the dated defaults and the price lookup are in `tunewise.prices`.

Local models are priced from the serving path a user would run: the seconds per query of the strategy's
predictor one query at a time, as `tunewise serve` runs it (`cost.details.serving`, measured by
`runs/measure.py`); a run stored before that was measured falls back to the batched evaluation loop's
seconds per example. `latency_from` says which one a figure came from.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from tunewise.prices import API_PREFIXES, PricesConfig, api_price
from tunewise.report import fmt

BATCHED = "the batched evaluation loop"


def serving_seconds(cost: dict[str, Any]) -> tuple[float, str] | None:
    """(seconds per query, where from) of the serving path, when the run measured it."""
    serving = (cost.get("details") or {}).get("serving") or {}
    if serving.get("seconds_per_query") is None:
        return None
    return serving["seconds_per_query"], serving.get("engine", "the serving path")


@dataclass
class StrategyCost:
    strategy: str
    family: str
    quality: float  # primary metric, 0..1
    quality_low: float
    quality_high: float
    one_off_usd: float  # training: hardware time, or API training tokens
    per_1k_usd: float  # serving 1,000 queries
    latency_s: float  # seconds per query: serving path when measured, else the batched evaluation loop's
    priced_as: str  # "API gpt-4o-mini", "CPU at $0.10/hour", ...
    train_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    latency_from: str = BATCHED  # where latency_s (and a local model's cost per query) comes from

    @property
    def per_query_usd(self) -> float:
        return self.per_1k_usd / 1000

    def total(self, queries: float) -> float:
        return self.one_off_usd + queries * self.per_query_usd

    def monthly(self, queries_per_month: float, horizon_months: int) -> float:
        """Running cost per month plus the one-off cost spread over the horizon."""
        return queries_per_month * self.per_query_usd + self.one_off_usd / horizon_months

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def hourly_price(prices: PricesConfig, gpu: bool) -> tuple[float, str]:
    """USD per hour of the local hardware, electricity included when priced."""
    base = prices.gpu_per_hour if gpu else prices.cpu_per_hour
    label = f"{'GPU' if gpu else 'CPU'} at {fmt.money(base)}/hour"
    if prices.electricity_per_kwh is not None:
        watts = prices.gpu_watts if gpu else prices.cpu_watts
        energy = watts / 1000 * prices.electricity_per_kwh
        base += energy
        label += f" + {fmt.money(energy)}/hour of electricity"
    return base, label


def strategy_cost(result: dict[str, Any], model: str | None, prices: PricesConfig, gpu: bool) -> StrategyCost:
    """The cost profile of one finished strategy; `model` is the backend model it ran on."""
    metrics, cost = result["metrics"], result["cost"]
    q = metrics[metrics["primary"]]
    prompt, completion = cost.get("prompt_tokens_per_example", 0), cost.get("completion_tokens_per_example", 0)
    train_s, sec = cost.get("train_seconds") or 0.0, cost.get("seconds_per_example") or 0.0
    api = api_price(model, prices.api) if model else None
    notes: list[str] = []
    if api is None and model and model.lower().startswith(API_PREFIXES):  # an API model missing from the table
        name = model.split("?", 1)[0]
        notes.append(f"no price for {name}: add it under prices: api: in the config")
        return StrategyCost(strategy=result["strategy"], family=result["family"], quality=q["value"],
                            quality_low=q["low"], quality_high=q["high"], one_off_usd=0.0, per_1k_usd=0.0,
                            latency_s=sec, priced_as=f"API {name} at $0 (no price given; add it under prices: api:)",
                            train_seconds=train_s, notes=notes)
    if api is not None:
        key, price, tuned = api
        tuned = tuned or result["family"] == "finetuning"
        p_in = (price.finetuned_input if tuned and price.finetuned_input is not None else price.input)
        p_out = (price.finetuned_output if tuned and price.finetuned_output is not None else price.output)
        per_1k = 1000 * (prompt * p_in + completion * p_out) / 1e6
        one_off = 0.0
        if result["family"] == "finetuning":
            if price.training is None:
                notes.append(f"no training price for {key}; one-off cost counted as $0")
            else:
                one_off = (cost.get("train_tokens") or 0) * price.training / 1e6
        priced_as = f"API {key}"
    else:
        hourly, priced_as = hourly_price(prices, gpu)
        one_off = train_s * hourly / 3600
        sec, source = serving_seconds(cost) or (sec, BATCHED)
        per_1k = 1000 * sec * hourly / 3600
        return StrategyCost(strategy=result["strategy"], family=result["family"], quality=q["value"],
                            quality_low=q["low"], quality_high=q["high"], one_off_usd=one_off, per_1k_usd=per_1k,
                            latency_s=sec, priced_as=priced_as, train_seconds=train_s, notes=notes,
                            latency_from=source)
    return StrategyCost(strategy=result["strategy"], family=result["family"], quality=q["value"],
                        quality_low=q["low"], quality_high=q["high"], one_off_usd=one_off, per_1k_usd=per_1k,
                        latency_s=sec, priced_as=priced_as, train_seconds=train_s, notes=notes)


def pareto_front(costs: list[StrategyCost]) -> list[str]:
    """Strategies no other one beats on quality, one-off cost and cost per query at once.

    One-off cost is an objective alongside cost per query: with cost per query alone, every strategy
    with no training cost would be dropped as soon as a fine-tuned one is cheaper per query, and there
    would be nothing left to compute a break-even volume against.
    """
    def dominates(a: StrategyCost, b: StrategyCost) -> bool:
        ge = a.quality >= b.quality and a.one_off_usd <= b.one_off_usd and a.per_1k_usd <= b.per_1k_usd
        gt = a.quality > b.quality or a.one_off_usd < b.one_off_usd or a.per_1k_usd < b.per_1k_usd
        return ge and gt
    return [c.strategy for c in costs if not any(dominates(o, c) for o in costs if o is not c)]


def break_even(a: StrategyCost, b: StrategyCost) -> float | None:
    """Queries after which the strategy with the larger one-off cost becomes the cheaper one in total;
    None when one of them is cheaper (or as cheap) at every volume, or from the first query on (a crossing
    below one query is no break-even anyone can act on)."""
    d_up, d_q = a.one_off_usd - b.one_off_usd, b.per_query_usd - a.per_query_usd
    if d_up == 0 or d_q == 0 or (d_up > 0) != (d_q > 0) or d_up / d_q < 1:
        return None
    return d_up / d_q


def break_evens(costs: list[StrategyCost], among: list[str] | None = None) -> list[dict[str, Any]]:
    """Every crossing between pairs of `among` (default: the Pareto front), in plain words."""
    names = among if among is not None else pareto_front(costs)
    chosen = [c for c in costs if c.strategy in names]
    out = []
    for i, a in enumerate(chosen):
        for b in chosen[i + 1:]:
            n = break_even(a, b)
            if n is None:
                continue
            dear, cheap = (a, b) if a.one_off_usd > b.one_off_usd else (b, a)
            out.append({"pays_off": dear.strategy, "versus": cheap.strategy, "queries": n,
                        "sentence": f"{dear.strategy} costs {fmt.money(dear.one_off_usd - cheap.one_off_usd)} "
                                    f"{'more ' if cheap.one_off_usd else ''}up front and becomes cheaper than "
                                    f"{cheap.strategy} after {fmt.count(n)} queries"})
    return sorted(out, key=lambda r: r["queries"])
