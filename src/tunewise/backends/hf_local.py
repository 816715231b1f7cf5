"""Local Hugging Face models through transformers: causal LMs (prompting, LM fine-tuning) and encoders."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from tunewise.backends import embedded
from tunewise.backends.base import Capabilities, CausalBackend, EncoderBackend
from tunewise.backends.context import BATCH_TOKENS, PREFILL_CHUNK, check_prompt, model_context, token_batches
from tunewise.backends.scoring import cache_kwarg, score_continuations
from tunewise.errors import UserError

if TYPE_CHECKING:
    from tunewise.backends.constrained import Constraint

Messages = list[dict[str, str]]
# transformers warns on every save of a model it did not shard; it is noise for single-device runs.
logging.getLogger("transformers.distributed.tensor_parallel").setLevel(logging.ERROR)


def pick_device(device: str) -> torch.device:
    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def _dtype_for(device: torch.device) -> torch.dtype:
    # bf16 on GPUs that support it; fp32 on CPU, where bf16 weights lose accuracy in training.
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def _load(loader: Callable, name: str, **kwargs):
    path = embedded.resolve(name)
    try:
        return loader(path, **kwargs)
    except OSError as err:
        raise UserError(
            f"model '{name}': could not load it ({str(err).splitlines()[0]}); give a local folder, an "
            f"embedded name ({', '.join(embedded.EMBEDDED)}), or a Hugging Face name while online") from None


class CausalLMBackend(CausalBackend):
    """A causal LM: label scoring by log-likelihood, generation, and a trainable copy for fine-tuning."""

    max_batch_tokens = BATCH_TOKENS  # rows x padded prompt tokens per forward pass (see backends/context.py)

    def __init__(self, name: str, device: str = "auto", model=None, tokenizer=None):
        from transformers import AutoTokenizer

        self.name = name
        self.device = pick_device(device)
        self.dtype = _dtype_for(self.device)
        self.capabilities = Capabilities(kind="causal", can_train=True, supports_logprobs=True, local_weights=True,
                                         constrained_output=True)
        self.tokenizer = tokenizer or _load(AutoTokenizer.from_pretrained, name)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = model if model is not None else self.fresh_model()
        self.model.eval()
        self._cache_kw = cache_kwarg(self.model)

    def fresh_model(self):
        """A new copy of the base weights (fine-tuning must never touch the shared model)."""
        from transformers import AutoModelForCausalLM

        return _load(AutoModelForCausalLM.from_pretrained, self.name, dtype=self.dtype).to(self.device)

    def with_model(self, model) -> CausalLMBackend:
        """The same tokenizer and prompt format over another model (e.g. a fine-tuned one)."""
        return CausalLMBackend(self.name, device=str(self.device), model=model, tokenizer=self.tokenizer)

    def count_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def peak_device_memory_mb(self) -> float | None:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        return None

    @property
    def context_window(self) -> int | None:
        # the config's positions and the tokenizer's limit, less a prompt-learning model's virtual tokens
        return model_context(self.model, self.tokenizer)

    # --- prompt formatting -------------------------------------------------------------------
    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def render(self, messages: Messages, add_generation_prompt: bool) -> str:
        if self.has_chat_template:
            return self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=add_generation_prompt)
        # Plain-text fallback for base models without a chat template.
        parts = []
        for m in messages:
            prefix = {"system": "", "user": "Input: ", "assistant": "Output: "}[m["role"]]
            parts.append(f"{prefix}{m['content']}\n" + ("\n" if m["role"] == "assistant" else ""))
        text = "".join(parts)
        return text + ("Output:" if add_generation_prompt else "")

    def end_of_turn(self) -> str:
        """What follows an assistant answer (e.g. '<|im_end|>'), so scoring knows where a label stops."""
        if not self.has_chat_template:
            return "\n"
        probe = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "@@ANSWER@@"}]
        text = self.render(probe, add_generation_prompt=False)
        tail = text.split("@@ANSWER@@", 1)[1]
        return tail.rstrip() or (self.tokenizer.eos_token or "\n")

    def answer_prefix(self) -> str:
        """Text between the generation prompt and the answer (a space for the plain format)."""
        return "" if self.has_chat_template else " "

    def split_prompt(self, shared: Messages, query: Messages) -> tuple[str, str]:
        """Render shared+query and cut it where the shared part ends, so its KV cache can be reused."""
        full = self.render(shared + query, add_generation_prompt=True)
        if not shared:
            return "", full
        head = self.render(shared, add_generation_prompt=False)
        if full.startswith(head):
            return head, full[len(head):]
        return "", full

    def encode(self, text: str) -> list[int]:
        # verbose=False: a text over the tokenizer's model_max_length is ours to handle (backends/context.py)
        return self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"] if text else []

    def count_tokens(self, text: str) -> int:
        return len(self.encode(text))

    # --- inference ------------------------------------------------------------------------------
    def score(self, prefix: str, suffixes: Sequence[str], continuations: Sequence[str],
              batch_size: int = 16, on_batch: Callable[[int], None] | None = None) -> np.ndarray:
        """Summed log-probability of each continuation after prefix+suffix: shape (suffixes, continuations)."""
        head, conts = self.encode(prefix), [self.encode(c) for c in continuations]
        rows = [self.encode(s) for s in suffixes]
        if rows:
            check_prompt(len(head) + max(map(len, rows)), self.context_window, max(map(len, conts), default=0))
        return score_continuations(
            self.model, head, rows, conts, batch_size=batch_size, cache_kw=self._cache_kw, on_batch=on_batch,
            max_batch_tokens=self.max_batch_tokens)

    @torch.no_grad()
    def generate(self, prompts: Sequence[str], max_new_tokens: int = 64, stop: Sequence[str] = (),
                 batch_size: int = 8, on_batch: Callable[[int], None] | None = None,
                 constraint: Constraint | None = None) -> list[tuple[str, int]]:
        """Greedy generation; returns (text, completion tokens) per prompt, cut at the first stop string.
        `constraint` (a `constrained.Constraint`): the text must match it (grammar-constrained decoding)."""
        return [s[0] for s in self.sample(prompts, 1, 0.0, max_new_tokens, stop, batch_size, on_batch,
                                          constraint=constraint)]

    @torch.no_grad()
    def sample(self, prompts: Sequence[str], n: int = 1, temperature: float = 0.0, max_new_tokens: int = 64,
               stop: Sequence[str] = (), batch_size: int = 8, on_batch: Callable[[int], None] | None = None,
               top_p: float = 1.0, constraint: Constraint | None = None) -> list[list[tuple[str, int]]]:
        """n completions per prompt (greedy when temperature is 0): [[(text, completion tokens), ...], ...]."""
        tok = self.tokenizer
        tok.padding_side = "left"
        stops = [s for s in stop if s] + [self.end_of_turn()]
        sampling = temperature > 0
        results: list[list[tuple[str, int]]] = []
        lengths = [len(self.encode(p)) for p in prompts]
        context = self.context_window
        for group in token_batches(lengths, batch_size, self.max_batch_tokens, n if sampling else 1):
            check_prompt(max(lengths[i] for i in group), context, max_new_tokens)
            batch = [prompts[i] for i in group]
            enc = tok(batch, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
            kwargs = {"do_sample": True, "temperature": temperature, "top_p": top_p} if sampling else \
                {"do_sample": False}
            if constraint is not None:  # one processor per generate call: it tracks each row's grammar state
                from tunewise.backends.constrained import logits_processor

                kwargs["logits_processor"] = [logits_processor(self.model, tok, constraint)]
            if enc["input_ids"].shape[1] > PREFILL_CHUNK:  # a long prompt is prefilled a chunk at a time
                kwargs["prefill_chunk_size"] = PREFILL_CHUNK
            out = self.model.generate(
                **enc, max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id, stop_strings=stops,
                tokenizer=tok, num_return_sequences=n if sampling else 1, **kwargs)
            rows = out[:, enc["input_ids"].shape[1]:]
            per_prompt = n if sampling else 1
            for i in range(len(batch)):
                outs = []
                for row in rows[i * per_prompt:(i + 1) * per_prompt]:
                    ids = [int(t) for t in row if int(t) != tok.pad_token_id]
                    text = tok.decode(ids, skip_special_tokens=False)
                    cut = min([text.find(s) for s in stops if s in text], default=len(text))
                    outs.append((text[:cut].strip(), len(ids)))
                results.append(outs * (n // per_prompt))
            if on_batch:
                on_batch(len(batch))
        return results


class HFEncoderBackend(EncoderBackend):
    """A bidirectional encoder (BERT-like) for classification heads and sentence embeddings."""

    def __init__(self, name: str, device: str = "auto"):
        from transformers import AutoTokenizer

        self.name = name
        self.device = pick_device(device)
        self.capabilities = Capabilities(kind="encoder", can_train=True, supports_logprobs=False, local_weights=True)
        self.path = embedded.resolve(name)
        self.tokenizer = _load(AutoTokenizer.from_pretrained, name)
        self._encoder = None  # the bare encoder for embed(), loaded on first use
        self._context: int | None = None

    @property
    def context_window(self) -> int | None:
        """The encoder's positions (its config) and its tokenizer's limit, in tokens; read once, no weights."""
        if self._context is None:
            from transformers import AutoConfig

            self._context = model_context(tokenizer=self.tokenizer, config=_load(AutoConfig.from_pretrained, self.name))
        return self._context

    def classifier(self, labels: Sequence[str]):
        """A fresh sequence classifier over the encoder's weights, with a new head for `labels`."""
        from transformers import AutoModelForSequenceClassification

        logging.getLogger("transformers.modeling_utils").setLevel(logging.ERROR)  # "head newly initialised"
        model = _load(
            AutoModelForSequenceClassification.from_pretrained, self.name, num_labels=len(labels),
            id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)})
        return model.to(self.device)

    @torch.no_grad()
    def embed(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Mean-pooled, L2-normalised sentence embeddings (as sentence-transformers computes them)."""
        from transformers import AutoModel

        if self._encoder is None:
            self._encoder = _load(AutoModel.from_pretrained, self.name).to(self.device).eval()
        chunks = []
        for start in range(0, len(texts), batch_size):
            enc = self.tokenizer(list(texts[start:start + batch_size]), padding=True, truncation=True,
                                 max_length=256, return_tensors="pt").to(self.device)
            hidden = self._encoder(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            chunks.append(torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy())
        return np.concatenate(chunks) if chunks else np.zeros((0, 0))
