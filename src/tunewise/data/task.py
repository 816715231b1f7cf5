"""The normalised task every strategy and metric sees; nothing downstream looks at raw columns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class Example:
    id: str
    input: str
    target: str
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass
class Task:
    name: str
    kind: Literal["classification", "generation"]
    train: list[Example]
    validation: list[Example]
    test: list[Example]
    instruction: str
    labels: list[str] = field(default_factory=list)
    max_input_tokens: int | None = None  # task.max_input_tokens: cap on prompt tokens (backends/context.py)
    long_inputs: str = "truncate"  # task.long_inputs: truncate | refuse

    @property
    def is_classification(self) -> bool:
        return self.kind == "classification"

    def summary(self) -> str:
        labels = f", {len(self.labels)} labels" if self.labels else ""
        return (f"{self.name} ({self.kind}{labels}): {len(self.train)} train, "
                f"{len(self.validation)} validation, {len(self.test)} test examples")
