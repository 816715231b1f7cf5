"""sft: instruction tuning of a causal LM on instruction/response pairs, loss on the response only.

Each example becomes one chat turn (`input` as the user's instruction, `target` as the assistant's
response) rendered with the model's own chat template; the prompt tokens are masked out of the loss by
`_causal.encode_examples`. LoRA (PEFT) by default, or every weight with `method: full`.

TRL's SFTTrainer installs next to transformers 5 (trl 1.16) but is not used: its completion-only loss is
what `_causal.py` already does, `assistant_only_loss` needs `{% generation %}` markers that SmolLM2's
template lacks, and packing is only exact with flash-attention (GPU); it would also bypass `_train.train()`
(early stopping, progress, NaN guard, loss curves) with its own dataset pipeline for no gain here.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_validator

from tunewise.registry import register
from tunewise.strategies.base import Strategy
from tunewise.strategies.finetuning import _causal
from tunewise.strategies.finetuning._causal import CausalTrainConfig
from tunewise.strategies.finetuning._lm_fit import CausalFit, fit_causal, lm_predictor, load_causal_fit
from tunewise.strategies.finetuning._peft import PEFT_ADAPTER, create_peft_model

DEFAULT_LR = {"lora": 2e-4, "full": 2e-5}  # full fine-tuning moves every weight: ten times gentler


class SftConfig(CausalTrainConfig):
    method: Literal["lora", "full"] = Field("lora", description="lora: PEFT low-rank adapters (small "
                                           "artifact); full: every weight trains (a full model copy).")
    learning_rate: float | None = Field(None, gt=0, description="Peak learning rate; null picks 2e-4 for "
                                        "lora and 2e-5 for full.")
    max_length: int = Field(512, gt=8, description="Longest instruction+response in tokens (instructions "
                            "are cut from the left, never the response).")
    system: Literal["task", "none"] = Field("task", description="task: the task's instruction as the system "
                                            "message; none: the user turn alone (the template's default).")
    rank: int = Field(16, gt=0, description="method lora: rank r of each adapter.")
    alpha: int = Field(32, gt=0, description="method lora: scaling alpha (update scaled by alpha/r).")
    lora_dropout: float = Field(0.05, ge=0, lt=1, description="method lora: dropout on the adapter input.")
    target_modules: list[str] | str = Field(
        "all-linear", description="method lora: modules that get adapters ('all-linear' or names).")
    max_new_tokens: int = Field(256, gt=0, description="Generation tasks: longest response in tokens.")

    @model_validator(mode="after")
    def _finite(self) -> SftConfig:  # replaces TrainConfig's check, which needs a number
        if self.learning_rate is not None and not math.isfinite(self.learning_rate):
            raise ValueError("learning_rate must be a finite number")
        return self

    def resolved(self) -> SftConfig:
        """A copy with the learning rate filled in, as `train()` needs it."""
        lr = self.learning_rate or DEFAULT_LR[self.method]
        return self.model_copy(update={"learning_rate": lr})


@register
class Sft(Strategy):
    name = "sft"
    family = "finetuning"
    needs = ("can_train",)
    summary = "Instruction tuning with the chat template, loss on the response only; LoRA or full weights."
    Config = SftConfig

    def check_model(self, model) -> None:
        from tunewise.strategies.finetuning._modules import check_modules, layer_types

        if self.config.method == "lora":
            check_modules(model, f"strategies.{self.config.id}.target_modules", self.config.target_modules,
                          layer_types("lora"))

    def _how(self, backend, task) -> CausalFit:
        """method full: every weight of the fresh model trains; lora: it is wrapped in LoRA adapters."""
        c = self.config
        shared = _causal.shared_messages(task) if c.system == "task" else []
        if c.method == "full":
            return CausalFit(shared=shared, max_new_tokens=c.max_new_tokens)

        def lora(model):
            from peft import LoraConfig

            self.check_model(model)
            return create_peft_model(model, lambda: LoraConfig(
                task_type="CAUSAL_LM", r=c.rank, lora_alpha=c.alpha, lora_dropout=c.lora_dropout,
                target_modules=c.target_modules), c.id, ("target_modules",))

        return CausalFit(lora, PEFT_ADAPTER, shared=shared, max_new_tokens=c.max_new_tokens)

    def fit(self, backend, task, ctx):
        return fit_causal(backend, task, ctx, self.config.resolved(), self._how(backend, task))

    def load(self, backend, task, ctx):
        return load_causal_fit(backend, task, ctx, self._how(backend, task))

    def predictor_over(self, backend, task, model):
        """The predictor over its LoRA adapter already loaded in `model` (a PeftModel; see PeftStrategy)."""
        how = self._how(backend, task)
        return lm_predictor(backend, task, PEFT_ADAPTER.runs_on(model), how.shared, how.max_new_tokens)
