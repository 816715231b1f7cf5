"""adapters: bottleneck adapters (Houlsby/Pfeiffer) between the layers of a frozen causal LM.

Small residual down-up projections after each layer's output projections learn the task while every
base weight stays frozen; answer-only loss as for LoRA. See `_bottleneck.py` for why this is not the
`adapters` library.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tunewise.errors import UserError
from tunewise.registry import register
from tunewise.strategies.base import Strategy
from tunewise.strategies.finetuning import _bottleneck
from tunewise.strategies.finetuning._causal import CausalTrainConfig
from tunewise.strategies.finetuning._lm_fit import CausalArtifact, CausalFit, fit_causal, load_causal_fit


class AdaptersConfig(CausalTrainConfig):
    placement: Literal["pfeiffer", "houlsby"] = Field(
        "pfeiffer", description="pfeiffer: one adapter after each MLP; houlsby: after attention and MLP "
        "(twice the parameters).")
    reduction_factor: int = Field(16, gt=0, description="Bottleneck width = hidden size / reduction_factor.")
    activation: Literal["relu", "gelu", "silu", "tanh"] = Field("relu", description="Bottleneck non-linearity.")
    scale: float = Field(1.0, gt=0, description="Multiplier on the adapter's output before the residual add.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout inside the bottleneck.")
    target_modules: list[str] | None = Field(
        None, description="Output projections to adapt, as module-name suffixes (e.g. [mlp.down_proj]); "
        "null picks them from `placement`.")


@register
class Adapters(Strategy):
    name = "adapters"
    family = "finetuning"
    needs = ("can_train",)
    summary = "Bottleneck adapters (Pfeiffer/Houlsby) between frozen causal-LM layers; answer-only loss."
    Config = AdaptersConfig

    def check_model(self, model) -> None:
        """Each of `target_modules` names a Linear of `model`; without them, `placement` finds one."""
        from tunewise.strategies.finetuning._modules import check_modules, layer_types, leaf_names

        c = self.config
        check_modules(model, f"strategies.{c.id}.target_modules", c.target_modules, layer_types("adapters"))
        defaults = _bottleneck.TARGETS[c.placement]
        names = [n for n, _ in model.named_modules()]
        if c.target_modules is None and not any(n.endswith("." + s) for n in names for s in defaults):
            raise UserError(f"strategies.{c.id}.placement: {type(model).__name__} has none of {c.placement}'s layers "
                            f"({', '.join(defaults)}); set target_modules to some of: "
                            f"{', '.join(leaf_names(model, layer_types('adapters')))}")

    def _settings(self) -> dict:
        c = self.config
        return {"placement": c.placement, "reduction_factor": c.reduction_factor, "activation": c.activation,
                "scale": c.scale, "dropout": c.dropout, "target_modules": c.target_modules}

    def _artifact(self) -> CausalArtifact:
        settings = self._settings()
        return CausalArtifact(
            "adapters", lambda model, backend, path: _bottleneck.save_bottlenecks(model, path, settings),
            lambda backend, path: _bottleneck.load_bottlenecks(backend.fresh_model(), path), "adapter_mb")

    def _prepare(self, ctx):
        def add(model):
            self.check_model(model)
            try:
                adapted = _bottleneck.add_bottlenecks(model, **self._settings())
            except UserError as err:
                raise UserError(f"strategies.{self.config.id}.target_modules: {err}") from None
            ctx.stats["adapted_modules"] = len(adapted)
            return model

        return add

    def fit(self, backend, task, ctx):
        return fit_causal(backend, task, ctx, self.config, CausalFit(self._prepare(ctx), self._artifact()))

    def load(self, backend, task, ctx):
        return load_causal_fit(backend, task, ctx, CausalFit(artifact=self._artifact()))
