"""p-tuning: virtual-token embeddings produced by a small trained prompt encoder (MLP or LSTM), PEFT.

Only the encoder's outputs are saved (PEFT format); predictions run them as a KV cache ahead of the
prompt (`_virtual.VirtualTokensLM`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tunewise.registry import register
from tunewise.strategies.finetuning._peft import PeftStrategy, VirtualTokensConfig


class PTuningConfig(VirtualTokensConfig):
    learning_rate: float = Field(1e-3, gt=0, description="Peak learning rate.")
    epochs: float = Field(3.0, gt=0, description="Passes over the training split.")
    encoder: Literal["mlp", "lstm"] = Field("mlp", description="Prompt encoder that turns the virtual tokens "
                                            "into embeddings: mlp (faster) or lstm (the original P-tuning).")
    encoder_hidden_size: int | None = Field(
        None, gt=0, description="Hidden size of the prompt encoder; null: the model's hidden size.")
    encoder_num_layers: int = Field(2, ge=1, le=8, description="Layers of the prompt encoder (LSTM only; the "
                                    "MLP always has two).")
    encoder_dropout: float = Field(0.0, ge=0, lt=1, description="Dropout inside the prompt encoder.")


@register
class PTuning(PeftStrategy):
    name = "p-tuning"
    summary = "P-tuning (PEFT): virtual tokens from a trained MLP/LSTM prompt encoder on the frozen causal LM."
    Config = PTuningConfig
    options = ("num_virtual_tokens", "encoder_hidden_size", "encoder_num_layers", "encoder")

    def peft_config(self, backend, task):
        from peft import PromptEncoderConfig

        c = self.config
        hidden = c.encoder_hidden_size or backend.model.config.hidden_size
        return PromptEncoderConfig(task_type="CAUSAL_LM", num_virtual_tokens=c.num_virtual_tokens,
                                   encoder_reparameterization_type=c.encoder.upper(),
                                   encoder_hidden_size=hidden, encoder_num_layers=c.encoder_num_layers,
                                   encoder_dropout=c.encoder_dropout)
