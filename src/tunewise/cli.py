"""Thin Typer app: every command calls one public function; user mistakes exit 2 with one line."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tunewise.errors import UserError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Prompt engineering or fine-tuning? Measure both on your task.")
# Wide enough for the leaderboard when output is piped (rich assumes 80 columns there).
out = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True)


def friendly(fn):
    """Turn UserError into one red line and exit code 2, with no traceback."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            err.print(f"[red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
    return wrapper


def _build_config(config: Path | None, overrides: dict[str, Any]):
    from tunewise.runs import resolve_config

    return resolve_config(config, overrides)


@app.command()
@friendly
def run(
    config: Annotated[Path | None, typer.Argument(help="Experiment YAML; without it, the built-in demo.")] = None,
    task: Annotated[str | None, typer.Option(help="Data source: file, 'demo', 'gsm8k' or 'hf:NAME'.")] = None,
    model: Annotated[str | None, typer.Option(help="Causal LM: embedded name, hub name or path.")] = None,
    encoder: Annotated[str | None, typer.Option(help="Encoder for classification-head strategies.")] = None,
    strategies: Annotated[str | None, typer.Option(help="Comma-separated strategy names.")] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many test examples.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for splits, sampling and training.")] = None,
    seeds: Annotated[int | None, typer.Option(help="Run every strategy at this many seeds (seed, seed+1, ...) "
                                              "and show the spread across them.")] = None,
    output: Annotated[str | None, typer.Option(help="Folder for run folders (default: runs).")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or mps.")] = None,
    resume: Annotated[Path | None, typer.Option(help="Finish an interrupted run folder.")] = None,
    executor: Annotated[str | None, typer.Option(help="Where cells run: local, or ray (each cell a Ray task; "
                                                 "pip install 'tunewise[ray]'). Default: the config's.")] = None,
    address: Annotated[str | None, typer.Option(help="Ray cluster to join with --executor ray: auto, "
                                                "ray://HOST:10001 or HOST:6379 (default: start one here).")] = None,
    pilot: Annotated[float | None, typer.Option(help="Fine-tune at 4 sizes up to this share of the training "
                                                "split and predict the full-size scores (0 < FRACTION <= 1).",
                                                metavar="FRACTION")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Agree to paid steps (provider fine-tuning) "
                                      "without asking.")] = False,
):
    """Run every strategy on the task, score them on the same test split, print the leaderboard."""
    from tunewise.experiment import run_experiment

    if resume is not None:
        given = (config, task, model, encoder, strategies, limit, seed, seeds, output, device, pilot)
        if any(v is not None for v in given):
            raise UserError("--resume continues a run with its own saved config; give no other options "
                            "(but --executor and --address)")
        run_dir = run_experiment(resume=resume, yes=yes, executor=executor, address=address)
    else:
        cfg = _build_config(config, dict(task=task, model=model, encoder=encoder, strategies=strategies,
                                         limit=limit, seed=seed, seeds=seeds, output_dir=output, device=device,
                                         pilot=pilot))
        run_dir = run_experiment(cfg, yes=yes, executor=executor, address=address)
    if run_dir is None:  # a follower process of `accelerate launch`: the main process reports
        return
    _show(run_dir)
    _verdict(run_dir)
    out.print(f"run folder: {run_dir}", highlight=False, soft_wrap=True)


VERDICT_REASONS = 2  # lines of the recommendation's reasons printed under its headline (the report has all)


def _verdict(run_dir: Path) -> None:
    """The report's verdict (report/recommend.py) in a few lines, and RUN/report.html written, its path printed."""
    from tunewise.report.html import build_report

    files = build_report(run_dir)
    rec = files.analysis.recommendation
    if rec is not None:
        out.print(f"[bold]verdict[/] {escape(rec.headline)}", highlight=False, soft_wrap=True)
        for line in rec.reasons[:VERDICT_REASONS] + (rec.caveats[:1] if rec.thin_evidence else []):
            out.print(f"  {escape(line)}", highlight=False, soft_wrap=True)
    out.print(f"report: {files.html}", highlight=False, soft_wrap=True)


def _show(run_dir: Path) -> None:
    from tunewise.report.leaderboard import leaderboard
    from tunewise.report.seeds import seed_spread
    from tunewise.report.selection import budget_line, selections
    from tunewise.store import open_run

    store, run = open_run(run_dir)
    results = store.main_results(run["id"])  # the run's own cells (curve cells are drawn by the report)
    spread = seed_spread(store.results(run["id"]), run["config"].get("seed", 0))  # `seeds: N`: the other seeds
    store.close()
    task = run["config"]["task"]["source"]
    out.print(leaderboard(results, title=f"run {run['id']} · task {task} · status {run['status']}", spread=spread))
    chosen = selections(results)
    if chosen:  # what each strategy's validation selection chose, and the budget both families had
        out.print(budget_line(run["config"]), highlight=False, soft_wrap=True)
        for sid, text in chosen:
            out.print(f"  {sid}: {text}", highlight=False, soft_wrap=True)


@app.command()
@friendly
def show(run_dir: Annotated[Path, typer.Argument(help="A run folder printed by `tunewise run`.")]):
    """Print a run's leaderboard again, from its store."""
    _show(run_dir)


@app.command("strategies")
@friendly
def list_strategies():
    """List registered strategies and their options."""
    from tunewise.registry import strategies as registry

    for name, cls in registry().items():
        table = Table(title=f"{name}  [dim]({cls.family}, {cls.backend_kind} model)[/] — {cls.summary}",
                      title_justify="left", show_edge=False)
        table.add_column("option")
        table.add_column("type")
        table.add_column("default")
        table.add_column("help")
        for field, info in cls.Config.model_fields.items():
            if field == "name":
                continue
            ann = getattr(info.annotation, "__name__", None) or str(info.annotation).replace("typing.", "")
            table.add_row(field, ann, repr(info.get_default(call_default_factory=True)), info.description or "")
        out.print(table)
        out.print()


@app.command()
@friendly
def validate(config: Annotated[Path, typer.Argument(help="Experiment YAML to check.")]):
    """Check a config (keys, types, strategies, data) without running anything."""
    from tunewise.runs import Session

    session = Session.from_file(config, announce=False)
    session.check_models()
    out.print(f"{config}: valid · {session.task().summary()} · strategies: "
              f"{', '.join(s.id for s in session.config.strategies)}", highlight=False)
    for line in session.longest_inputs():
        out.print(line, highlight=False, soft_wrap=True)
    if session.label_warning():
        out.print(f"[yellow]warning:[/] {escape(session.label_warning())}", highlight=False, soft_wrap=True)


def _load_commands() -> None:
    import importlib
    import pkgutil

    import tunewise.commands as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{pkg.__name__}.{info.name}")


_load_commands()


def quiet_libraries() -> None:
    """Only tunewise's own lines and bars reach the terminal: library warnings (deprecations, user warnings of
    transformers, peft, torch, datasets, sklearn, pydantic, Ray) are ignored, library loggers say errors only,
    transformers' and the hub's bars are off (tunewise shows a spinner per model load and bars for training
    and scoring). Set as environment variables before any library is imported, so worker processes (spawned
    cells, Ray, accelerate) inherit them; a variable the user set is kept."""
    import logging
    import os
    import warnings

    quiet = {"PYTHONWARNINGS": "ignore", "TRANSFORMERS_VERBOSITY": "error", "DATASETS_VERBOSITY": "error",
             "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1", "TOKENIZERS_PARALLELISM": "false",
             "HF_HUB_DISABLE_PROGRESS_BARS": "1"}  # transformers' bars follow the hub's switch
    for key, value in quiet.items():
        os.environ.setdefault(key, value)
    warnings.simplefilter("ignore")  # tunewise itself issues no warnings: what it has to say, it prints
    logging.getLogger().setLevel(logging.ERROR)  # libraries' loggers without a level of their own


def main() -> None:
    quiet_libraries()
    try:
        app()
    except UserError as e:  # raised outside a command (e.g. while parsing)
        err.print(f"[red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
