"""prompt-tuning: a trained soft prompt (virtual-token embeddings) before every input; the LM stays frozen.

By default the soft prompt starts from the embeddings of the task instruction's tokens (PEFT's TEXT
initialisation, done here with the backend's own tokenizer so no tokenizer is fetched by name); it is
repeated or cut to `num_virtual_tokens`. Predictions run it as a KV cache (`_virtual.VirtualTokensLM`).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from tunewise.backends import embedded
from tunewise.registry import register
from tunewise.strategies.finetuning._causal import shared_messages
from tunewise.strategies.finetuning._peft import PeftStrategy, VirtualTokensConfig


class PromptTuningConfig(VirtualTokensConfig):
    # Soft prompts move slowly at LoRA-like rates; the PEFT and Lester et al. recipes use ~3e-2.
    learning_rate: float = Field(3e-2, gt=0, description="Peak learning rate.")
    epochs: float = Field(3.0, gt=0, description="Passes over the training split.")
    init: Literal["text", "vocab", "random"] = Field(
        "text", description="Start of the soft prompt: text (embeddings of init_text), vocab (embeddings of "
        "random vocabulary tokens) or random.")
    init_text: str | None = Field(None, min_length=1, description="Text the soft prompt starts from when "
                                  "init is text; null: the task instruction.")


@register
class PromptTuning(PeftStrategy):
    name = "prompt-tuning"
    summary = "Prompt tuning (PEFT): a soft prompt initialised from the instruction; the causal LM is frozen."
    Config = PromptTuningConfig
    options = ("num_virtual_tokens", "init", "init_text")

    def peft_config(self, backend, task):
        from peft import PromptTuningConfig as PeftPromptTuningConfig
        from peft import PromptTuningInit

        c = self.config
        init = {"text": PromptTuningInit.RANDOM, "vocab": PromptTuningInit.SAMPLE_VOCAB,
                "random": PromptTuningInit.RANDOM}[c.init]  # text: filled in by initialise()
        return PeftPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=c.num_virtual_tokens,
                                      prompt_tuning_init=init)

    def initialise(self, model, backend, task) -> None:
        if self.config.init != "text":
            return
        from peft import PromptTuningInit

        text = self.config.init_text or shared_messages(task)[0]["content"]
        ids = backend.encode(text) or [backend.tokenizer.eos_token_id]
        n = self.config.num_virtual_tokens
        ids = (ids * (n // len(ids) + 1))[:n]  # repeat a short text, cut a long one (as PEFT does)
        weight = model.prompt_encoder["default"].embedding.weight
        with torch.no_grad():
            words = model.word_embeddings(torch.tensor(ids, device=weight.device))
            weight.copy_(words.to(weight.dtype))
        # Record the initialisation in adapter_config.json as PEFT's own TEXT init would; loading for
        # inference never re-runs it (the trained embeddings are loaded instead).
        pc = model.peft_config["default"]
        pc.prompt_tuning_init, pc.prompt_tuning_init_text = PromptTuningInit.TEXT, text
        pc.tokenizer_name_or_path = embedded.resolve(backend.name)
