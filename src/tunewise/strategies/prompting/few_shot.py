"""few-shot: k demonstrations from the training split, chosen at random, balanced per label, or per
example as its k nearest training examples by sentence embeddings (kNN, Liu et al. 2021)."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import Field

from tunewise.data import Example
from tunewise.registry import register
from tunewise.strategies.base import Strategy
from tunewise.strategies.prompting._common import instruction_predictor
from tunewise.strategies.prompting._plain import FORMAT_HELP
from tunewise.strategies.prompting._structured import StructuredOutputConfig


class FewShotConfig(StructuredOutputConfig):
    k: int = Field(8, gt=0, le=64, description="Number of demonstrations in the prompt.")
    selection: Literal["balanced", "random", "similar"] = Field(
        "balanced", description="balanced: round-robin over labels (classification); random: uniform; similar: "
        "per example, its k nearest training examples by sentence embeddings (the nearest closest to the query).")
    embedder: str = Field("minilm-l6", description="selection=similar: the encoder whose mean-pooled embeddings "
                          "rank neighbours (embedded name, local folder, or Hugging Face name while online).")
    instruction: str | None = Field(None, description="Replaces the task's instruction.")
    prompt_format: Literal["chat", "plain"] = Field("chat", description=FORMAT_HELP)
    role: str | None = Field(None, description="A role/system line put before the instruction.")
    max_new_tokens: int = Field(64, gt=0, description="Generation tasks: longest answer in tokens.")
    calibrate: bool = Field(False, description="Contextual calibration (Zhao et al. 2021): divide out the label "
                            "distribution the prompt gives content-free inputs ('N/A', '', '[MASK]'). "
                            "Classification with label scoring only; with selection=similar it is measured "
                            "per example and costs three extra scorings each.")


def select_demos(train: list[Example], k: int, selection: str, seed: int, classification: bool
                 ) -> list[Example]:
    rng = random.Random(seed)
    if selection == "random" or not classification:
        return rng.sample(train, min(k, len(train)))
    by_label: dict[str, list[Example]] = defaultdict(list)
    for ex in train:
        by_label[ex.target].append(ex)
    for pool in by_label.values():
        rng.shuffle(pool)
    labels = sorted(by_label)
    rng.shuffle(labels)  # so no label is always first or always nearest the query
    demos: list[Example] = []
    while len(demos) < min(k, len(train)):
        for label in labels:
            if by_label[label] and len(demos) < k:
                demos.append(by_label[label].pop())
    return demos


def _unit(vectors) -> np.ndarray:
    v = np.asarray(vectors, dtype=np.float64)
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


class NearestDemos:
    """Per example, the k training examples with the most similar embeddings (cosine), most similar last.

    Training inputs are embedded once (at fit); each predict() batch embeds its inputs in one call. An
    example never gets itself as a demonstration (same id), so predicting on training data does not leak.
    """

    def __init__(self, train: list[Example], k: int, embedder):
        self.train, self.k, self.embedder = train, min(k, len(train)), embedder
        self.vectors = _unit(embedder.embed([e.input for e in train])) if train else None

    def __call__(self, examples: Sequence[Example]) -> list[list[Example]]:
        if self.vectors is None or not examples:
            return [[] for _ in examples]
        sims = _unit(self.embedder.embed([e.input for e in examples])) @ self.vectors.T
        out = []
        for e, row in zip(examples, sims, strict=True):
            order = np.argsort(-row, kind="stable")  # ties keep training order: deterministic
            picked = [self.train[j] for j in order[:self.k + 1] if self.train[j].id != e.id][:self.k]
            out.append(picked[::-1])  # the nearest next to the query, where it counts most
        return out


@register
class FewShot(Strategy):
    name = "few-shot"
    family = "prompting"
    summary = "k demonstrations (balanced, random, or nearest by embeddings) before the query."
    Config = FewShotConfig

    def fit(self, backend, task, ctx):
        c = self.config

        def demonstrations():
            if c.selection == "similar":
                demos_for = NearestDemos(task.train, c.k, ctx.backends(c.embedder, "encoder"))
                ctx.stats["demonstrations"] = f"{demos_for.k} nearest per example by {c.embedder} (see traces)"
                return [], demos_for
            demos = select_demos(task.train, c.k, c.selection, ctx.seed, task.is_classification)
            ctx.stats["demonstrations"] = [d.id for d in demos]
            return demos, None

        return instruction_predictor(backend, task, ctx, c, demonstrations)
