"""zero-shot: an instruction (and optional role) with the label set as the output constraint; on generation
tasks optionally an output_schema the answers are generated under."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tunewise.registry import register
from tunewise.strategies.base import Strategy
from tunewise.strategies.prompting._common import instruction_predictor
from tunewise.strategies.prompting._plain import FORMAT_HELP
from tunewise.strategies.prompting._structured import StructuredOutputConfig


class ZeroShotConfig(StructuredOutputConfig):
    instruction: str | None = Field(None, description="Replaces the task's instruction.")
    prompt_format: Literal["chat", "plain"] = Field("chat", description=FORMAT_HELP)
    role: str | None = Field(None, description="A role/system line put before the instruction, "
                             "e.g. 'You are a support-desk triage expert.'")
    max_new_tokens: int = Field(64, gt=0, description="Generation tasks: longest answer in tokens.")
    calibrate: bool | Literal["auto"] = Field(
        "auto", description="Contextual calibration (Zhao et al. 2021): divide out the label distribution the "
        "prompt gives content-free inputs ('N/A', '', '[MASK]'). Classification with label scoring only; auto (the "
        "default): on wherever labels are scored, off elsewhere (it won on validation on SST-2 and AG News with "
        "SmolLM2-135M: bench/prompt_settings.py).")


@register
class ZeroShot(Strategy):
    name = "zero-shot"
    family = "prompting"
    summary = "Instruction only; classification scores every label's log-likelihood."
    Config = ZeroShotConfig

    def fit(self, backend, task, ctx):
        return instruction_predictor(backend, task, ctx, self.config)
