"""`tunewise report RUN`: the HTML report (verdict, leaderboard, charts) and results.csv of a run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tunewise.cli import app, friendly, out


@app.command()
@friendly
def report(
    run_dir: Annotated[Path, typer.Argument(help="A run folder printed by `tunewise run`.")],
    settings: Annotated[Path | None, typer.Option(
        help="YAML with prices: and/or constraints: sections that override the run's own.")] = None,
    mlflow: Annotated[bool, typer.Option(
        "--mlflow", help="Also log the run to MLflow (needs the mlflow extra of tunewise) at MLflow's default "
        "tracking URI.")] = False,
    mlflow_uri: Annotated[str | None, typer.Option(
        help="Log to MLflow at this tracking URI (implies --mlflow), e.g. http://localhost:5000.")] = None,
):
    """Write RUN/report.html (self-contained, opens offline) and RUN/results.csv; print the verdict."""
    from tunewise.report.html import build_report

    # Typer has no optional-value options, so `--mlflow [URI]` is spelled --mlflow / --mlflow-uri URI.
    files = build_report(run_dir, settings, mlflow_uri=mlflow_uri, log_mlflow=mlflow)
    rec = files.analysis.recommendation
    if rec is not None:
        out.print(f"[bold]verdict[/] {rec.headline}", highlight=False, soft_wrap=True)
    out.print(f"report: {files.html}", highlight=False, soft_wrap=True)
    out.print(f"results: {files.csv}", highlight=False, soft_wrap=True)
    if files.mlflow_run:
        out.print(f"mlflow run: {files.mlflow_run}", highlight=False, soft_wrap=True)
