"""`tunewise curve RUN --sizes 16,64,256`: fine-tune at several training-set sizes (data efficiency)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tunewise.cli import app, friendly, out


@app.command()
@friendly
def curve(
    run_dir: Annotated[Path, typer.Argument(help="A finished run folder with fine-tuning strategies.")],
    sizes: Annotated[str, typer.Option(help="Training-set sizes to fine-tune at, comma-separated.")] = "16,64,256",
):
    """Re-run the run's fine-tuning strategies on fewer training examples; `tunewise report` then plots
    quality against training examples, with the prompting strategies as horizontal lines."""
    import json

    from tunewise.curve import parse_sizes, run_curve
    from tunewise.report.crossover import crossover_lines

    path = run_curve(run_dir, parse_sizes(sizes))
    for line in crossover_lines(json.loads(path.read_text(encoding="utf-8"))):  # the headline first
        out.print(line, highlight=False, soft_wrap=True)
    out.print(f"curve: {path} (run `tunewise report {run_dir}` to see it)", highlight=False, soft_wrap=True)
