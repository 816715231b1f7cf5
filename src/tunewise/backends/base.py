"""The backend contract: what strategies, serve and agents may call on a model, and what it can do.

Two abstract base classes, one per kind of model: `CausalBackend` (prompting, label scoring, generation,
causal-LM fine-tuning) and `EncoderBackend` (classification heads, sentence embeddings). A backend declares
what it offers in `capabilities`; callers read those flags instead of probing for attributes, and
`require()` turns a missing one into a one-line `CapabilityError` before a strategy starts. A method whose
flag is off raises `CapabilityError` too. Backends are found by name in `tunewise.backends.registry`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Literal

from tunewise.errors import CapabilityError

if TYPE_CHECKING:
    import numpy as np

Kind = Literal["causal", "encoder"]
Messages = list[dict[str, str]]  # chat messages: [{"role": "system" | "user" | "assistant", "content": str}]
OnBatch = Callable[[int], None] | None  # progress: called with the number of items each finished batch held


@dataclass(frozen=True)
class Capabilities:
    """What a backend offers; strategies list the flags they need in `Strategy.needs`."""

    kind: Kind
    can_train: bool  # a trainable copy of the weights here: fresh_model() (causal) or classifier() (encoder)
    supports_logprobs: bool  # score() returns real label log-likelihoods
    needs_key: bool = False  # an API key is read from the environment
    local_weights: bool = False  # `model`/`tokenizer` are a torch model and a Hugging Face tokenizer in process
    finetune_api: bool = False  # the provider runs fine-tuning jobs (OpenAI-compatible /v1/fine_tuning/jobs)

    def offers(self, need: str) -> bool:
        """Whether the flag `need` is on; ValueError for a name that is no flag (a strategy's typo)."""
        flags = {f.name for f in fields(self)} - {"kind"}
        if need not in flags:
            raise ValueError(f"unknown capability '{need}' (known: {', '.join(sorted(flags))})")
        return bool(getattr(self, need))


class Backend(ABC):
    """What every backend has, whatever its kind. Subclasses set `name` and `capabilities` in __init__."""

    name: str  # the model name it was loaded from (registry name, e.g. 'openai:gpt-4o-mini' or a folder)
    capabilities: Capabilities
    model: Any = None  # the torch model behind it when `capabilities.local_weights`, else None
    tokenizer: Any = None  # its Hugging Face tokenizer when `capabilities.local_weights`, else None
    device: Any = "auto"  # torch.device of local weights; 'auto' where there are none (helpers pick their own)

    def require(self, strategy: str, kind: str, needs: Sequence[str]) -> None:
        """Fail before a strategy starts if this backend is of another kind or lacks a needed capability.

        Raises CapabilityError (a UserError: one line, CLI exit 2) naming the strategy and the fix.
        """
        caps = self.capabilities
        if caps.kind != kind:
            raise CapabilityError(
                f"strategy '{strategy}' needs a {kind} model but '{self.name}' is a {caps.kind} model; "
                f"set `{'encoder' if kind == 'encoder' else 'model'}` in the config")
        for need in needs:
            if not caps.offers(need):
                raise CapabilityError(
                    f"strategy '{strategy}' needs a backend with {need.replace('_', ' ')}, "
                    f"which '{self.name}' does not offer; pick a local Hugging Face model")

    def count_parameters(self) -> int:
        """Parameters of the local model (0 without local weights)."""
        return 0

    def peak_device_memory_mb(self) -> float | None:
        """Peak accelerator memory allocated so far, in MiB; None on CPU or without local weights."""
        return None

    @property
    def context_window(self) -> int | None:
        """Longest prompt + completion the model takes, in tokens; None when unknown (APIs, fakes)."""
        return None

    def unavailable(self, what: str, fix: str) -> CapabilityError:
        """The one-line error a method raises when this backend cannot offer `what`."""
        return CapabilityError(f"'{self.name}' {what}; {fix}")


class CausalBackend(Backend):
    """A causal language model: chat rendering, tokens, label scoring, generation, a trainable copy.

    Prompts are text rendered by `render` (so cost counts and caches see exactly what the model sees);
    token counts are the model's own tokens where it has a tokenizer, else the backend's estimate.
    """

    dtype: Any = None  # torch dtype of local weights (bf16 on capable GPUs, else fp32); None without

    # --- prompt formatting --------------------------------------------------------------------------------
    @abstractmethod
    def render(self, messages: Messages, add_generation_prompt: bool) -> str:
        """The model's prompt text for chat `messages` (its chat template, or a plain 'Input:/Output:' form).

        With `add_generation_prompt` the text ends where the assistant's answer starts."""

    @abstractmethod
    def split_prompt(self, shared: Messages, query: Messages) -> tuple[str, str]:
        """(prefix, suffix) with prefix + suffix == the rendered `shared + query` prompt (generation prompt
        added), cut where `shared` ends so the prefix's KV cache can be reused; ('', whole) when it cannot."""

    @abstractmethod
    def end_of_turn(self) -> str:
        """Text that closes an assistant answer (e.g. '<|im_end|>'), so scoring knows where a label stops."""

    @abstractmethod
    def answer_prefix(self) -> str:
        """Text between the generation prompt and the answer ('' for chat templates, ' ' for plain text)."""

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """Token ids of `text` without special tokens ([] for ''); an estimate's ids for API models."""

    @abstractmethod
    def count_tokens(self, text: str) -> int:
        """Prompt tokens `text` costs on this model (as the server counted it where one did)."""

    # --- inference ----------------------------------------------------------------------------------------
    @abstractmethod
    def score(self, prefix: str, suffixes: Sequence[str], continuations: Sequence[str], batch_size: int = 16,
              on_batch: OnBatch = None) -> np.ndarray:
        """Summed natural-log probability of each continuation after `prefix + suffix`.

        Returns a float64 array of shape (len(suffixes), len(continuations)). Every continuation must be
        non-empty (ValueError otherwise). `on_batch(n)` is called after each n suffixes. Backends without
        `capabilities.supports_logprobs` still return an array (an approximation; callers check the flag)."""

    @abstractmethod
    def generate(self, prompts: Sequence[str], max_new_tokens: int = 64, stop: Sequence[str] = (),
                 batch_size: int = 8, on_batch: OnBatch = None) -> list[tuple[str, int]]:
        """Greedy completion per prompt: [(text, completion tokens)], text stripped and cut at the first
        stop string or the end of turn; `max_new_tokens` bounds each completion (tokens)."""

    @abstractmethod
    def sample(self, prompts: Sequence[str], n: int = 1, temperature: float = 0.0, max_new_tokens: int = 64,
               stop: Sequence[str] = (), batch_size: int = 8, on_batch: OnBatch = None,
               top_p: float = 1.0) -> list[list[tuple[str, int]]]:
        """`n` completions per prompt: [[(text, completion tokens)] * n] per prompt; greedy (n copies of one
        answer) when `temperature` is 0, else nucleus sampling with `top_p`."""

    # --- weights ------------------------------------------------------------------------------------------
    def fresh_model(self) -> Any:
        """A new trainable copy of the base weights (a transformers causal LM on `device`, `dtype`).

        Only with `capabilities.can_train`; otherwise CapabilityError."""
        raise self.unavailable("has no local weights to train", "pick a local Hugging Face model")

    def with_model(self, model: Any) -> CausalBackend:
        """The same prompt format and tokenizer over another model: fine-tuned weights (local backends) or a
        fine-tuned model's name (API backends). CapabilityError where neither applies."""
        raise self.unavailable("cannot run other weights", "pick a local Hugging Face model")


class EncoderBackend(Backend):
    """A bidirectional encoder (BERT-like): new classification heads over its weights, sentence embeddings."""

    @abstractmethod
    def classifier(self, labels: Sequence[str]) -> Any:
        """A fresh transformers sequence classifier over the encoder's weights with a new head of
        len(labels) outputs (id2label from `labels`), on `device`. CapabilityError without `can_train`."""

    @abstractmethod
    def embed(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """L2-normalised sentence embeddings, float array of shape (len(texts), hidden size)."""
