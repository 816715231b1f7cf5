"""`tunewise cv` (k-fold cross-validation) and `tunewise tune` (Optuna search) for one strategy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from tunewise.cli import app, friendly, out

ConfigArg = Annotated[Path | None, typer.Argument(help="Experiment YAML; without it, the built-in demo.")]
StrategyOpt = Annotated[str, typer.Option(help="Strategy id from the config, or a registered strategy name.")]
TaskOpt = Annotated[str | None, typer.Option(help="Data source: file, 'demo', 'gsm8k' or 'hf:NAME'.")]
ModelOpt = Annotated[str | None, typer.Option(help="Causal LM: embedded name, hub name or path.")]
EncoderOpt = Annotated[str | None, typer.Option(help="Encoder for classification-head strategies.")]
SeedOpt = Annotated[int | None, typer.Option(help="Seed for splits, folds, sampling and training.")]
DeviceOpt = Annotated[str | None, typer.Option(help="auto, cpu, cuda or mps.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


def _config(config, task, model, encoder, seed, device):
    from tunewise.cli import _build_config

    return _build_config(config, dict(task=task, model=model, encoder=encoder, seed=seed, device=device))


@app.command("cv")
@friendly
def cv(config: ConfigArg = None, strategy: StrategyOpt = "few-shot",
       k: Annotated[int, typer.Option(help="Number of folds.")] = 5, task: TaskOpt = None, model: ModelOpt = None,
       encoder: EncoderOpt = None, seed: SeedOpt = None, device: DeviceOpt = None, as_json: JsonOpt = False):
    """k-fold cross-validation of one strategy on train+validation: mean ± std of the primary metric."""
    from tunewise.tuning import cross_validate

    cfg = _config(config, task, model, encoder, seed, device)
    report = None if as_json else (lambda i, score: out.print(f"fold {i + 1}/{k}: {score:.3f}", highlight=False))
    result = cross_validate(cfg, strategy, k, on_fold=report)
    if as_json:
        out.print_json(json.dumps(result))
    else:
        out.print(f"{strategy}: {result['metric']} {result['mean']:.3f} ± {result['std']:.3f} "
                  f"(std over {k} folds)", highlight=False)


@app.command()
@friendly
def tune(config: ConfigArg = None, strategy: StrategyOpt = "lora",
         trials: Annotated[int, typer.Option(help="Trial budget: at most this many fits.")] = 20,
         space: Annotated[str | None, typer.Option(help="Search space: a YAML/JSON file or inline mapping, e.g. "
                                                   "'{learning_rate: {low: 1e-5, high: 1e-3, log: true}}'.")] = None,
         timeout: Annotated[float | None, typer.Option(help="Stop starting trials after this many seconds.")] = None,
         task: TaskOpt = None, model: ModelOpt = None, encoder: EncoderOpt = None, seed: SeedOpt = None,
         device: DeviceOpt = None, as_json: JsonOpt = False):
    """Optuna search over one strategy's options, scored on the validation split."""
    from tunewise.tuning import load_space, search

    cfg = _config(config, task, model, encoder, seed, device)
    report = None if as_json else (lambda t: out.print(
        f"trial {t['number'] + 1}/{trials}: {t['params']} -> {t['value']:.3f}", highlight=False))
    result = search(cfg, strategy, trials, load_space(space), timeout=timeout, on_trial=report)
    if as_json:
        out.print_json(json.dumps(result))
    else:
        out.print(f"best {result['metric']} {result['best_value']:.3f} with {result['best_params']} "
                  f"({result['n_trials']} trials)", highlight=False)
