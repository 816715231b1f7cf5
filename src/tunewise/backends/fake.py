"""A deterministic fake causal backend for tests: no weights, instant, same interface.

A label's log-likelihood is the share of the label's words whose first four letters occur in the
query, so predictions are predictable without any model. 'fake-nologprobs' offers no log-probabilities
(like many APIs) and answers by generation: it echoes the best label, or the last number in the query.
`FakeEncoder` is the encoder slot's fake: hashed bag-of-words embeddings, nothing to train.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Sequence

import numpy as np

from tunewise.backends.base import Capabilities, CausalBackend, EncoderBackend


class FakeBackend(CausalBackend):
    """No weights (`model` is None): fresh_model() and with_model() raise CapabilityError."""

    def __init__(self, name: str = "fake"):
        self.name = name
        self.capabilities = Capabilities(kind="causal", can_train=False,
                                         supports_logprobs="nologprobs" not in name)

    def render(self, messages, add_generation_prompt: bool) -> str:
        text = "".join(f"<{m['role']}>{m['content']}</{m['role']}>" for m in messages)
        return text + ("<assistant>" if add_generation_prompt else "")

    def end_of_turn(self) -> str:
        return "</assistant>"

    def answer_prefix(self) -> str:
        return ""

    def split_prompt(self, shared, query) -> tuple[str, str]:
        return self.render(shared, False), self.render(query, True)

    def encode(self, text: str) -> list[int]:
        return [hash(w) % 50000 for w in text.split()]

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    @staticmethod
    def _affinity(query: str, label: str) -> float:
        words = re.findall(r"\w+", query.lower())
        stems = {w[:4] for w in words}
        parts = re.findall(r"\w+", label.lower().replace("</assistant>", ""))
        return sum(p[:4] in stems for p in parts) / max(len(parts), 1)

    def score(self, prefix: str, suffixes: Sequence[str], continuations: Sequence[str], batch_size: int = 16,
              on_batch: Callable[[int], None] | None = None) -> np.ndarray:
        out = np.array([[np.log(1e-3 + self._affinity(s, c)) for c in continuations] for s in suffixes])
        if on_batch:
            on_batch(len(suffixes))
        return out

    def sample(self, prompts: Sequence[str], n: int = 1, temperature: float = 0.0, max_new_tokens: int = 64,
               stop: Sequence[str] = (), batch_size: int = 8, on_batch: Callable[[int], None] | None = None,
               top_p: float = 1.0) -> list[list[tuple[str, int]]]:
        return [[out] * n for out in self.generate(prompts, max_new_tokens, stop, batch_size, on_batch)]

    def generate(self, prompts: Sequence[str], max_new_tokens: int = 64, stop: Sequence[str] = (),
                 batch_size: int = 8, on_batch: Callable[[int], None] | None = None) -> list[tuple[str, int]]:
        outs = []
        for p in prompts:
            query = p.rsplit("<user>", 1)[-1]
            numbers = re.findall(r"-?\d+(?:\.\d+)?", query)
            options = re.findall(r"one of: ([^.<]+)", p)
            labels = [x.strip() for x in options[0].split(",")] if options else []
            if labels:
                text = max(labels, key=lambda lab: self._affinity(query, lab))
            else:
                text = f"The answer is {numbers[-1]}" if numbers else "unknown"
            outs.append((text, len(text.split())))
        if on_batch:
            on_batch(len(prompts))
        return outs


class FakeEncoder(EncoderBackend):
    """The encoder slot's fake: no weights to train (classifier() raises CapabilityError); embeddings are
    hashed bags of words, so texts sharing words are near each other."""

    DIM = 64

    def __init__(self, name: str = "fake"):
        self.name = name
        self.capabilities = Capabilities(kind="encoder", can_train=False, supports_logprobs=False)

    def classifier(self, labels: Sequence[str]):
        raise self.unavailable("has no weights to put a classifier on", "set `encoder` to a local encoder")

    def embed(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        out = np.zeros((len(texts), self.DIM))
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[row, zlib.crc32(word.encode()) % self.DIM] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
