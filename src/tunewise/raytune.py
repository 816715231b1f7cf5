"""`tunewise tune --engine ray`: the search of `tuning.py` on Ray Tune instead of a local Optuna loop.

Ray Tune's `Tuner` runs the trials (Ray schedules them on the machine or the cluster of `--address`), with
`OptunaSearch` (TPE, seeded) proposing the settings and `ASHAScheduler` (asynchronous successive halving,
Li et al. 2018, "A System for Massively Parallel Hyperparameter Tuning") stopping trials whose validation
score after an epoch is among the worst of those that reached the same epoch. A trial is one fit of the
strategy on the training split, judged like the local path on the run's primary metric on the validation
split: after every training epoch (`FitContext.on_epoch`, called from the training path) and once more when
the fit is done (the final, early-stopping-restored model). Prompting strategies report once.

The Tune experiment lives in `<folder>/ray-tune` (`RunConfig(storage_path=folder)`), which is what `--resume`
restores (`Tuner.restore`): finished trials are kept, the searcher's state comes back, unfinished trials start
again and the rest of the trial budget is spent. Ray's own output goes to that folder and to its session
logs; the terminal shows tunewise's lines only.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunewise.errors import UserError
from tunewise.evaluation.metrics import evaluate
from tunewise.runs import Session
from tunewise.tuning import _fitting_task, _primary, open_search

EXPERIMENT = "ray-tune"  # the Tune experiment's folder inside the search's folder
METRIC = "score"  # what every trial reports: the primary metric on the validation split
_SESSIONS: dict[str, Session] = {}  # per Ray worker process: config -> session (task and models loaded once)
_LISTENER: list[Callable[[dict[str, Any]], None]] = []  # the driver's on_trial while a search runs


def _tune():
    """ray.tune, or a UserError naming the extra; Ray's new console output off (the terminal is tunewise's)."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # verbose=0 then prints nothing at all
    try:
        from ray import tune
        from ray.tune.search.optuna import OptunaSearch  # noqa: F401 (needs optuna: fail here, not in a trial)
    except ImportError:
        raise UserError("--engine ray needs Ray Tune and Optuna: pip install 'tunewise[ray,tune]'") from None
    for name in ("ray", "ray.tune", "ray.train", "optuna"):
        logging.getLogger(name).setLevel(logging.ERROR)
    return tune


def search_space(space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """`check_space`'s specs as Ray Tune sampling domains (which OptunaSearch turns into Optuna distributions):
    choices -> tune.choice; int low/high -> tune.randint / lograndint / qrandint (high inclusive); float ->
    tune.uniform / loguniform / quniform (step)."""
    from ray import tune

    domains = {}
    for key, spec in space.items():
        if "choices" in spec:
            domains[key] = tune.choice(spec["choices"])
            continue
        low, high, log, step = spec["low"], spec["high"], bool(spec.get("log")), spec.get("step")
        if isinstance(low, int) and isinstance(high, int) and not isinstance(step, float):
            domains[key] = (tune.qrandint(low, high, step) if step else
                            tune.lograndint(low, high + 1) if log else tune.randint(low, high + 1))
        else:
            domains[key] = (tune.quniform(float(low), float(high), float(step)) if step else
                            tune.loguniform(float(low), float(high)) if log else tune.uniform(float(low), float(high)))
    return domains


def _session(config: dict[str, Any]) -> Session:
    key = json.dumps(config, sort_keys=True)
    if key not in _SESSIONS:
        _SESSIONS[key] = Session(config, announce=False)
    return _SESSIONS[key]


def _trial(params: dict[str, Any], *, config: dict[str, Any], entry: dict[str, Any], primary: str) -> None:
    """One trial, in a Ray worker: fit on train (an inner split for early stopping), report the primary metric
    on validation after each epoch and at the end (`final`: True)."""
    from ray import tune

    session = _session(config)
    task = session.task()
    fit_task = _fitting_task(task, task.train, [], session.seed)
    strategy = session.strategy({**entry, **params}, f"trial {params}")
    epochs = 0

    def score(outputs: list[str]) -> float:
        metrics = evaluate(fit_task, task.validation, outputs, seed=session.seed, n_boot=1, metric=primary)
        return float(metrics[metrics["primary"]]["value"])

    def on_epoch(answer) -> None:
        nonlocal epochs
        epochs += 1
        tune.report({METRIC: score(answer(task.validation)), "epoch": epochs, "final": False})

    with tempfile.TemporaryDirectory(prefix="tunewise-tune-") as tmp:
        ctx = session.context(Path(tmp), on_epoch=on_epoch)
        predictor = strategy.fit(session.backend_for(strategy), fit_task, ctx)
        outputs = [p.output for p in predictor.predict(task.validation)]
    tune.report({METRIC: score(outputs), "epoch": epochs, "final": True})


def _lines():
    """A Tune callback (module-level, so the experiment state pickles it and a restore brings it back) that
    hands each ended trial to the driver's `on_trial`."""
    from ray import tune

    class TrialLines(tune.Callback):
        def on_trial_complete(self, iteration, trials, trial, **info):
            _tell(trials.index(trial), trial, None)

        def on_trial_error(self, iteration, trials, trial, **info):
            _tell(trials.index(trial), trial, "error")

    return TrialLines()


def _tell(number: int, trial, error: str | None) -> None:
    last = trial.last_result or {}
    record = {"number": number, "params": dict(trial.config), "value": last.get(METRIC),
              "epochs": last.get("epoch"), "stopped_early": error is None and last.get("final") is False,
              "error": error}
    for listener in _LISTENER:
        listener(record)


def _folder_for(session: Session, strategy_id: str, folder: str | Path | None) -> Path:
    return Path(folder) if folder else Path(session.config.output_dir) / f"tune-{session.task().name}-{strategy_id}"


def _init_ray(address: str | None) -> None:
    import ray

    if not ray.is_initialized():  # a test or a notebook may have started one already
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)


def _tuner(tune, trainable, folder: Path, resume: bool, space: dict[str, Any], n_trials: int,
           timeout: float | None, seed: int, concurrent: int | None):
    """A new Tuner (TuneConfig: OptunaSearch + ASHA, the trial budget) or, with `resume`, the one saved in
    folder/ray-tune."""
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    if resume:
        return tune.Tuner.restore(str(folder.resolve() / EXPERIMENT), trainable, resume_unfinished=True)
    return tune.Tuner(
        trainable, param_space=search_space(space),
        tune_config=tune.TuneConfig(
            metric=METRIC, mode="max", num_samples=n_trials, time_budget_s=timeout, max_concurrent_trials=concurrent,
            search_alg=OptunaSearch(seed=seed),
            scheduler=ASHAScheduler(time_attr="training_iteration", grace_period=1, reduction_factor=2, max_t=1000)),
        run_config=tune.RunConfig(name=EXPERIMENT, storage_path=str(folder.resolve()), verbose=0,
                                  callbacks=[_lines()], failure_config=tune.FailureConfig(max_failures=0)))


def check_folder(tune, folder: Path, resume: bool) -> None:
    """UserError unless `folder` holds a saved search exactly when `resume` asks to continue one."""
    path = folder.resolve() / EXPERIMENT
    saved = path.is_dir() and tune.Tuner.can_restore(str(path))
    if resume and not saved:
        raise UserError(f"--resume: {path} holds no Ray Tune search to continue; start one without --resume")
    if saved and not resume:
        raise UserError(f"--output {folder}: already holds a search; continue it with --resume or give another "
                        "--output")


def _summary(grid, strategy_id: str, metric: str, folder: Path, short: bool) -> dict[str, Any]:
    """The search's result as `tuning.search` returns it, plus each trial's epochs and how it ended. `short`:
    fewer trials than the budget although time was left, which only Ctrl-C does (Tune saves and returns)."""
    interrupted = short or len(grid) > grid.num_terminated + grid.num_errors
    trials = []
    for i, r in enumerate(grid):
        m = r.metrics or {}
        state = ("ERROR" if r.error else "COMPLETE" if m.get("final") else "UNFINISHED" if interrupted or not m
                 else "STOPPED_EARLY")
        trials.append({"number": i, "params": dict(r.config or {}), "value": m.get(METRIC),
                       "epochs": m.get("epoch"), "reports": m.get("training_iteration"), "state": state,
                       "error": str(r.error).strip().splitlines()[-1] if r.error else None})
    done = [t for t in trials if t["state"] == "COMPLETE"]  # only finished fits are candidates
    best = max(done, key=lambda t: t["value"]) if done else None
    return {"strategy": strategy_id, "metric": metric, "engine": "ray", "n_trials": len(trials),
            "best_params": best["params"] if best else {}, "best_value": best["value"] if best else None,
            "trials": trials, "folder": str(folder), "interrupted": interrupted}


def search_ray(config, strategy_id: str, n_trials: int = 20, space: dict[str, Any] | None = None,
               timeout: float | None = None, *, folder: str | Path | None = None, resume: bool = False,
               address: str | None = None, trial_cpus: float = 1.0, concurrent: int | None = None,
               on_trial: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Ray Tune search over one strategy's options: at most `n_trials` fits (and `timeout` seconds, when
    given), each using `trial_cpus` CPUs, at most `concurrent` at once (default: as many as fit); OptunaSearch
    proposes, ASHA stops trials early. Maximises the run's primary metric on the validation split.

    `folder` (default: <output_dir>/tune-<task>-<strategy>) holds the Tune experiment; `resume` continues the
    one saved there. `address`: an existing Ray cluster ('auto' or host:port; default: a local Ray started
    here). `on_trial(record)` gets each ended trial (number, params, value, epochs, stopped_early, error).
    Returns {strategy, metric, engine, n_trials, best_params, best_value, trials, folder, interrupted}; the best
    trial is the best of those that finished (not stopped early); `interrupted`: Ctrl-C stopped the search
    (Tune saved it: continue with `resume`). Raises UserError for a bad space, budget or folder,
    and for the user mistake of a trial (e.g. an option out of bounds)."""
    tune = _tune()
    session, task, entry, space = open_search(config, strategy_id, n_trials, space)  # fail before Ray starts
    primary = _primary(session)
    out = _folder_for(session, strategy_id, folder)
    check_folder(tune, out, resume)
    trainable = tune.with_resources(
        tune.with_parameters(_trial, config=session.config_dict, entry=entry, primary=primary), {"cpu": trial_cpus})
    _init_ray(address)
    _LISTENER[:] = [on_trial] if on_trial else []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Ray's deprecation notices are not the user's to act on
            tuner = _tuner(tune, trainable, out, resume, space, n_trials, timeout, session.seed, concurrent)
            start = time.monotonic()
            grid = tuner.fit()
    finally:
        _LISTENER.clear()
    short = len(grid) < n_trials and (timeout is None or time.monotonic() - start < timeout)
    result = _summary(grid, strategy_id, primary, out, short)
    user = next((r.error for r in grid if r.error is not None and _is_user_error(r.error)), None)
    if user is not None and result["best_value"] is None:
        raise UserError(str(user).strip().splitlines()[-1].removeprefix("tunewise.errors.UserError: "))
    return result


def _is_user_error(error: BaseException) -> bool:
    cause = getattr(error, "cause", None) or error.__cause__ or error
    return isinstance(cause, UserError) or "UserError" in str(error)
