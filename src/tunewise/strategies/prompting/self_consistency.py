"""self-consistency (Wang et al. 2023): sample n chain-of-thought paths and take the majority answer.

Same prompts as chain-of-thought (zero-shot trigger or worked examples); each path's answer is read by
`_extract.py`, paths whose answer cannot be read do not vote, and a tie goes to the answer seen first.
The trace holds every path and the vote; classification scores are the vote shares. Prompt and
completion tokens are counted over all n paths (n times the prompt: each path is a separate sequence).
"""

from __future__ import annotations

from pydantic import Field, model_validator

from tunewise.registry import register
from tunewise.strategies.prompting.chain_of_thought import ChainOfThought, ChainOfThoughtConfig


class SelfConsistencyConfig(ChainOfThoughtConfig):
    n: int = Field(5, ge=1, le=64, description="Reasoning paths sampled per example (the cost grows with n).")
    temperature: float = Field(0.7, ge=0, le=2, description="Sampling temperature of the paths; above 0 "
                               "whenever n > 1, or every path would be the same greedy one.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling: keep the smallest set of tokens "
                         "whose probability reaches top_p (1 keeps all).")

    @model_validator(mode="after")
    def _sampling_needs_temperature(self) -> SelfConsistencyConfig:
        if self.n > 1 and self.temperature <= 0:
            raise ValueError(f"temperature must be above 0 when n > 1 (got n={self.n}, temperature="
                             f"{self.temperature}): greedy paths are all the same; set temperature (e.g. 0.7)")
        return self


@register
class SelfConsistency(ChainOfThought):
    name = "self-consistency"
    summary = "Sample n chain-of-thought paths and take the majority answer."
    Config = SelfConsistencyConfig

    def fit(self, backend, task, ctx):
        c = self.config
        ctx.stats["paths"] = c.n
        return self.reasoning_predictor(backend, task, ctx, n=c.n, temperature=c.temperature, top_p=c.top_p)
