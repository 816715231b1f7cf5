"""full-finetune: every weight of the encoder plus a new classification head is trained."""

from __future__ import annotations

from pydantic import Field

from tunewise.registry import register
from tunewise.strategies.base import Strategy
from tunewise.strategies.finetuning._encoder import fit_classifier, load_classifier
from tunewise.strategies.finetuning._train import TrainConfig


class FullConfig(TrainConfig):
    learning_rate: float = Field(1e-4, gt=0, description="Peak learning rate.")
    epochs: float = Field(8.0, gt=0, description="Passes over the training split (early stopping may end "
                          "sooner).")
    batch_size: int = Field(16, gt=0, description="Examples per device step.")
    max_length: int = Field(128, gt=8, description="Longest input in tokens.")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay.")


@register
class FullFinetune(Strategy):
    name = "full-finetune"
    family = "finetuning"
    backend_kind = "encoder"
    needs = ("can_train",)
    task_kinds = ("classification",)
    summary = "All encoder weights + a new classification head."
    Config = FullConfig

    def fit(self, backend, task, ctx):
        return fit_classifier(backend, task, ctx, self.config, frozen_body=False)

    def load(self, backend, task, ctx):
        return load_classifier(backend, task, ctx, self.config)
