"""The normalised task every strategy and metric sees; nothing downstream looks at raw columns."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
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
    label_names: dict[str, str] = field(default_factory=dict)  # stored label -> name shown to models (labels.py)
    # task.input_name / task.target_name: what plain-completion prompts call the input and the answer
    # ("Review: ...\nSentiment:"); None: the generic "Input" / "Answer"
    input_name: str | None = None
    target_name: str | None = None

    def name_of(self, label: str) -> str:
        """The name a model is shown for a stored label (the label itself when it has none)."""
        return self.label_names.get(label, label)

    def named(self) -> Task:
        """The task as models see it: every label and target replaced by its name (ids, inputs and meta kept);
        the task itself when no label has a name. Predictions on it map back with `stored_label`."""
        if not self.label_names:
            return self
        def rename(examples: list[Example]) -> list[Example]:
            return [replace(e, target=self.name_of(e.target)) for e in examples]
        return replace(self, train=rename(self.train), validation=rename(self.validation), test=rename(self.test),
                       labels=[self.name_of(x) for x in self.labels], label_names={})

    def stored_label(self, name: str) -> str:
        """The stored label a name (or a stored label) stands for; anything else unchanged."""
        return {v: k for k, v in self.label_names.items()}.get(name, name)

    @property
    def is_classification(self) -> bool:
        return self.kind == "classification"

    def summary(self) -> str:
        labels = f", {len(self.labels)} labels" if self.labels else ""
        if self.label_names:
            labels += ": " + ", ".join(f"{k} = {v}" for k, v in list(self.label_names.items())[:6]) + \
                (", ..." if len(self.label_names) > 6 else "")
        return (f"{self.name} ({self.kind}{labels}): {len(self.train)} train, "
                f"{len(self.validation)} validation, {len(self.test)} test examples")
