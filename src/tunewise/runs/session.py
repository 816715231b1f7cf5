"""A resolved experiment without a run folder: the config resolved once, the task loaded once (and once per
capped training-set size), each backend loaded lazily and once, strategies built and checked in one place.

`tunewise cv`/`tune` and the agent apps use a `Session` directly; a `Run` (runs/folder.py) is a session
with a folder and a store.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tunewise.backends.cache import BackendCache
from tunewise.backends.context import longest_inputs
from tunewise.config import (
    ExperimentConfig,
    config_to_dict,
    format_validation_error,
    load_config,
    parse_config,
    resolve_relative_paths,
)
from tunewise.data import Task, load_task
from tunewise.data.labels import code_warning
from tunewise.errors import UserError
from tunewise.progress import console
from tunewise.registry import get_strategy, strategy_config
from tunewise.strategies.base import FitContext, Predictor, Strategy, stored_labels


def resolve_config(path: Path | None, overrides: dict[str, Any]) -> ExperimentConfig:
    """The experiment config of a YAML file (None: the built-in demo) with command-line `overrides` (task,
    limit, model, encoder, seed, seeds, output_dir, device, strategies as a comma-separated string) applied; a
    `task` given on the command line is a path relative to the current folder."""
    data: dict[str, Any] = {}
    source = "command line"
    if path is not None:
        loaded = load_config(path)
        data = loaded.model_dump(mode="json")
        data["strategies"] = [s.model_dump(mode="json") for s in loaded.strategies]
        source = str(path)
    task = data.setdefault("task", {})
    if overrides.get("task"):
        task["source"] = overrides["task"]
        resolve_relative_paths(data, Path.cwd())
    if overrides.get("limit") is not None:
        task["max_test_examples"] = overrides["limit"]
    for key in ("model", "encoder", "seed", "seeds", "output_dir", "device", "pilot"):
        if overrides.get(key) is not None:
            data[key] = overrides[key]
    if overrides.get("strategies"):
        data["strategies"] = [s.strip() for s in overrides["strategies"].split(",") if s.strip()]
    return parse_config(data, source)


@contextmanager
def announce_load(name: str, kind: str) -> Iterator[None]:
    """A spinner while a model loads, then one line with its load time in seconds."""
    with console.status(f"loading {kind} model {name}"):
        start = time.perf_counter()
        yield
    console.print(f"[bold]loaded[/] {name} ({kind}) in {time.perf_counter() - start:.1f} s")


class Session:
    """One experiment config, resolved: `task()`, `backend()`, `strategy()`, `fit()`; nothing is stored.

    `config`: an `ExperimentConfig` or its dict (as `config_to_dict` writes it; `source` names it in errors).
    `device` overrides the config's device (the server's --device). `yes`: consent to paid steps (--yes).
    `announce`: show each model load (the CLI does; a worker process does not).
    """

    def __init__(self, config: ExperimentConfig | dict[str, Any], source: str = "config", *, yes: bool = False,
                 device: str | None = None, announce: bool = True):
        self.config = config if isinstance(config, ExperimentConfig) else parse_config(config, source)
        self.yes = yes
        self.backends = BackendCache(device or self.config.device, announce_load if announce else None)
        self._tasks: dict[int | None, Task] = {}

    @classmethod
    def from_file(cls, path: str | Path, **kwargs: Any) -> Session:
        return cls(load_config(path), str(path), **kwargs)

    @classmethod
    def for_model(cls, model: str, device: str = "auto", **kwargs: Any) -> Session:
        """A session of one causal model and nothing else (commands that only talk to a model)."""
        return cls(parse_config({"model": model, "device": device, "strategies": ["zero-shot"]}, "command line"),
                   **kwargs)

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def config_dict(self) -> dict[str, Any]:
        """The resolved config as plain JSON-able data (what a worker process rebuilds the session from)."""
        return config_to_dict(self.config)

    def task(self, train_size: int | None = None) -> Task:
        """The task, loaded once; with `train_size`, the same splits with training capped to that many
        examples (seeded, stratified: what `task.max_train_examples` does), loaded once per size."""
        if train_size not in self._tasks:
            cfg = self.config.task if train_size is None else \
                self.config.task.model_copy(update={"max_train_examples": train_size})
            self._tasks[train_size] = load_task(cfg, seed=self.seed)
        return self._tasks[train_size]

    def entry(self, strategy_id: str) -> dict[str, Any]:
        """The config's strategy entry with this id, as JSON-able data; UserError when there is none."""
        for s in self.config.strategies:
            if s.id == strategy_id:
                return s.model_dump(mode="json")
        raise UserError(f"no strategy '{strategy_id}' in the config (strategies: "
                        f"{', '.join(s.id for s in self.config.strategies)})")

    def strategy(self, entry: Any, where: str | None = None) -> Strategy:
        """A strategy object from a config entry (name, mapping or StrategyConfig); one-line UserError naming
        `where` when the entry is invalid."""
        if where is None:
            label = entry.get("id") or entry.get("name") if isinstance(entry, dict) else getattr(entry, "id", entry)
            where = f"strategies.{label}"
        try:
            cfg = entry if hasattr(entry, "model_dump") else strategy_config(entry)
        except ValidationError as err:
            raise UserError(format_validation_error(err, where)) from None
        except ValueError as err:
            raise UserError(f"{where}: {err}") from None
        return get_strategy(cfg.name)(cfg)

    def model_for(self, kind: str) -> str:
        """The run's model of a backend kind: `model` (causal) or `encoder`."""
        return self.config.model if kind == "causal" else self.config.encoder

    def backend(self, kind: str, model: str | None = None):
        """The backend of `model` (default: the run's model of that kind), loaded on first use."""
        return self.backends(model or self.model_for(kind), kind)

    def check(self, strategy: Strategy, task: Task | None = None) -> None:
        """UserError when the strategy cannot do the task's kind (checked before any model loads)."""
        kind = (task or self.task()).kind
        if kind not in strategy.task_kinds:
            raise UserError(f"strategies.{strategy.config.id}: '{strategy.name}' works on "
                            f"{', '.join(strategy.task_kinds)} tasks, not {kind}; remove it or change task.kind")

    def longest_inputs(self) -> list[str]:
        """For `tunewise validate`: per local model the strategies use, one line with the longest inputs in
        tokens against its context (tokenizer and config only, no weights) and what task.long_inputs does
        with those over it."""
        task = self.task()
        kinds = {self.strategy(s).backend_kind for s in self.config.strategies}
        lines = (longest_inputs(self.model_for(kind), task.train + task.validation + task.test, task)
                 for kind in ("causal", "encoder") if kind in kinds)
        return [line for line in lines if line]

    def label_warning(self) -> str | None:
        """For `validate` and `run`: one line when the task's labels look like codes (0/1, A/B, LOC/NUM), none
        has a name (task.label_names, ClassLabel) and a prompting strategy would show them to a model."""
        task = self.task()
        shown = [s.id for s in self.config.strategies if self.strategy(s).family == "prompting"]
        return code_warning(task.labels, task.label_names, shown) if task.is_classification else None

    def backend_for(self, strategy: Strategy):
        """The strategy's backend; CapabilityError when it lacks what the strategy needs."""
        backend = self.backend(strategy.backend_kind)
        backend.require(strategy.config.id, strategy.backend_kind, strategy.needs)
        return backend

    def prepare(self, strategies: Iterable[Strategy]) -> None:
        """Fail before anything starts: every strategy fits the task, and every backend loads and offers
        what its strategies need (models load here, once)."""
        strategies = list(strategies)
        for s in strategies:
            self.check(s)
        for s in strategies:
            backend = self.backend_for(s)
            if backend.capabilities.local_weights:  # e.g. PEFT module names against the loaded model
                s.check_model(backend.model)

    def check_models(self) -> None:
        """For `tunewise validate`: each strategy's settings that name parts of a LOCAL model (PEFT module
        names, ...) checked against it, built from its config on the meta device (no weights); UserError."""
        from tunewise.backends.skeleton import meta_model

        models: dict[str, object] = {}
        for entry in self.config.strategies:
            s = self.strategy(entry)
            if type(s).check_model is Strategy.check_model:
                continue
            if s.backend_kind not in models:
                models[s.backend_kind] = meta_model(self.model_for(s.backend_kind), s.backend_kind)
            if models[s.backend_kind] is not None:
                s.check_model(models[s.backend_kind])

    def context(self, artifact_dir: Path, seed: int | None = None, **kwargs: Any) -> FitContext:
        """A FitContext over this session's backends, consent, prices, metric and `selection:` (the validation
        budget `fit_or_load` spends choosing settings; `selection=None` fits the settings as written)."""
        kwargs.setdefault("selection", self.config.selection)
        return FitContext(artifact_dir=artifact_dir, seed=self.seed if seed is None else seed,
                          backends=self.backends, yes=self.yes, prices=self.config.prices,
                          metric=self.config.metric, **kwargs)

    def fit(self, strategy: Strategy, task: Task, artifact_dir: Path, seed: int | None = None) -> Predictor:
        """A fresh fit of `strategy` on `task` (cross-validation folds, search trials): nothing is reloaded
        or stored, and no settings are chosen on validation (folds and trials are the search); artifacts go to
        `artifact_dir`."""
        return stored_labels(strategy.fit(self.backend_for(strategy), task.named(),
                                          self.context(artifact_dir, seed, selection=None)), task)
