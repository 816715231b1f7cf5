"""Prompt building and the two prompt predictors (label scoring, generation) shared by strategies."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from tunewise.data import Example, Task
from tunewise.strategies.base import Prediction, Predictor

Messages = list[dict[str, str]]


def system_prompt(task: Task, instruction: str | None = None, role: str | None = None,
                  list_labels: bool = True) -> str:
    """The instruction, plus the closed label set as an output constraint for classification."""
    parts = [role] if role else []
    parts.append(instruction or task.instruction)
    if task.is_classification and list_labels:
        parts.append("Answer with exactly one of: " + ", ".join(task.labels) + ".")
    return "\n".join(parts)


def demo_messages(demos: Sequence[Example]) -> Messages:
    out: Messages = []
    for ex in demos:
        out += [{"role": "user", "content": ex.input}, {"role": "assistant", "content": ex.target}]
    return out


def softmax(row: np.ndarray) -> np.ndarray:
    z = np.exp(row - row.max())
    return z / z.sum()


class ScoringPredictor(Predictor):
    """Classification by the log-likelihood of each label after the prompt: no parsing, no failures.

    The shared part of the prompt (system + demonstrations) is encoded once and its KV cache reused.
    """

    def __init__(self, backend, task: Task, shared: Messages, batch_size: int = 16):
        self.backend, self.task, self.shared, self.batch_size = backend, task, shared, batch_size
        self.model = getattr(backend, "model", None)
        eot = backend.end_of_turn()
        self.continuations = [backend.answer_prefix() + label + eot for label in task.labels]

    def predict(self, examples: Sequence[Example], on_batch: Callable[[int], None] | None = None
                ) -> list[Prediction]:
        if not examples:
            return []
        pairs = [self.backend.split_prompt(self.shared, [{"role": "user", "content": e.input}])
                 for e in examples]
        prefixes = {p for p, _ in pairs}
        prefix = pairs[0][0] if len(prefixes) == 1 else ""
        suffixes = [s if prefix else p + s for p, s in pairs]
        logp = self.backend.score(prefix, suffixes, self.continuations, batch_size=self.batch_size,
                                  on_batch=on_batch)
        prefix_tokens = self.backend.count_tokens(prefix)
        label_tokens = [self.backend.count_tokens(label) for label in self.task.labels]
        preds = []
        for row, suffix in zip(logp, suffixes, strict=True):
            probs = softmax(row)
            best = int(np.argmax(row))
            preds.append(Prediction(
                output=self.task.labels[best],
                scores={label: float(p) for label, p in zip(self.task.labels, probs, strict=True)},
                prompt_tokens=prefix_tokens + self.backend.count_tokens(suffix),
                completion_tokens=label_tokens[best]))
        return preds


class GenerationPredictor(Predictor):
    """Free generation (generation tasks, or backends without log-probabilities)."""

    def __init__(self, backend, shared: Messages, max_new_tokens: int = 64, batch_size: int = 8,
                 postprocess: Callable[[str], str] = str.strip):
        self.backend, self.shared = backend, shared
        self.model = getattr(backend, "model", None)
        self.max_new_tokens, self.batch_size, self.postprocess = max_new_tokens, batch_size, postprocess

    def predict(self, examples: Sequence[Example], on_batch: Callable[[int], None] | None = None
                ) -> list[Prediction]:
        prompts = [self.backend.render(self.shared + [{"role": "user", "content": e.input}],
                                       add_generation_prompt=True) for e in examples]
        outs = self.backend.generate(prompts, max_new_tokens=self.max_new_tokens,
                                     batch_size=self.batch_size, on_batch=on_batch)
        return [Prediction(output=self.postprocess(text), prompt_tokens=self.backend.count_tokens(p),
                           completion_tokens=n, trace=[{"raw": text}] if self.postprocess is not str.strip
                           else None)
                for p, (text, n) in zip(prompts, outs, strict=True)]


def prompt_predictor(backend, task: Task, shared: Messages, batch_size: int = 16,
                     max_new_tokens: int = 64) -> Predictor:
    """Label scoring when the task is classification and the backend gives log-probs; else generation."""
    if task.is_classification and backend.capabilities.supports_logprobs:
        return ScoringPredictor(backend, task, shared, batch_size=batch_size)
    return GenerationPredictor(backend, shared, max_new_tokens=max_new_tokens, batch_size=batch_size)
