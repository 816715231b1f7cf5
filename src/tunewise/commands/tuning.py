"""`tunewise cv` (k-fold cross-validation) and `tunewise tune` (Optuna search) for one strategy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from tunewise.cli import app, friendly, out
from tunewise.errors import UserError

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


def _trial_line(trials: int):
    def line(t) -> None:
        if t.get("error"):
            text = "failed (see the trial's error.txt in the search folder)"
        elif t.get("stopped_early"):
            text = f"{t['value']:.3f} after epoch {t['epochs']}, stopped early (ASHA)"
        else:
            text = f"{t['value']:.3f}"
        out.print(f"trial {t['number'] + 1}/{trials}: {t['params']} -> {text}", highlight=False)
    return line


@app.command()
@friendly
def tune(config: ConfigArg = None, strategy: StrategyOpt = "lora",
         trials: Annotated[int, typer.Option(help="Trial budget: at most this many fits.")] = 20,
         space: Annotated[str | None, typer.Option(help="Search space: a YAML/JSON file or inline mapping, e.g. "
                                                   "'{learning_rate: {low: 1e-5, high: 1e-3, log: true}}'.")] = None,
         timeout: Annotated[float | None, typer.Option(help="Stop starting trials after this many seconds.")] = None,
         engine: Annotated[str, typer.Option(help="optuna: trials one after another in this process; ray: Ray Tune "
                                             "(OptunaSearch + ASHA early stopping, resumable).")] = "optuna",
         output: Annotated[Path | None, typer.Option(help="--engine ray: folder of the search (default: "
                                                     "<output_dir>/tune-<task>-<strategy>).")] = None,
         resume: Annotated[bool, typer.Option("--resume", help="--engine ray: continue the search saved in "
                                              "--output.")] = False,
         address: Annotated[str | None, typer.Option(help="--engine ray: an existing Ray cluster ('auto' or "
                                                     "host:port); default: a local Ray.")] = None,
         write_recipe: Annotated[Path | None, typer.Option(help="Write the config with the best settings to this "
                                                           "YAML (a recipe for `tunewise run`).")] = None,
         task: TaskOpt = None, model: ModelOpt = None, encoder: EncoderOpt = None, seed: SeedOpt = None,
         device: DeviceOpt = None, as_json: JsonOpt = False):
    """Search one strategy's options (Optuna, or Ray Tune with --engine ray), scored on the validation split."""
    from tunewise.tuning import load_space, search
    from tunewise.tuning import write_recipe as write

    cfg = _config(config, task, model, encoder, seed, device)
    report = None if as_json else _trial_line(trials)
    if engine == "ray":
        from tunewise.raytune import search_ray

        result = search_ray(cfg, strategy, trials, load_space(space), timeout=timeout, folder=output,
                            resume=resume, address=address, on_trial=report)
    elif engine == "optuna":
        if resume or output or address:
            raise UserError("--resume, --output and --address are for --engine ray")
        result = search(cfg, strategy, trials, load_space(space), timeout=timeout, on_trial=report)
    else:
        raise UserError(f"--engine {engine}: give optuna or ray")
    if write_recipe is not None and result["best_value"] is not None:
        write(cfg, strategy, result["best_params"], write_recipe,
              f"{strategy} tuned by `tunewise tune --engine {engine}`: {result['metric']} {result['best_value']:.3f} "
              f"on validation, best of {result['n_trials']} trials")
    if as_json:
        out.print_json(json.dumps(result))
        return
    if result.get("interrupted"):
        out.print(f"interrupted: finished trials are saved in {result['folder']}; continue with the same command "
                  "and --resume", highlight=False, soft_wrap=True)
    if result["best_value"] is None:
        raise UserError(f"no trial finished (of {result['n_trials']}); see the errors above")
    out.print(f"best {result['metric']} {result['best_value']:.3f} with {result['best_params']} "
              f"({result['n_trials']} trials)" + (f"; recipe: {write_recipe}" if write_recipe else "")
              + (f"; search folder: {result['folder']}" if result.get("folder") else ""), highlight=False,
              soft_wrap=True)
