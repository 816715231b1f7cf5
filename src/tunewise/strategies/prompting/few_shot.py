"""few-shot: k demonstrations from the training split, chosen at random or balanced per label."""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Literal

from pydantic import Field

from tunewise.data import Example
from tunewise.registry import register
from tunewise.strategies.base import Strategy, StrategyConfig
from tunewise.strategies.prompting._common import demo_messages, prompt_predictor, system_prompt


class FewShotConfig(StrategyConfig):
    k: int = Field(8, gt=0, le=64, description="Number of demonstrations in the prompt.")
    selection: Literal["balanced", "random"] = Field(
        "balanced", description="balanced: round-robin over labels (classification); random: uniform.")
    instruction: str | None = Field(None, description="Replaces the task's instruction.")
    role: str | None = Field(None, description="A role/system line put before the instruction.")
    max_new_tokens: int = Field(64, gt=0, description="Generation tasks: longest answer in tokens.")


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


@register
class FewShot(Strategy):
    name = "few-shot"
    family = "prompting"
    summary = "k demonstrations (balanced or random) before the query; shared prefix cached."
    Config = FewShotConfig

    def fit(self, backend, task, ctx):
        c = self.config
        demos = select_demos(task.train, c.k, c.selection, ctx.seed, task.is_classification)
        ctx.stats["demonstrations"] = [d.id for d in demos]
        shared = [{"role": "system", "content": system_prompt(task, c.instruction, c.role)}]
        return prompt_predictor(backend, task, shared + demo_messages(demos), max_new_tokens=c.max_new_tokens)
