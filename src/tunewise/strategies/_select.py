"""Each family at its best on the same budget: a strategy's settings chosen on the validation split.

`fit_or_load` (strategies/base.py) calls `select_and_fit` when the run's `selection:` allows more than one
candidate. Candidates are the strategy's config as written, then variations of the settings that move
quality most, nearest first (one setting changed, then two, ...):

- prompting (zero-shot, few-shot): `prompt_format` (chat template vs plain completion, as
  lm-evaluation-harness prompts), contextual calibration (Zhao et al. 2021), the built-in instruction
  `WORDINGS` (only when no instruction is written), few-shot's demonstration `selection` (balanced, random,
  similar: Liu et al. 2021) and `k`;
- fine-tuning (every strategy with `learning_rate` and `epochs`): learning rate / 3 and x 3, epochs x 2.

The budget is one number for both families, `selection.budget` candidates per strategy, each judged once
on the same capped, seeded sample of `selection.examples` validation examples by the run's metric; a
prompting candidate costs that one evaluation, a fine-tuning candidate costs a training too (its
validation split also early-stops it), so the fine-tuning budget counts trainings. Candidates are fitted
on the task without its test split, so no test example is ever seen while choosing; the first candidate
wins ties, and the winner's fit is the strategy's fit (for fine-tuning its saved artifact moves to the
strategy's folder, so `--resume` and serving reload it). Without a validation split nothing is chosen: one
line says so and the settings as written are used. What was tried, each score, the choice and the budget
go to `ctx.stats["selection"]` (results: `cost.details.selection`).
"""

from __future__ import annotations

import itertools
import random
import shutil
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from tunewise.data import Example, Task
from tunewise.evaluation.metrics import choose_primary, evaluate
from tunewise.progress import console
from tunewise.strategies.base import FitContext, Predictor, Strategy

SELECTION_DIR = "selection"  # under the strategy's artifact folder while candidates train; removed after
# Built-in instruction wordings tried when the config writes none (None: the task's own instruction).
WORDINGS = (None, "Read the text and decide which of the labels fits it best.",
            "You are an expert annotator. Assign the text its correct label.")


def _axes(cfg, task: Task, scoring: bool, local: bool) -> list[tuple[str, list[Any]]]:
    """(field, alternatives to its current value) for each setting worth varying, in order of priority."""
    fields, axes = type(cfg).model_fields, []
    value = cfg.model_dump()
    if "prompt_format" in fields and local:
        axes.append(("prompt_format", ["plain" if value["prompt_format"] == "chat" else "chat"]))
    if "calibrate" in fields and scoring:
        axes.append(("calibrate", [value["calibrate"] is False]))  # "auto" is on where labels are scored
    if "selection" in fields and "k" in fields and task.is_classification:
        axes.append(("selection", [s for s in ("similar", "random", "balanced") if s != value["selection"]]))
        axes.append(("k", [k for k in (value["k"] // 2, value["k"] * 2) if 0 < k <= max(len(task.train), 1)]))
    elif "instruction" in fields and value["instruction"] is None and task.is_classification:
        axes.append(("instruction", list(WORDINGS[1:])))
    if "learning_rate" in fields and "epochs" in fields and isinstance(value["learning_rate"], float):
        axes.append(("learning_rate", [value["learning_rate"] / 3, value["learning_rate"] * 3]))
        axes.append(("epochs", [value["epochs"] * 2]))
    return [(name, alts) for name, alts in axes if alts]


def grid(cfg, task: Task, scoring: bool = True, local: bool = True) -> list[dict[str, Any]]:
    """Every candidate as a config update, the config as written ({}) first, then one setting changed (in
    axis order), then two, ...; `scoring`: label scoring applies (calibration), `local`: local weights
    (the plain format)."""
    axes = _axes(cfg, task, scoring, local)
    out: list[dict[str, Any]] = []
    for depth in range(len(axes) + 1):
        for combo in itertools.combinations(axes, depth):
            for values in itertools.product(*(alts for _, alts in combo)):
                out.append({name: v for (name, _), v in zip(combo, values, strict=True)})
    return out


def prompting_grid(task: Task, cfg) -> list[dict[str, Any]]:
    """The grid of a prompting config on a local model with label scoring (bench/prompt_settings.py)."""
    return grid(cfg, task, scoring=task.is_classification, local=True)


def validation_sample(task: Task, examples: int, seed: int) -> list[Example]:
    """At most `examples` validation examples, a seeded sample kept in split order."""
    if len(task.validation) <= examples:
        return list(task.validation)
    keep = set(random.Random(seed).sample(range(len(task.validation)), examples))
    return [e for i, e in enumerate(task.validation) if i in keep]


def judge(predictor: Predictor, task: Task, sample: list[Example], metric: str, seed: int) -> float:
    """The run's primary metric (`metric`: the config's, auto or a name) of `predictor` on `sample` (a share,
    0..1; MCC -1..1)."""
    outputs = [p.output for p in predictor.predict(sample)]
    result = evaluate(task, sample, outputs, seed=seed, n_boot=50, metric=metric)
    return float(result[result["primary"]]["value"])


def select_and_fit(strategy: Strategy, backend, task: Task, ctx: FitContext,
                   fit: Callable[[Strategy, Task, FitContext], Predictor]) -> Predictor:
    """Fit the best of the strategy's candidates (see the module docstring) and return its predictor;
    `fit(strategy, task, ctx)` fits one candidate. The winner's stats become ctx.stats, with "selection":
    {budget, unit, examples, metric, tried: [{settings, score}], chosen, chosen_index} (scores: shares),
    or {..., skipped} without a validation split. Strategies with nothing to vary get no "selection"."""
    sel, family = ctx.selection, strategy.family
    scoring = task.is_classification and backend.capabilities.supports_logprobs
    local = backend.capabilities.local_weights
    candidates = grid(strategy.config, task, scoring, local)[:sel.budget]
    names = [name for name, _ in _axes(strategy.config, task, scoring, local)]
    unit = "trainings" if family == "finetuning" else "prompt settings"
    record: dict[str, Any] = {"budget": sel.budget, "unit": unit, "examples": sel.examples, "metric": ctx.metric}
    if len(candidates) < 2 or not task.validation:
        if not task.validation and len(candidates) > 1:
            console.print(f"[yellow]{strategy.config.id}: no validation split, so its settings are not chosen on "
                          "validation; the settings as written are used[/]")
            record["skipped"] = "no validation split: the settings as written were used"
        predictor = fit(strategy, task, ctx)
        if "skipped" in record:
            ctx.stats["selection"] = {**record, "tried": [], "chosen": {}}
        return predictor
    sample = validation_sample(task, sel.examples, ctx.seed)
    record["metric"] = choose_primary(task.kind, [e.target for e in sample], ctx.metric)[0]
    blind = replace(task, test=[])  # candidates never see a test example
    bar = None if ctx.progress is None else ctx.progress.add_task(f"select {strategy.config.id}",
                                                                  total=len(candidates))
    best, tried = None, []
    for i, update in enumerate(candidates):
        cfg = strategy.config.model_copy(update=update)
        cand = type(strategy)(type(cfg).model_validate(cfg.model_dump()))
        sub = replace(ctx, artifact_dir=ctx.artifact_dir / SELECTION_DIR / str(i), stats={}, log=_Buffer())
        sub.artifact_dir.mkdir(parents=True, exist_ok=True)
        predictor = fit(cand, blind, sub)
        score = judge(predictor, blind, sample, ctx.metric, ctx.seed)
        tried.append({"settings": {name: getattr(cfg, name) for name in names}, "score": score})
        if best is None or score > best[0]:
            best = (score, i, update, predictor, sub)
        if bar is not None:
            ctx.progress.advance(bar, 1)
    score, i, update, predictor, sub = best
    if bar is not None:
        ctx.progress.update(bar, visible=False)
    _adopt(sub, ctx)
    ctx.stats.update(sub.stats)
    ctx.stats["selection"] = {**record, "examples": len(sample), "tried": tried, "chosen": tried[i]["settings"],
                              "chosen_index": i}
    return predictor


class _Buffer(list):
    """A candidate's training-log records, kept until it is known whether it won."""

    def __call__(self, record: dict[str, Any]) -> None:
        self.append(record)


def _adopt(winner: FitContext, ctx: FitContext) -> None:
    """The winning candidate's artifacts move into the strategy's own folder (what load() reads); its
    training log goes to the run's log; every candidate's folder is removed."""
    for path in winner.artifact_dir.iterdir():
        target = ctx.artifact_dir / path.name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        shutil.move(str(path), str(target))
    for record in winner.log:
        ctx.log(record)
    shutil.rmtree(ctx.artifact_dir / SELECTION_DIR, ignore_errors=True)
