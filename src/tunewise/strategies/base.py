"""The strategy interface shared by prompting and fine-tuning (as DSPy's `compile`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from tunewise.config import Strict
from tunewise.data import Example, Task


class StrategyConfig(Strict):
    """Options every strategy has; each strategy subclasses this with its own typed fields."""

    name: str = Field(description="Registered strategy name (see `tunewise strategies`).")
    id: str | None = Field(None, description="Name of this entry in results (defaults to `name`); "
                           "lets one run compare several settings of one strategy.")

    @model_validator(mode="after")
    def _default_id(self) -> StrategyConfig:
        if self.id is None:
            object.__setattr__(self, "id", self.name)
        return self


@dataclass
class Prediction:
    output: str
    scores: dict[str, float] | None = None  # label -> probability, when the predictor has them
    prompt_tokens: int = 0
    completion_tokens: int = 0
    trace: list[dict[str, Any]] | None = None


class Predictor(ABC):
    """What a fitted strategy returns: turns examples into predictions, in batches."""

    model: Any = None  # the torch model behind it, when there is one (serving, tests)

    @abstractmethod
    def predict(self, examples: Sequence[Example], on_batch: Callable[[int], None] | None = None
                ) -> list[Prediction]: ...


@dataclass
class FitContext:
    """What the experiment hands a strategy: where to save, the seed, and where to report progress."""

    artifact_dir: Path
    seed: int
    progress: Any = None  # tunewise.progress.Progress
    log: Callable[[dict[str, Any]], None] = lambda record: None  # training curves -> store
    stats: dict[str, Any] = field(default_factory=dict)  # train_tokens, trainable_params, ... -> cost
    on_train_start: Callable[[Any], None] | None = None  # sees the model before training (tests, audits)


class Strategy(ABC):
    name: ClassVar[str]
    family: ClassVar[Literal["prompting", "finetuning"]]
    backend_kind: ClassVar[Literal["causal", "encoder"]] = "causal"
    needs: ClassVar[tuple[str, ...]] = ()  # capabilities, e.g. ("can_train",)
    task_kinds: ClassVar[tuple[str, ...]] = ("classification", "generation")
    summary: ClassVar[str] = ""
    Config: ClassVar[type[StrategyConfig]] = StrategyConfig

    def __init__(self, config: StrategyConfig):
        self.config = config

    @abstractmethod
    def fit(self, backend, task: Task, ctx: FitContext) -> Predictor: ...

    def load(self, backend, task: Task, ctx: FitContext) -> Predictor | None:
        """Rebuild a finished fit from its saved artifact (resume); None when there is nothing to load."""
        return None
