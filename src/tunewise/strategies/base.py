"""The strategy interface shared by prompting and fine-tuning (as DSPy's `compile`), the context a fit
gets, and `fit_or_load`: the one way a strategy is fitted, or reloaded from its saved artifact."""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from tunewise.backends.cache import BackendCache
from tunewise.data import Example, Task
from tunewise.foundation import Strict, write_atomic
from tunewise.prices import PricesConfig

STATS_FILE = "fit.json"  # in a strategy's artifact folder: its fit stats; present = the fit finished


class SelectionConfig(Strict):
    """The run's `selection:`: how many candidate settings each strategy tries on validation (`_select.py`)."""

    budget: int = Field(2, ge=1, le=64, description="Candidate settings each strategy tries, judged on validation "
                        "(the same number for both families: a prompting candidate is one validation evaluation, "
                        "a fine-tuning candidate one training and its evaluation). 1: use each strategy's settings "
                        "as written.")
    examples: int = Field(64, ge=1, description="Validation examples (a seeded sample) each candidate is judged on.")


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


class StoredLabels(Predictor):
    """A predictor fitted on `task.named()` (labels shown to models by name, data/labels.py), answering in the
    stored labels: examples reach it with named targets, and each output and score key maps back, so
    metrics, the store, results and reports keep the stored label. Other attributes are the inner's."""

    def __init__(self, inner: Predictor, task: Task):
        self.inner, self.stored_task, self.model = inner, task, getattr(inner, "model", None)

    def predict(self, examples: Sequence[Example], on_batch: Callable[[int], None] | None = None
                ) -> list[Prediction]:
        shown = [replace(e, target=self.stored_task.name_of(e.target)) for e in examples]
        back = self.stored_task.stored_label
        return [replace(p, output=back(p.output), scores=None if p.scores is None else
                        {back(k): v for k, v in p.scores.items()}) for p in self.inner.predict(shown, on_batch)]

    def __getattr__(self, name: str) -> Any:
        if name in ("inner", "stored_task"):  # not set yet (copy, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)


def stored_labels(predictor: Predictor | None, task: Task) -> Predictor | None:
    """`predictor` (fitted on `task.named()`) answering in `task`'s stored labels; unchanged without names."""
    return StoredLabels(predictor, task) if predictor is not None and task.label_names else predictor


@dataclass
class FitContext:
    """What the run hands a strategy: where to save, the seed, where to report progress, the run's backends
    (other models a strategy needs: a teacher, an optimizer model, an embedder), consent and prices."""

    artifact_dir: Path
    seed: int
    progress: Any = None  # tunewise.progress.Progress
    log: Callable[[dict[str, Any]], None] = lambda record: None  # training curves -> store
    stats: dict[str, Any] = field(default_factory=dict)  # train_tokens, trainable_params, ... -> cost
    on_train_start: Callable[[Any], None] | None = None  # sees the model before training (tests, audits)
    # after each training epoch: gets `answer(examples) -> outputs` of the model as it is then (a search's
    # intermediate validation scores, which `tunewise tune --engine ray` reports to Ray Tune's ASHA)
    on_epoch: Callable[[Callable[[Sequence[Example]], list[str]]], None] | None = None
    # (model name, kind) -> backend, each loaded once: the run's cache (a private one outside a run)
    backends: Callable[[str, str], Any] = field(default_factory=BackendCache)
    yes: bool = False  # the user agreed to paid steps without being asked (`tunewise run --yes`)
    prices: PricesConfig = field(default_factory=PricesConfig)  # the run's `prices:` (cost estimates)
    selection: SelectionConfig | None = None  # the run's `selection:`; None: settings as written (no run)
    metric: str = "auto"  # the run's `metric:`, which also judges candidates during selection

    def nested(self, config: StrategyConfig, task: Task, model: str, subdir: str,
               where: str) -> tuple[Predictor, dict[str, Any]]:
        """Fit (or reload) another strategy inside this one, on `model` from this context's backends, in
        artifact_dir/`subdir`: how distillation gets its teacher. Returns (predictor, its stats).

        Raises CapabilityError (naming `where`) when the model lacks what that strategy needs."""
        from tunewise.registry import get_strategy

        strategy = get_strategy(config.name)(config)
        backend = self.backends(model, strategy.backend_kind)
        backend.require(where, strategy.backend_kind, strategy.needs)
        inner = FitContext(artifact_dir=self.artifact_dir / subdir, seed=self.seed, progress=self.progress,
                           backends=self.backends, yes=self.yes, prices=self.prices)
        inner.artifact_dir.mkdir(parents=True, exist_ok=True)
        predictor, _ = fit_or_load(strategy, backend, task, inner)
        return predictor, inner.stats

    def save_stats(self) -> None:
        """Write `stats` to artifact_dir/fit.json (what `fit_or_load` reloads on resume)."""
        # Atomic: fit.json is the mark of a finished fit, so a crash while writing it must not leave half a mark.
        write_atomic(self.artifact_dir / STATS_FILE, json.dumps(self.stats, indent=1, default=str))


class Strategy(ABC):
    name: ClassVar[str]
    family: ClassVar[Literal["prompting", "finetuning"]]
    backend_kind: ClassVar[Literal["causal", "encoder"]] = "causal"
    needs: ClassVar[tuple[str, ...]] = ()  # capabilities, e.g. ("can_train",)
    task_kinds: ClassVar[tuple[str, ...]] = ("classification", "generation")
    summary: ClassVar[str] = ""
    Config: ClassVar[type[StrategyConfig]] = StrategyConfig
    # Its settings may be chosen on validation (strategies/_select.py); False where each candidate would cost
    # money or run elsewhere (a provider's fine-tuning job).
    choose_on_validation: ClassVar[bool] = True

    def __init__(self, config: StrategyConfig):
        self.config = config

    @abstractmethod
    def fit(self, backend, task: Task, ctx: FitContext) -> Predictor: ...

    def load(self, backend, task: Task, ctx: FitContext) -> Predictor | None:
        """Rebuild a finished fit from its saved artifact (resume); None when there is nothing to load."""
        return None

    def check_model(self, model) -> None:
        """UserError when a setting names what `model` (the base `torch.nn.Module`, possibly built on the meta
        device from its config alone) does not have, e.g. PEFT module names; called before anything trains
        (`Session.prepare`) and by `tunewise validate`. Strategies that name no modules keep this no-op."""
        return None


def _finished_fit(stats_file) -> dict | None:
    """The stats of a finished fit, or None: no fit.json, or an unreadable one (torn by a crash of an older
    version that did not write it atomically), which means the fit must be done again."""
    try:
        stats = json.loads(stats_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return stats if isinstance(stats, dict) else None


def fit_or_load(strategy: Strategy, backend, task: Task, ctx: FitContext,
                before_fit: Callable[[], None] | None = None) -> tuple[Predictor, bool]:
    """The strategy's predictor: rebuilt by `load()` when artifact_dir holds a finished fit (fit.json), else
    a new `fit()`, timed into ctx.stats["train_seconds"] (wall seconds) and saved with its stats to fit.json.
    `before_fit()` runs just before a new fit (a run across processes tells the others to join it).
    With `ctx.selection` (budget > 1) the fit is the best of several candidate settings judged on validation
    (strategies/_select.py); train_seconds then counts every candidate.

    Returns (predictor, fitted_now). A strategy whose `load()` returns None (prompting: nothing to reload)
    is fitted again, with the settings its selection chose when fit.json has them (`chosen`). The strategy
    sees `task.named()` (labels by name); the predictor answers in stored labels."""
    saved = _finished_fit(ctx.artifact_dir / STATS_FILE)
    shown = task.named()
    if saved is not None:
        strategy = chosen(strategy, ctx.artifact_dir)
        predictor = strategy.load(backend, shown, ctx)
        if predictor is None and (saved.get("selection") or {}).get("chosen"):
            predictor = strategy.fit(backend, shown, ctx)  # a prompting winner: its settings again, no new search
        if predictor is not None:
            ctx.stats = saved
            return stored_labels(predictor, task), False
    if before_fit is not None:
        before_fit()
    start = time.perf_counter()
    choose = ctx.selection is not None and ctx.selection.budget > 1 and strategy.choose_on_validation
    if choose:  # train_seconds includes every candidate's time
        from tunewise.strategies._select import select_and_fit

        predictor = select_and_fit(strategy, backend, shown, ctx, lambda s, t, c: s.fit(backend, t, c))
    else:
        predictor = strategy.fit(backend, shown, ctx)
    ctx.stats["train_seconds"] = time.perf_counter() - start
    ctx.save_stats()
    return stored_labels(predictor, task), True


def chosen(strategy: Strategy, artifact_dir: Path) -> Strategy:
    """The strategy with the settings its validation selection chose (artifact_dir/fit.json,
    "selection.chosen"); the strategy itself when nothing was chosen or nothing is saved."""
    update = ((_finished_fit(Path(artifact_dir) / STATS_FILE) or {}).get("selection") or {}).get("chosen") or {}
    if not update:
        return strategy
    cfg = strategy.config.model_copy(update=update)
    return type(strategy)(type(cfg).model_validate(cfg.model_dump()))
