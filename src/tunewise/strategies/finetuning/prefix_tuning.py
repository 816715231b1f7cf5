"""prefix-tuning: trained key/value vectors prepended at every layer of the frozen causal LM (PEFT).

Predictions run the learnt prefix as a KV cache ahead of the prompt (`_virtual.VirtualTokensLM`), so
label scoring keeps its shared-prefix cache.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from tunewise.registry import register
from tunewise.strategies.finetuning._peft import PeftStrategy, VirtualTokensConfig


class PrefixTuningConfig(VirtualTokensConfig):
    # The prefix is a few thousand numbers per layer; like the PEFT examples it wants a high rate.
    learning_rate: float = Field(1e-2, gt=0, description="Peak learning rate.")
    epochs: float = Field(3.0, gt=0, description="Passes over the training split.")
    prefix_projection: bool = Field(
        False, description="Reparameterise the prefix through a two-layer MLP while training (steadier on "
        "larger models; only the projected prefix is saved).")
    encoder_hidden_size: int | None = Field(
        None, gt=0, description="Hidden size of that MLP; null: the model's hidden size. Needs "
        "prefix_projection.")

    @model_validator(mode="after")
    def _projection(self) -> PrefixTuningConfig:
        if self.encoder_hidden_size is not None and not self.prefix_projection:
            raise ValueError("encoder_hidden_size only applies with prefix_projection: true")
        return self


@register
class PrefixTuning(PeftStrategy):
    name = "prefix-tuning"
    summary = "Prefix tuning (PEFT): trained key/value prefixes at every layer of the frozen causal LM."
    Config = PrefixTuningConfig
    options = ("num_virtual_tokens", "encoder_hidden_size", "prefix_projection")

    def peft_config(self, backend, task):
        from peft import PrefixTuningConfig as PeftPrefixTuningConfig

        c = self.config
        kwargs = {"encoder_hidden_size": c.encoder_hidden_size} if c.encoder_hidden_size else {}
        return PeftPrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=c.num_virtual_tokens,
                                      prefix_projection=c.prefix_projection, **kwargs)
