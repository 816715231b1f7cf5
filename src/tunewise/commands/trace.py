"""`tunewise trace RUN STRATEGY EXAMPLE`: one example's input, target, output and every step the
strategy recorded (chain steps, rendered templates, raw generations), read from the run's store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from tunewise.cli import app, friendly, out
from tunewise.errors import UserError


def example_trace(run_dir: str | Path, strategy: str, example_id: str) -> dict[str, Any]:
    """The stored prediction of one example by one strategy (with its trace), or a one-line UserError."""
    from tunewise.store import open_run

    store, run = open_run(run_dir)
    try:
        known = [r["strategy"] for r in store.results(run["id"])]
        if strategy not in known:
            raise UserError(f"{run_dir}: run {run['id']} has no strategy '{strategy}' "
                            f"(strategies: {', '.join(known) or 'none yet'})")
        rows = store.predictions(run["id"], strategy)
    finally:
        store.close()
    for row in rows:
        if row["example_id"] == example_id:
            return row
    shown = ", ".join(r["example_id"] for r in rows[:5]) + (", ..." if len(rows) > 5 else "")
    raise UserError(f"{run_dir}: strategy '{strategy}' has no prediction for example '{example_id}' "
                    f"(example ids: {shown or 'none stored'}; see predictions/{strategy}.jsonl)")


def _block(title: str, text: Any) -> None:
    out.print(f"[bold]{escape(title)}[/]")
    body = text if isinstance(text, str) else repr(text)
    out.print(body, markup=False, highlight=False, soft_wrap=True)


def show_trace(row: dict[str, Any], strategy: str) -> None:
    verdict = "[green]correct[/]" if row["score"] >= 1 else f"[red]score {row['score']:.2f}[/]"
    out.print(f"[bold]example[/] {escape(row['example_id'])} · [bold]strategy[/] {escape(strategy)} · {verdict}"
              f" · {row['prompt_tokens']} prompt + {row['completion_tokens']} completion tokens")
    _block("input", row["input"])
    _block("target", row["target"])
    _block("output", row["output"])
    if row["scores"]:
        ranked = sorted(row["scores"].items(), key=lambda kv: -kv[1])
        _block("label probabilities", "  ".join(f"{label} {p:.3f}" for label, p in ranked))
    steps = row["trace"] or []
    if not steps:
        out.print("[dim](no trace: this strategy makes a single call per example)[/]")
    for n, step in enumerate(steps, 1):
        step = dict(step)
        name = step.pop("step", None) or f"#{n}"
        tokens = step.pop("tokens", None)
        used = f" ({tokens['prompt']} prompt + {tokens['completion']} completion tokens)" \
            if isinstance(tokens, dict) and {"prompt", "completion"} <= set(tokens) else ""
        out.rule(f"step {n}: {escape(str(name))}{used}", align="left")
        for key in ("system", "input", "output"):
            if key in step:
                _block(key, step.pop(key))
        for key, value in step.items():  # whatever else a strategy recorded (e.g. raw generations)
            _block(key, value)


@app.command()
@friendly
def trace(
    run_dir: Annotated[Path, typer.Argument(help="A run folder printed by `tunewise run`.")],
    strategy: Annotated[str, typer.Argument(help="Strategy id in that run (as in the leaderboard).")],
    example: Annotated[str, typer.Argument(help="Example id (see predictions/<strategy>.jsonl).")],
):
    """Show one example's input, target, output and every step of the strategy's trace."""
    show_trace(example_trace(run_dir, strategy, example), strategy)
