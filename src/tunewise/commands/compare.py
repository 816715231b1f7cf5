"""`tunewise compare RUN_A RUN_B`: strategies of two runs side by side, with differences and p-values."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tunewise.cli import app, friendly, out


@app.command()
@friendly
def compare(
    run_a: Annotated[Path, typer.Argument(help="The first run folder (A).")],
    run_b: Annotated[Path, typer.Argument(help="The second run folder (B).")],
):
    """Compare two runs: quality, cost and latency per strategy, B minus A, and what changed in the config."""
    from tunewise.report.compare_runs import compare_runs, comparison_table, summary_lines

    rc = compare_runs(run_a, run_b)
    out.print(comparison_table(rc))
    for line in summary_lines(rc):
        out.print(line, highlight=False, soft_wrap=True)
