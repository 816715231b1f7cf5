"""What every PEFT strategy (lora, ia3, prefix-tuning, prompt-tuning, p-tuning) shares.

A strategy subclasses `PeftStrategy` and only says how to build its `peft` config; this file wraps the
fresh copy of the base weights in a PeftModel (the `prepare` hook of `_lm_fit.fit_causal`, turning peft's
rejections into one-line UserErrors that name the option), describes the adapter artifact (`PEFT_ADAPTER`,
saved in PEFT format and reloaded for `--resume`), optionally exports a merged full model, and picks the
model predictions run on: adapter methods score through the PeftModel itself; prompt-learning methods
through `_virtual.VirtualTokensLM`, because PeftModel's own forward cannot take the scorer's cache,
positions and 4D masks.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from tunewise.errors import UserError
from tunewise.strategies.base import Strategy
from tunewise.strategies.finetuning._causal import CausalTrainConfig
from tunewise.strategies.finetuning._lm_fit import (
    CausalArtifact,
    CausalFit,
    dir_mb,
    fit_causal,
    lm_predictor,
    load_causal_fit,
    save_causal,
)

ADAPTER = "adapter"
MERGED = "merged"


class VirtualTokensConfig(CausalTrainConfig):
    """Options of the prompt-learning methods, which prepend trained virtual tokens to every input."""

    num_virtual_tokens: int = Field(20, gt=0, le=1024, description="Trained virtual tokens prepended to "
                                    "every input (more: more capacity, longer sequences).")


def check_target_modules(value: list[str] | str | None) -> list[str] | str | None:
    """Reject an empty list or blank names at config time (peft's own message would not name the option)."""
    if isinstance(value, list) and (not value or any(not str(v).strip() for v in value)):
        raise ValueError("give at least one module name (e.g. [q_proj, v_proj]) or 'all-linear'")
    if isinstance(value, str) and not value.strip():
        raise ValueError("give 'all-linear' or a list of module names")
    return value


class PeftStrategy(Strategy):
    """A PEFT method on the causal LM; subclasses implement `peft_config()` and may `initialise()`."""

    family = "finetuning"
    needs = ("can_train",)
    # Options named in a UserError when peft rejects the config; the first is blamed when none matches.
    options: ClassVar[tuple[str, ...]] = ()
    # Options holding module names -> the method whose layer types they may name (None: any module, matched as
    # peft matches modules_to_save); checked against the model before training (`_modules.py`).
    module_options: ClassVar[dict[str, str | None]] = {}
    can_merge: ClassVar[bool] = False  # whether merge_and_unload() exists for the method

    def peft_config(self, backend, task):
        """The `peft` config object for this strategy's options."""
        raise NotImplementedError

    def initialise(self, model, backend, task) -> None:
        """Hook run on the new PeftModel before training (e.g. a soft prompt initialised from text)."""

    def check_model(self, model) -> None:
        """Every module name in the settings (and `layers_to_transform`) exists in `model`, as peft matches them."""
        from tunewise.strategies.finetuning._modules import check_layers, check_modules, layer_types

        where = f"strategies.{self.config.id}"
        for option, method in self.module_options.items():
            types = layer_types(method) if method else None
            check_modules(model, f"{where}.{option}", getattr(self.config, option), types, suffix_only=not method)
        check_layers(model, f"{where}.layers_to_transform", getattr(self.config, "layers_to_transform", None))

    def prepare(self, backend, task):
        """The `prepare` hook of the causal path: wrap the fresh base model in this method's PeftModel."""
        def wrap(base):
            self.check_model(base)  # peft would silently skip a name that matches nothing
            model = create_peft_model(base, lambda: self.peft_config(backend, task), self.config.id, self.options)
            self.initialise(model, backend, task)
            return model

        return wrap

    def fit(self, backend, task, ctx):
        cfg = self.config
        predictor = fit_causal(backend, task, ctx, cfg, CausalFit(self.prepare(backend, task), PEFT_ADAPTER))
        if self.can_merge and getattr(cfg, "merge", False):
            export_merged(backend, ctx.artifact_dir / ADAPTER, ctx)
        return predictor

    def load(self, backend, task, ctx):
        return load_causal_fit(backend, task, ctx, CausalFit(artifact=PEFT_ADAPTER))

    def predictor_over(self, backend, task, model):
        """This strategy's predictor over its adapter already loaded in `model` (a PeftModel whose base
        weights may be shared with other adapters: how `tunewise serve` serves every adapter on one base)."""
        return peft_predictor(backend, task, model)


def create_peft_model(base, make_config, strategy_id: str, options: tuple[str, ...]):
    """get_peft_model(base, make_config()), with peft's ValueErrors as one-line UserErrors naming the option."""
    from peft import get_peft_model

    try:
        return get_peft_model(base, make_config())
    except ValueError as err:
        raise bad_option(strategy_id, options, err) from None


def bad_option(strategy_id: str, options: tuple[str, ...], err: Exception) -> UserError:
    message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    lowered = message.lower()
    blamed = next((o for o in options if o in lowered or o.replace("_", " ") in lowered),
                  options[0] if options else None)
    where = f"strategies.{strategy_id}" + (f".{blamed}" if blamed else "")
    return UserError(f"{where}: {message}")


def load_adapter(backend, path):
    """The saved adapter over a fresh copy of the base weights; None when nothing was saved (resume)."""
    from peft import PeftModel

    if not (path / "adapter_config.json").is_file():
        return None
    return PeftModel.from_pretrained(backend.fresh_model(), path).eval()


def scoring_model(model):
    """What predictions and probes run on: the PeftModel itself, or for prompt-learning methods the
    `VirtualTokensLM` over it (PeftModel's forward cannot take the scorer's cache, positions, 4D masks)."""
    if model.active_peft_config.is_prompt_learning:
        from tunewise.strategies.finetuning._virtual import VirtualTokensLM

        return VirtualTokensLM(model).eval()
    return model


def save_adapter(model, backend, path) -> None:
    model.save_pretrained(path)  # the adapter alone, in PEFT format


# A PEFT adapter over the base weights: what every PEFT method (and sft with LoRA) saves and reloads.
PEFT_ADAPTER = CausalArtifact(ADAPTER, save_adapter, load_adapter, "adapter_mb", scoring_model)


def peft_predictor(backend, task, model):
    """The label-scoring (or generating) predictor over a PeftModel."""
    return lm_predictor(backend, task, scoring_model(model))


def export_merged(backend, adapter_path, ctx) -> None:
    """Also save base + adapter merged into one plain model (no peft needed to serve it).

    The merge runs on a reloaded copy: merge_and_unload() rewrites the model in place, and the trained
    PeftModel must stay as it is for the predictor (and for callers that inspect it).
    """
    merged = load_adapter(backend, adapter_path).merge_and_unload()
    path = ctx.artifact_dir / MERGED
    save_causal(merged, backend, path)
    ctx.stats["merged_mb"] = dir_mb(path)

