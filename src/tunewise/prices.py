"""Prices, in one place: the dated default API price table, the `prices:` config section, and the lookup
of an API model's price. Used by the config, the report's cost model and `openai-finetune`'s estimate.

The defaults are list prices in USD per million tokens, as of `PRICES_AS_OF` (OpenAI's public price page).
They are *defaults to override*: prices change, and negotiated or batch prices differ. Put your own under
`prices: api:` in the experiment config (or the report's --settings file).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from tunewise.foundation import Strict

PRICES_AS_OF = "2026-11"
DEFAULT_API_PRICES: dict[str, dict[str, float | None]] = {
    "gpt-5": {"input": 1.25, "output": 10.00},
    "gpt-5-mini": {"input": 0.25, "output": 2.00},
    "gpt-5-nano": {"input": 0.05, "output": 0.40},
    "gpt-4.1": {"input": 2.00, "output": 8.00, "training": 25.00, "finetuned_input": 3.00,
                "finetuned_output": 12.00},
    "gpt-4.1-mini": {"input": 0.40, "output": 1.60, "training": 5.00, "finetuned_input": 0.80,
                     "finetuned_output": 3.20},
    "gpt-4.1-nano": {"input": 0.10, "output": 0.40, "training": 1.50, "finetuned_input": 0.20,
                     "finetuned_output": 0.80},
    "gpt-4o": {"input": 2.50, "output": 10.00, "training": 25.00, "finetuned_input": 3.75,
               "finetuned_output": 15.00},
    "gpt-4o-mini": {"input": 0.15, "output": 0.60, "training": 3.00, "finetuned_input": 0.30,
                    "finetuned_output": 1.20},
}
API_PREFIXES = ("openai:", "openai/", "api:")  # model names that mean an API backend


class ApiPrice(Strict):
    input: float = Field(ge=0, description="USD per million input (prompt) tokens.")
    output: float = Field(ge=0, description="USD per million output (completion) tokens.")
    training: float | None = Field(None, ge=0, description="USD per million training tokens for the "
                                   "provider's fine-tuning; empty when the model cannot be fine-tuned.")
    finetuned_input: float | None = Field(None, ge=0, description="USD per million input tokens for a "
                                          "fine-tuned copy (defaults to `input`).")
    finetuned_output: float | None = Field(None, ge=0, description="USD per million output tokens for a "
                                           "fine-tuned copy (defaults to `output`).")


def _default_api_prices() -> dict[str, Any]:
    return {name: ApiPrice(**price) for name, price in DEFAULT_API_PRICES.items()}


class PricesConfig(Strict):
    api: dict[str, ApiPrice] = Field(
        default_factory=_default_api_prices,
        description="API prices by model name. Entries given here are added to, or replace, tunewise's dated "
        "defaults (see `tunewise.prices.PRICES_AS_OF`); check your provider's price page.")
    gpu_per_hour: float = Field(4.0, ge=0, description="USD per hour of the GPU that trains and serves "
                                "local models (used when the run had CUDA).")
    cpu_per_hour: float = Field(0.10, ge=0, description="USD per hour of the CPU machine that trains and "
                                "serves local models (used when the run had no GPU).")
    electricity_per_kwh: float | None = Field(None, ge=0, description="USD per kWh; when set, the energy "
                                              "of local training and inference is added to their cost.")
    gpu_watts: float = Field(400.0, gt=0, description="Power drawn by the GPU under load, in watts.")
    cpu_watts: float = Field(65.0, gt=0, description="Power drawn by the CPU under load, in watts.")

    @field_validator("api", mode="before")
    @classmethod
    def _merge_defaults(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        return {**DEFAULT_API_PRICES, **value}


def api_price(model: str, table: dict[str, ApiPrice]) -> tuple[str, ApiPrice, bool] | None:
    """(name, price, is_fine_tuned) for an API model name, matching dated snapshots and `ft:` names
    (`gpt-4o-mini-2024-07-18`, `ft:gpt-4o-mini-2024-07-18:org::id`) to their base entry; None for local models."""
    name = model.lower().strip().split("?", 1)[0]  # 'openai:MODEL?base_url=...' names an API backend
    for prefix in API_PREFIXES:
        name = name.removeprefix(prefix)
    tuned = name.startswith("ft:")
    name = name.removeprefix("ft:")
    for key in sorted(table, key=len, reverse=True):  # 'gpt-4o-mini' before 'gpt-4o'
        k = key.lower()
        if name == k or name.startswith(k + "-") or name.startswith(k + ":"):
            return key, table[key], tuned
    return None


def training_price(model: str, prices: PricesConfig) -> float | None:
    """USD per million training tokens of an API model, or None when the table has no training price."""
    found = api_price(model, prices.api)
    return found[1].training if found else None
