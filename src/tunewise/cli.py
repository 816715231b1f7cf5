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
    output: Annotated[str | None, typer.Option(help="Folder for run folders (default: runs).")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or mps.")] = None,
    resume: Annotated[Path | None, typer.Option(help="Finish an interrupted run folder.")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Agree to paid steps (provider fine-tuning) "
                                      "without asking.")] = False,
):
    """Run every strategy on the task, score them on the same test split, print the leaderboard."""
    from tunewise.experiment import run_experiment

    if resume is not None:
        if any(v is not None for v in (config, task, model, encoder, strategies, limit, seed, output, device)):
            raise UserError("--resume continues a run with its own saved config; give no other options")
        run_dir = run_experiment(resume=resume, yes=yes)
    else:
        cfg = _build_config(config, dict(task=task, model=model, encoder=encoder, strategies=strategies,
                                         limit=limit, seed=seed, output_dir=output, device=device))
        run_dir = run_experiment(cfg, yes=yes)
    _show(run_dir)
    out.print(f"run folder: {run_dir}", highlight=False, soft_wrap=True)


def _show(run_dir: Path) -> None:
    from tunewise.report.leaderboard import leaderboard
    from tunewise.report.selection import budget_line, selections
    from tunewise.store import open_run

    store, run = open_run(run_dir)
    results = store.main_results(run["id"])  # the run's own cells (curve cells are drawn by the report)
    store.close()
    task = run["config"]["task"]["source"]
    out.print(leaderboard(results, title=f"run {run['id']} · task {task} · status {run['status']}"))
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
    out.print(f"{config}: valid · {session.task().summary()} · strategies: "
              f"{', '.join(s.id for s in session.config.strategies)}", highlight=False)
    for line in session.longest_inputs():
        out.print(line, highlight=False, soft_wrap=True)


def _load_commands() -> None:
    import importlib
    import pkgutil

    import tunewise.commands as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{pkg.__name__}.{info.name}")


_load_commands()


def main() -> None:
    try:
        app()
    except UserError as e:  # raised outside a command (e.g. while parsing)
        err.print(f"[red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
