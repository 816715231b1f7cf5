"""zero-shot: an instruction (and optional role) with the label set as the output constraint."""

from __future__ import annotations

from pydantic import Field

from tunewise.registry import register
from tunewise.strategies.base import Strategy, StrategyConfig
from tunewise.strategies.prompting._common import instruction_predictor


class ZeroShotConfig(StrategyConfig):
    instruction: str | None = Field(None, description="Replaces the task's instruction.")
    role: str | None = Field(None, description="A role/system line put before the instruction, "
                             "e.g. 'You are a support-desk triage expert.'")
    max_new_tokens: int = Field(64, gt=0, description="Generation tasks: longest answer in tokens.")
    calibrate: bool = Field(False, description="Contextual calibration (Zhao et al. 2021): divide out the label "
                            "distribution the prompt gives content-free inputs ('N/A', '', '[MASK]'). "
                            "Classification with label scoring only.")


@register
class ZeroShot(Strategy):
    name = "zero-shot"
    family = "prompting"
    summary = "Instruction only; classification scores every label's log-likelihood."
    Config = ZeroShotConfig

    def fit(self, backend, task, ctx):
        return instruction_predictor(backend, task, ctx, self.config)
