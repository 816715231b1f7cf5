"""ia3: (IA)^3 on a causal LM (PEFT): learnt vectors rescale keys, values and feed-forward activations.

Far fewer trained parameters than LoRA (one vector per targeted module); the vectors can be merged into
the base weights (`merge`), so serving costs nothing extra.
"""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from tunewise.registry import register
from tunewise.strategies.finetuning._causal import CausalTrainConfig
from tunewise.strategies.finetuning._peft import PeftStrategy, check_target_modules


class IA3Config(CausalTrainConfig):
    # (IA)^3 vectors start at 1 and need larger steps than LoRA's matrices (the paper uses 3e-3).
    learning_rate: float = Field(3e-3, gt=0, description="Peak learning rate.")
    epochs: float = Field(3.0, gt=0, description="Passes over the training split.")
    target_modules: list[str] | str | None = Field(
        None, description="Modules whose outputs get a learnt scale, e.g. [k_proj, v_proj, down_proj]; null: "
        "peft's default for the architecture (keys, values, feed-forward down projection).")
    feedforward_modules: list[str] | None = Field(
        None, description="Which of target_modules are feed-forward layers (scaled on their input, not "
        "output); null: peft's default for the architecture.")
    modules_to_save: list[str] | None = Field(
        None, description="Modules trained in full besides the vectors and saved with them, e.g. [lm_head].")
    merge: bool = Field(False, description="Also save the base model with the vectors merged in (`merged/`, "
                        "loads with plain transformers); sizes of both go to the report.")

    @field_validator("target_modules")
    @classmethod
    def _targets(cls, value):
        return check_target_modules(value)

    @model_validator(mode="after")
    def _feedforward_subset(self) -> IA3Config:
        ff, targets = self.feedforward_modules, self.target_modules
        if ff is not None and isinstance(targets, list) and not set(ff) <= set(targets):
            raise ValueError(f"feedforward_modules {sorted(set(ff) - set(targets))} are not in target_modules")
        if ff is not None and targets is None:
            raise ValueError("feedforward_modules needs target_modules as well")
        return self


@register
class IA3(PeftStrategy):
    name = "ia3"
    summary = "(IA)^3 (PEFT): learnt rescaling vectors on the causal LM; answer-only loss; mergeable."
    Config = IA3Config
    options = ("target_modules", "feedforward_modules", "modules_to_save")
    module_options = {"target_modules": "ia3", "feedforward_modules": "ia3", "modules_to_save": None}
    can_merge = True

    def peft_config(self, backend, task):
        from peft import IA3Config as PeftIA3Config

        c = self.config
        return PeftIA3Config(task_type="CAUSAL_LM", target_modules=c.target_modules,
                             feedforward_modules=c.feedforward_modules, modules_to_save=c.modules_to_save)
