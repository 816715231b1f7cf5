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
    modules_to_save: list[str] | None = Field(
        None, description="Modules trained in full besides the adapters and saved with them, e.g. [lm_head].")
    layers_to_transform: list[int] | None = Field(
        None, description="Only these blocks (0-based indices, e.g. [0, 1]) get adapters; null: every block.")
    use_dora: bool = Field(False, description="DoRA: weight-decomposed low-rank adaptation.")
    merge: bool = Field(False, description="Also save the base model with the adapter merged in "
                        "(`merged/`, loads with plain transformers); sizes of both go to the report.")

    @field_validator("target_modules")
    @classmethod
    def _targets(cls, value):
        return check_target_modules(value)

    @field_validator("modules_to_save", "layers_to_transform")
    @classmethod
    def _lists(cls, value):
        if value is not None and (not value or any(isinstance(v, int) and v < 0 for v in value)):
            raise ValueError("give at least one entry (block indices from 0), or null")
        return value


@register
class Lora(PeftStrategy):
    name = "lora"
    summary = "LoRA adapters (PEFT) on the causal LM; answer-only loss; adapter saved in PEFT format."
    Config = LoraConfig
    options = ("target_modules", "modules_to_save", "layers_to_transform", "rank", "alpha", "dropout", "use_dora")
    module_options = {"target_modules": "lora", "modules_to_save": None}
    can_merge = True

    def peft_config(self, backend, task):
        from peft import LoraConfig as PeftLoraConfig

        c = self.config
        # a saved copy of lm_head must stay tied to the input embeddings where the model ties them
        tied = bool(c.modules_to_save) and bool(getattr(backend.model.config, "tie_word_embeddings", False))
        return PeftLoraConfig(task_type="CAUSAL_LM", r=c.rank, lora_alpha=c.alpha, lora_dropout=c.dropout,
                              target_modules=c.target_modules, use_dora=c.use_dora,
                              modules_to_save=c.modules_to_save, layers_to_transform=c.layers_to_transform,
                              ensure_weight_tying=tied)
