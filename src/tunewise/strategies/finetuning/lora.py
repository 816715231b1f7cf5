"""lora: low-rank adapters on a causal LM (PEFT), instruction-formatted, loss on the answer only.

`use_dora` switches to DoRA (weight-decomposed LoRA); `merge` also exports base + adapter merged into
one plain model under `merged/` (the adapter stays the artifact the predictor and `--resume` use).
"""

from __future__ import annotations

from pydantic import Field, field_validator

from tunewise.registry import register
from tunewise.strategies.finetuning._causal import CausalTrainConfig
from tunewise.strategies.finetuning._peft import PeftStrategy, check_target_modules


class LoraConfig(CausalTrainConfig):
    rank: int = Field(16, gt=0, description="LoRA rank r: capacity of each adapter.")
    alpha: int = Field(32, gt=0, description="LoRA scaling alpha (update scaled by alpha/r).")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the adapter input.")
    target_modules: list[str] | str = Field(
        "all-linear", description="Modules that get adapters: 'all-linear' or names like [q_proj, v_proj].")
    use_dora: bool = Field(False, description="DoRA: weight-decomposed low-rank adaptation.")
    merge: bool = Field(False, description="Also save the base model with the adapter merged in "
                        "(`merged/`, loads with plain transformers); sizes of both go to the report.")

    @field_validator("target_modules")
    @classmethod
    def _targets(cls, value):
        return check_target_modules(value)


@register
class Lora(PeftStrategy):
    name = "lora"
    summary = "LoRA adapters (PEFT) on the causal LM; answer-only loss; adapter saved in PEFT format."
    Config = LoraConfig
    options = ("target_modules", "rank", "alpha", "dropout", "use_dora")
    can_merge = True

    def peft_config(self, backend, task):
        from peft import LoraConfig as PeftLoraConfig

        c = self.config
        return PeftLoraConfig(task_type="CAUSAL_LM", r=c.rank, lora_alpha=c.alpha, lora_dropout=c.dropout,
                              target_modules=c.target_modules, use_dora=c.use_dora)
