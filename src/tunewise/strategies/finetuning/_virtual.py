"""Serve prompt-learning PEFT models (prefix tuning, prompt tuning, P-tuning) to our scorer and generator.

`PeftModelForCausalLM.forward` prepends the virtual tokens on *every* call: it concatenates a 2D mask
(a 4D one crashes), drops explicit `position_ids` (prompt/P-tuning) and overwrites any KV cache passed in
(prefix tuning), so the shared-prefix cached scorer cannot run through it; and with transformers 5 its
`generate()` silently ignores a prefix-tuning prefix. `VirtualTokensLM` instead turns the virtual tokens
into a KV cache once per batch (prefix tuning: the learnt keys/values; prompt/P-tuning: one pass of the
base model over the prompt embeddings), then runs the base model on the real tokens after it, shifting
masks and positions by the virtual length. That equals a full forward of the PEFT model on the whole
sequence (tests/test_peft_methods.py checks it), and keeps the scorer's cache reuse.
"""

from __future__ import annotations

import torch
from torch import nn


class VirtualTokensLM(nn.Module):
    """A causal LM over the base model of a prompt-learning PeftModel, with its virtual tokens as a cache."""

    def __init__(self, peft_model):
        super().__init__()
        self.peft_model = peft_model
        self.base = peft_model.get_base_model()
        cfg = peft_model.active_peft_config
        self.n_virtual = cfg.num_virtual_tokens
        self.is_prefix = str(getattr(cfg.peft_type, "value", cfg.peft_type)) == "PREFIX_TUNING"
        self.config = self.base.config

    @property
    def device(self) -> torch.device:
        return self.base.device

    @property
    def generation_config(self):
        return self.base.generation_config

    @torch.no_grad()
    def virtual_cache(self, batch: int):
        """The KV cache of the virtual tokens alone, for `batch` rows."""
        if self.is_prefix:
            return self.peft_model.get_prompt(batch, max_cache_len=self.n_virtual)
        prompts = self.peft_model.get_prompt(batch_size=batch).to(self.base.dtype)
        pos = torch.arange(self.n_virtual, device=prompts.device).expand(batch, -1)
        return self.base(inputs_embeds=prompts, position_ids=pos, use_cache=True).cache

    def _extend_mask(self, mask: torch.Tensor) -> torch.Tensor:
        # Every real token may attend to every virtual token: one more column block of ones in front.
        shape = (*mask.shape[:-1], self.n_virtual)
        return torch.cat([mask.new_ones(shape), mask], dim=-1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, cache=None, use_cache: bool = True, **kwargs):
        batch, width = input_ids.shape
        if cache is None:
            cache = self.virtual_cache(batch)
        if attention_mask is not None:
            attention_mask = self._extend_mask(attention_mask)
        if position_ids is None:
            past = cache.get_seq_length()
            position_ids = torch.arange(past, past + width, device=input_ids.device).expand(batch, -1)
        else:  # the caller counts positions from its first real token; the virtual ones come before it
            position_ids = position_ids + self.n_virtual
        return self.base(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         cache=cache, use_cache=use_cache, **kwargs)

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                 num_return_sequences: int = 1, **kwargs):
        """`generate` of the base model from the virtual cache; returns rows shaped like the input + new tokens
        (or, with return_dict_in_generate, its output object with `sequences` cut the same way).

        generate() takes a pre-filled cache when input_ids also cover the cached positions (it only embeds
        the uncached ones), so placeholder ids stand in for the virtual tokens and are cut off again.
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if num_return_sequences > 1:  # expand here: generate() would not expand our cache with the ids
            input_ids = input_ids.repeat_interleave(num_return_sequences, dim=0)
            attention_mask = attention_mask.repeat_interleave(num_return_sequences, dim=0)
        batch = input_ids.shape[0]
        pad = kwargs.get("pad_token_id", self.config.pad_token_id)
        placeholder = input_ids.new_full((batch, self.n_virtual), int(pad if pad is not None else 0))
        out = self.base.generate(input_ids=torch.cat([placeholder, input_ids], dim=1),
                                 attention_mask=self._extend_mask(attention_mask),
                                 cache=self.virtual_cache(batch), **kwargs)
        if isinstance(out, torch.Tensor):
            return out[:, self.n_virtual:]
        out.sequences = out.sequences[:, self.n_virtual:]
        return out
