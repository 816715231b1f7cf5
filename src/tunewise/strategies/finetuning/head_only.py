"""head-only: transfer learning with the encoder frozen; only the pooler and new head train."""

from __future__ import annotations

from pydantic import Field

from tunewise.registry import register
from tunewise.strategies.base import Strategy
from tunewise.strategies.finetuning._encoder import fit_classifier, freeze_body, load_classifier
from tunewise.strategies.finetuning._train import TrainConfig


class HeadOnlyConfig(TrainConfig):
    learning_rate: float = Field(2e-3, gt=0, description="Peak learning rate (a small head takes high rates).")
    epochs: float = Field(15.0, gt=0, description="Passes over the training split (early stopping may end "
                          "sooner).")
    batch_size: int = Field(16, gt=0, description="Examples per device step.")
    max_length: int = Field(128, gt=8, description="Longest input in tokens.")
    early_stopping_patience: int | None = Field(3, ge=1, description="Epochs without a better validation "
                                                "loss before stopping (best epoch restored).")


@register
class HeadOnly(Strategy):
    name = "head-only"
    family = "finetuning"
    backend_kind = "encoder"
    needs = ("can_train",)
    task_kinds = ("classification",)
    summary = "Frozen encoder body; only the pooler and a new classification head train."
    Config = HeadOnlyConfig

    def fit(self, backend, task, ctx):
        return fit_classifier(backend, task, ctx, self.config, freeze_body)

    def load(self, backend, task, ctx):
        return load_classifier(backend, task, ctx, self.config)
