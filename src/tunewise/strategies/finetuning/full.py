"""full-finetune: every weight trains, on the encoder (plus a new classification head) or the causal LM.

`model: encoder` (default) trains a sequence classifier; `model: causal` trains all weights of a fresh
copy of the causal LM on the instruction-formatted examples with the loss on the answer only (also for
generation tasks) and saves the whole model with `save_pretrained`. The instance's `backend_kind`
follows the option, so the experiment hands it the right model.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from tunewise.registry import register
from tunewise.strategies.finetuning._causal import CausalTrainConfig
from tunewise.strategies.finetuning._lm_fit import ModelOptionStrategy, model_defaults

# Every weight of a pretrained LM moves: rates far below an encoder head's, and longer prompts.
CAUSAL_DEFAULTS: dict[str, Any] = {"learning_rate": 2e-5, "epochs": 2.0, "batch_size": 8, "max_length": 256,
                                   "weight_decay": 0.0}


class FullConfig(CausalTrainConfig):
    model: Literal["encoder", "causal"] = Field(
        "encoder", description="Which model trains: encoder (a classifier head on `encoder`) or causal (the "
        "causal LM `model`, answer-only loss; classification and generation tasks).")
    learning_rate: float = Field(1e-4, gt=0, description="Peak learning rate (default 1e-4 for the encoder, "
                                 "2e-5 for the causal LM).")
    epochs: float = Field(8.0, gt=0, description="Passes over the training split (early stopping may end "
                          "sooner; default 8 for the encoder, 2 for the causal LM).")
    batch_size: int = Field(16, gt=0, description="Examples per device step (default 16 encoder, 8 causal).")
    max_length: int = Field(128, gt=8, description="Longest input in tokens (default 128 encoder, 256 causal).")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay (default 0.01 encoder, 0 causal).")
    forgetting: bool = Field(True, description="With model: causal, measure catastrophic forgetting after "
                             "training (reference-text perplexity before vs after); ignored for the encoder.")

    @model_validator(mode="before")
    @classmethod
    def _per_model_defaults(cls, data: Any) -> Any:
        return model_defaults(data, {"causal": CAUSAL_DEFAULTS})


@register
class FullFinetune(ModelOptionStrategy):
    name = "full-finetune"
    family = "finetuning"
    needs = ("can_train",)
    summary = "All weights: the encoder + a new classification head, or (model: causal) the causal LM."
    Config = FullConfig

    def prepare(self, model, ctx, callbacks):
        return model.requires_grad_(True)  # every weight trains
