"""gradual-unfreeze: ULMFiT-style fine-tuning that unfreezes one more layer group per epoch, from the top.

Groups, top first: the classification head (encoder; with the pooler) or the top decoder layer with the
final norm (causal LM, whose output head is usually tied to the embeddings), then each layer below, then
the embeddings. Every group that will unfreeze within the run is trainable when the optimizer is built,
so AdamW holds its parameters from the start; a TrainerCallback then switches `requires_grad` at each
epoch start. A frozen parameter gets no gradient, and AdamW (weight decay included) skips parameters
without one, so frozen groups stay exactly as they were.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from tunewise.errors import UserError
from tunewise.registry import register
from tunewise.strategies.finetuning._causal import CausalTrainConfig
from tunewise.strategies.finetuning._lm_fit import ModelOptionStrategy, model_defaults

# Unfrozen layers of a causal LM take small steps; the first epochs train only the top of the model.
CAUSAL_DEFAULTS: dict[str, Any] = {"learning_rate": 5e-5, "epochs": 3.0, "batch_size": 8, "max_length": 256}


class GradualUnfreezeConfig(CausalTrainConfig):
    model: Literal["encoder", "causal"] = Field(
        "encoder", description="Which model trains: encoder (classifier head first) or causal (top decoder "
        "layer first; answer-only loss).")
    learning_rate: float = Field(2e-4, gt=0, description="Peak learning rate (default 2e-4 encoder, 5e-5 "
                                 "causal).")
    epochs: float = Field(6.0, gt=0, description="Passes over the training split (default 6 encoder, 3 causal).")
    batch_size: int = Field(16, gt=0, description="Examples per device step (default 16 encoder, 8 causal).")
    max_length: int = Field(128, gt=8, description="Longest input in tokens (default 128 encoder, 256 causal).")
    early_stopping_patience: int | None = Field(
        None, ge=1, description="Epochs without a better validation loss before stopping (best epoch restored); "
        "null (default) runs the whole schedule, since early epochs train only the top groups.")
    forgetting: bool = Field(True, description="With model: causal, measure catastrophic forgetting after "
                             "training (reference-text perplexity before vs after); ignored for the encoder.")
    unfreeze_every: int = Field(1, ge=1, description="Epochs between unfreezing one more layer group.")
    schedule: list[int] | None = Field(
        None, description="Epoch (0-based) at which the 2nd, 3rd, ... group unfreezes, e.g. [1, 2, 4]; groups "
        "past the list stay frozen. Overrides unfreeze_every.")

    @model_validator(mode="before")
    @classmethod
    def _per_model_defaults(cls, data: Any) -> Any:
        return model_defaults(data, {"causal": CAUSAL_DEFAULTS})

    @field_validator("schedule")
    @classmethod
    def _ascending(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (any(e < 0 for e in value) or value != sorted(value)):
            raise ValueError("give non-negative epochs in ascending order, e.g. [1, 2, 4]")
        return value


def layer_groups(model, kind: str) -> list[tuple[str, list]]:
    """(name, parameters) per group, top first: head, layer N-1, ..., layer 0, embeddings."""
    prefix, n_layers = _layer_list(model)
    head, embeddings, layers = [], [], [[] for _ in range(n_layers)]
    for name, p in model.named_parameters():
        if name.startswith(prefix):
            layers[int(name[len(prefix):].split(".", 1)[0])].append(p)
        elif "embed" in name:
            embeddings.append(p)
        else:  # classifier, pooler, final norm, an untied LM head
            head.append(p)
    groups = [("head", head)] + [(f"layer {i}", layers[i]) for i in reversed(range(n_layers))]
    if kind == "causal":  # the final norm alone is too little to train: start with the top layer too
        groups = [(f"head + {groups[1][0]}", groups[0][1] + groups[1][1])] + groups[2:]
    if embeddings:
        groups.append(("embeddings", embeddings))
    return [(name, ps) for name, ps in groups if ps]


def _layer_list(model) -> tuple[str, int]:
    """Name prefix ('bert.encoder.layer.') and length of the model's stack of transformer layers."""
    import torch

    stacks = [(name, len(m)) for name, m in model.named_modules()
              if isinstance(m, torch.nn.ModuleList) and len(m) and len({type(c) for c in m}) == 1]
    if not stacks:
        raise UserError(f"gradual-unfreeze: cannot find the layer stack of {type(model).__name__}")
    name, n = max(stacks, key=lambda s: s[1])
    return f"{name}.", n


def start_epochs(n_groups: int, cfg: GradualUnfreezeConfig) -> list[float]:
    """The epoch at which each group unfreezes (inf: never)."""
    if cfg.schedule is None:
        return [float(i * cfg.unfreeze_every) for i in range(n_groups)]
    return [0.0] + [float(cfg.schedule[i - 1]) if i - 1 < len(cfg.schedule) else math.inf
                    for i in range(1, n_groups)]


def unfreezer(groups: list[tuple[str, list]], starts: list[float]):
    """A TrainerCallback that makes exactly the groups due by each epoch trainable at its start."""
    from transformers import TrainerCallback

    class Unfreeze(TrainerCallback):
        epoch = 0

        def on_epoch_begin(self, args, state, control, **kw):
            for (_, params), start in zip(groups, starts, strict=True):
                for p in params:
                    p.requires_grad_(self.epoch >= start)
            self.epoch += 1

    return Unfreeze()


@register
class GradualUnfreeze(ModelOptionStrategy):
    name = "gradual-unfreeze"
    family = "finetuning"
    needs = ("can_train",)
    summary = "ULMFiT-style: train the head (or top layer) first, unfreeze one layer group per epoch downwards."
    Config = GradualUnfreezeConfig

    def prepare(self, model, ctx, callbacks):
        """Trainable now: every group that unfreezes within the run; the callback freezes the rest per epoch."""
        cfg = self.config
        groups = layer_groups(model, cfg.model)
        starts = start_epochs(len(groups), cfg)
        epochs = math.ceil(cfg.epochs)  # Trainer runs ceil(epochs) epoch loops, the last maybe partial
        model.requires_grad_(False)
        for (_, params), start in zip(groups, starts, strict=True):
            for p in params:  # in the optimizer from the start iff it will ever train
                p.requires_grad_(start < epochs)
        ctx.stats["unfreeze_schedule"] = {name: int(s) for (name, _), s in zip(groups, starts, strict=True)
                                          if s < epochs}
        callbacks.append(unfreezer(groups, starts))
        return model
