"""The plain-completion prompt format: the same messages laid out as text without the chat template, as
lm-evaluation-harness's classification tasks do ("Review: ...\nSentiment:" scored by the log-likelihood of
" positive").

A small instruction-tuned model often ranks labels better after such a cue than after its chat template's
assistant turn (SST-2 on SmolLM2-135M: see bench/prompt_scoring_vs_lmeval.py); which is better is a setting
chosen on validation (`prompt_format`). `PlainFormat` wraps a causal backend with local weights and changes
only how prompts are rendered; scoring, generation, tokens and weights are the wrapped backend's.

Layout (system line, demonstrations, query), "Input" and "Answer" being `task.input_name` and
`task.target_name` where the task names its fields (as DSPy signatures name fields and lm-eval's SST-2
template writes "Review" and "Sentiment"):

    {instruction}

    Input: {demonstration}
    Answer: {label}

    Input: {query}
    Answer:

The answer cue does not list the labels (label scoring ranks only them anyway): listed, their order moved
accuracy more than anything else measured. SmolLM2-135M, 400 SST-2 test sentences, calibrated, cue after
"Review:": "Sentiment (negative or positive):" 62.5%, "(positive or negative):" 75.5%, "Sentiment:" 78.0%
(with the instruction line); 200 AG News test articles, "Topic (Business, ... or World):" 39.5%, "Topic:"
64.5%.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tunewise.backends.base import CausalBackend, Messages
from tunewise.data import Task
from tunewise.errors import UserError

FORMATS = ("chat", "plain")
FORMAT_HELP = ("chat: the model's chat template (system, user and assistant turns); plain: plain completion "
               "text, 'Input: ...' then 'Answer:' (task.input_name / task.target_name "
               "rename the two), as lm-evaluation-harness prompts (local models only).")


def answer_cue(task: Task) -> str:
    """`task.target_name`, else 'Answer' (the labels are not listed: see the module docstring)."""
    return task.target_name or "Answer"


class PlainFormat(CausalBackend):
    """`inner` with prompts rendered as plain completion text ('{input_cue}: ...', '{cue}: ...'); everything
    else is `inner`'s."""

    def __init__(self, inner: CausalBackend, cue: str = "Answer", input_cue: str = "Input"):
        self.inner, self.cue, self.input_cue = inner, cue, input_cue
        self.name, self.capabilities, self.model = inner.name, inner.capabilities, inner.model
        self.tokenizer, self.device, self.dtype = inner.tokenizer, inner.device, inner.dtype

    def render(self, messages: Messages, add_generation_prompt: bool) -> str:
        parts = []
        for m in messages:
            if m["role"] == "system":
                parts.append(f"{m['content']}\n\n")
            elif m["role"] == "user":
                parts.append(f"{self.input_cue}: {m['content']}\n")
            else:
                parts.append(f"{self.cue}: {m['content']}\n\n")
        return "".join(parts) + (f"{self.cue}:" if add_generation_prompt else "")

    def split_prompt(self, shared: Messages, query: Messages) -> tuple[str, str]:
        full = self.render(shared + query, add_generation_prompt=True)
        head = self.render(shared, add_generation_prompt=False)
        return (head, full[len(head):]) if shared and full.startswith(head) else ("", full)

    def end_of_turn(self) -> str:
        return "\n"

    def answer_prefix(self) -> str:
        return " "

    def encode(self, text: str) -> list[int]:
        return self.inner.encode(text)

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def score(self, prefix: str, suffixes: Sequence[str], continuations: Sequence[str], batch_size: int = 16,
              on_batch=None):
        return self.inner.score(prefix, suffixes, continuations, batch_size=batch_size, on_batch=on_batch)

    def generate(self, prompts: Sequence[str], max_new_tokens: int = 64, stop: Sequence[str] = (),
                 batch_size: int = 8, on_batch=None, constraint=None) -> list[tuple[str, int]]:
        # a plain-text answer ends where the next "Input:" block would start
        return self.inner.generate(prompts, max_new_tokens, (*stop, "\n\n"), batch_size, on_batch,
                                   constraint=constraint)

    def sample(self, prompts: Sequence[str], n: int = 1, temperature: float = 0.0, max_new_tokens: int = 64,
               stop: Sequence[str] = (), batch_size: int = 8, on_batch=None, top_p: float = 1.0):
        return self.inner.sample(prompts, n, temperature, max_new_tokens, (*stop, "\n\n"), batch_size, on_batch,
                                 top_p)

    def count_parameters(self) -> int:
        return self.inner.count_parameters()

    def peak_device_memory_mb(self) -> float | None:
        return self.inner.peak_device_memory_mb()

    @property
    def context_window(self) -> int | None:
        return self.inner.context_window

    def fresh_model(self) -> Any:
        return self.inner.fresh_model()

    def with_model(self, model: Any) -> CausalBackend:
        return PlainFormat(self.inner.with_model(model), self.cue, self.input_cue)


def formatted(backend, task: Task, prompt_format: str, where: str):
    """`backend` itself for chat, a `PlainFormat` over it for plain. UserError (naming `where`) for plain on a
    backend without local weights, whose server applies its own chat template."""
    if prompt_format == "chat":
        return backend
    if not backend.capabilities.local_weights:
        raise UserError(f"{where}.prompt_format: plain needs a local model ('{backend.name}' is served through an "
                        "API that applies its own chat format); use prompt_format: chat")
    return PlainFormat(backend, answer_cue(task), task.input_name or "Input")
