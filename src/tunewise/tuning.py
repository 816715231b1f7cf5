"""k-fold cross-validation and Optuna hyper-parameter search for one strategy of an experiment config.

Both go through the run API (`tunewise.runs.Session`: the config resolved once, the task loaded once,
the backend loaded once for every fold and trial) and store nothing: they answer "how stable is this
score?" and "which settings are best?" before a full `tunewise run`. Neither touches the test split:
cross-validation folds train+validation; the search fits on train and scores on validation. Early
stopping still works as in a run, on a small inner split of the fitting data, so it never sees the
examples being scored.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from tunewise.config import ExperimentConfig, config_to_dict, parse_config
from tunewise.data import Example, Task
from tunewise.errors import UserError
from tunewise.registry import get_strategy
from tunewise.runs import Session

# Used when `search` gets no space: each key applies only to strategies that have that option.
DEFAULT_SPACE: dict[str, dict[str, Any]] = {
    "learning_rate": {"low": 1e-5, "high": 1e-2, "log": True},
    "rank": {"choices": [4, 8, 16, 32]},
    "k": {"choices": [2, 4, 8, 16]},
    "reduction_factor": {"choices": [4, 8, 16, 32]},
}


def _entry(config: ExperimentConfig, strategy_id: str) -> dict[str, Any]:
    """The config's entry with this id, or else the registered strategy of that name with its defaults."""
    for s in config.strategies:
        if s.id == strategy_id:
            return s.model_dump(mode="json")
    try:
        get_strategy(strategy_id)
    except UserError:
        ids = ", ".join(s.id for s in config.strategies)
        raise UserError(f"--strategy {strategy_id}: neither an id in the config's strategies ({ids}) nor a "
                        "registered strategy name (see `tunewise strategies`)") from None
    return {"name": strategy_id}


def _ready(session: Session, strategy) -> None:
    """Fail before the first fold or trial: the task's kind, the backend (loaded here, once) and its
    capabilities."""
    session.check(strategy)
    session.backend_for(strategy)


def _primary(session: Session) -> str:
    """The run's primary metric (decided on the test labels, or `metric:`), the same for every fold and trial;
    UserError when `metric:` does not apply to the task's kind."""
    from tunewise.evaluation.metrics import choose_primary

    task = session.task()
    return choose_primary(task.kind, [e.target for e in task.test], session.config.metric)[0]


def _fit_and_score(session: Session, strategy, fit_task: Task, held_out: list[Example], metric: str
                   ) -> tuple[float, str]:
    """Fit on `fit_task`, predict `held_out`; (primary metric, its name). Artifacts go to a temp folder."""
    from tunewise.evaluation.metrics import evaluate

    with tempfile.TemporaryDirectory(prefix="tunewise-tune-") as tmp:
        predictor = session.fit(strategy, fit_task, Path(tmp))
        outputs = [p.output for p in predictor.predict(held_out)]
    metrics = evaluate(fit_task, held_out, outputs, seed=session.seed, n_boot=1, metric=metric)
    return float(metrics[metrics["primary"]]["value"]), metrics["primary"]


def _fitting_task(task: Task, train: list[Example], test: list[Example], seed: int) -> Task:
    """`train` split again into fit + inner validation (10%, label-covering), as `load_task` does."""
    from tunewise.data.splits import split_rows

    rest, inner, _ = split_rows({"train": train, "test": []}, task.kind, 0.0, 0.1, seed)
    return replace(task, train=rest, validation=inner, test=test)


def folds(examples: list[Example], kind: str, k: int, seed: int) -> list[tuple[list[int], list[int]]]:
    """k (train, held-out) index splits, stratified by label when every label has at least k examples."""
    from sklearn.model_selection import KFold, StratifiedKFold

    targets = [e.target for e in examples]
    if kind == "classification" and min(targets.count(t) for t in set(targets)) >= k:
        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        return [(list(a), list(b)) for a, b in splitter.split(np.zeros(len(targets)), targets)]
    splitter = KFold(n_splits=k, shuffle=True, random_state=seed)
    return [(list(a), list(b)) for a, b in splitter.split(np.zeros(len(targets)))]


def cross_validate(config: ExperimentConfig, strategy_id: str, k: int = 5,
                   on_fold: Callable[[int, float], None] | None = None) -> dict[str, Any]:
    """Train on k-1 folds of train+validation, score the held-out fold; mean ± std of the primary metric."""
    if k < 2:
        raise UserError(f"--k {k}: cross-validation needs at least 2 folds")
    session = Session(config, announce=False)  # stdout stays the result (--json)
    task = session.task()
    pool = task.train + task.validation
    if len(pool) < k:
        raise UserError(f"--k {k}: only {len(pool)} train+validation examples; use fewer folds")
    strategy = session.strategy(_entry(config, strategy_id), f"strategies.{strategy_id}")
    _ready(session, strategy)
    primary = _primary(session)  # every fold is judged on the run's primary metric
    scores, metric = [], ""
    for i, (train_idx, held_idx) in enumerate(folds(pool, task.kind, k, config.seed)):
        held = [pool[j] for j in held_idx]
        fold_task = _fitting_task(task, [pool[j] for j in train_idx], held, config.seed)
        score, metric = _fit_and_score(session, strategy, fold_task, held, primary)
        scores.append(score)
        if on_fold:
            on_fold(i, score)
    return {"strategy": strategy_id, "k": k, "metric": metric, "scores": scores,
            "mean": float(np.mean(scores)), "std": float(np.std(scores, ddof=1))}


def load_space(text: str | None) -> dict[str, Any] | None:
    """A search space from a YAML/JSON file or an inline YAML/JSON mapping (None: the default space)."""
    if text is None:
        return None
    path = Path(text).expanduser()
    source = str(path) if path.is_file() else "--space"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8") if path.is_file() else text)
    except yaml.YAMLError as err:
        raise UserError(f"{source}: not valid YAML/JSON ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict) or not data:
        raise UserError(f"{source}: give a mapping such as {{learning_rate: {{low: 1e-5, high: 1e-3, log: true}}}} "
                        "or a file holding one")
    return data


def check_space(space: dict[str, Any] | None, strategy_cls) -> dict[str, dict[str, Any]]:
    """Validate each parameter's spec (choices, or low/high with optional log/step) against the options."""
    options = [f for f in strategy_cls.Config.model_fields if f not in ("name", "id")]
    if space is None:
        space = {key: spec for key, spec in DEFAULT_SPACE.items() if key in options}
        if not space:
            raise UserError(f"'{strategy_cls.name}' has no option in the default search space; give --space")
    checked = {}
    for key, spec in space.items():
        where = f"space.{key}"
        if key not in options:
            raise UserError(f"{where}: '{strategy_cls.name}' has no option '{key}' (options: {', '.join(options)})")
        if isinstance(spec, list):
            spec = {"choices": spec}
        if not isinstance(spec, dict):
            raise UserError(f"{where}: give {{choices: [...]}} or {{low: .., high: ..}}")
        if "choices" in spec:
            if not isinstance(spec["choices"], list) or not spec["choices"] or set(spec) - {"choices"}:
                raise UserError(f"{where}: choices must be a non-empty list (and alone)")
        else:
            low, high = spec.get("low"), spec.get("high")
            numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high))
            if not numeric or low >= high or set(spec) - {"low", "high", "log", "step"}:
                raise UserError(f"{where}: give numbers low < high (optional log: true, step)")
            if spec.get("log") and low <= 0:
                raise UserError(f"{where}: a log scale needs low > 0")
        checked[key] = spec
    return checked


def _suggest(trial, key: str, spec: dict[str, Any]):
    if "choices" in spec:
        return trial.suggest_categorical(key, spec["choices"])
    low, high, log = spec["low"], spec["high"], bool(spec.get("log", False))
    if isinstance(low, int) and isinstance(high, int) and not isinstance(spec.get("step", 1), float):
        return trial.suggest_int(key, low, high, step=spec.get("step", 1), log=log)
    return trial.suggest_float(key, float(low), float(high), step=spec.get("step"), log=log)


def _optuna():
    try:
        import optuna
    except ImportError:
        raise UserError("hyper-parameter search needs Optuna: pip install 'tunewise[tune]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def open_search(config: ExperimentConfig, strategy_id: str, n_trials: int, space: dict[str, Any] | None
                ) -> tuple[Session, Any, dict[str, Any], dict[str, Any]]:
    """What every search engine checks and opens first: (session, task, strategy entry, checked space).
    Raises UserError for no trials, no validation split, an unknown strategy id or space, or a strategy that
    cannot run, before any trial starts."""
    if n_trials < 1:
        raise UserError(f"--trials {n_trials}: give at least 1 trial")
    session = Session(config, announce=False)  # stdout stays the result (--json)
    task = session.task()
    if not task.validation:
        raise UserError("the task has no validation split to score trials on; set task.validation_size > 0")
    entry = _entry(session.config, strategy_id)
    space = check_space(space, get_strategy(entry["name"]))
    _ready(session, session.strategy(entry, f"strategies.{strategy_id}"))
    return session, task, entry, space


def search(config: ExperimentConfig, strategy_id: str, n_trials: int = 20, space: dict[str, Any] | None = None,
           timeout: float | None = None, on_trial: Callable[[dict[str, Any]], None] | None = None
           ) -> dict[str, Any]:
    """Optuna (TPE, seeded) over `space`, at most `n_trials` fits, maximising the primary metric on the
    validation split. Returns the best parameters and every trial."""
    optuna = _optuna()
    session, task, entry, space = open_search(config, strategy_id, n_trials, space)
    fit_task = _fitting_task(task, task.train, [], config.seed)
    primary = _primary(session)  # every trial is judged on the run's primary metric
    metric = ""

    def objective(trial) -> float:
        nonlocal metric
        params = {key: _suggest(trial, key, spec) for key, spec in space.items()}
        strategy = session.strategy({**entry, **params}, f"trial {trial.number}")
        value, metric = _fit_and_score(session, strategy, fit_task, task.validation, primary)
        if on_trial:
            on_trial({"number": trial.number, "params": params, "value": value})
        return value

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=config.seed))
    study.optimize(objective, n_trials=n_trials, timeout=timeout)
    done = [t for t in study.trials if t.value is not None]
    return {"strategy": strategy_id, "metric": metric, "n_trials": len(study.trials),
            "best_params": study.best_params if done else {}, "best_value": study.best_value if done else None,
            "trials": [{"number": t.number, "params": t.params, "value": t.value, "state": t.state.name}
                       for t in study.trials]}


def write_recipe(config: ExperimentConfig, strategy_id: str, params: dict[str, Any], path: str | Path,
                 note: str = "") -> Path:
    """Write the experiment config with the strategy's entry set to the best `params` (appended when the config
    did not have it) as a YAML recipe that `tunewise run PATH` loads; paths in it stay absolute. Its first
    lines are the command that runs it and `note` (where the settings came from). Returns the path; raises
    UserError when the settings do not make a valid entry."""
    data = config_to_dict(config)
    entry = {**_entry(config, strategy_id), **params}
    ids = [s.get("id") or s["name"] for s in data["strategies"]]
    if strategy_id in ids:
        data["strategies"][ids.index(strategy_id)] = entry
    else:
        data["strategies"].append(entry)
    path = Path(path)
    parse_config(data, f"--write-recipe {path}")  # a recipe that does not load is never written
    header = f"# tunewise run {path}\n" + "".join(f"# {line}\n" for line in note.splitlines())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path
