"""`tunewise serve RUN`: serve a run's strategies as an OpenAI-compatible HTTP API (see tunewise.serve)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tunewise.cli import app, friendly


@app.command()
@friendly
def serve(
    run_dir: Annotated[Path, typer.Argument(help="A run folder printed by `tunewise run`.")],
    strategy: Annotated[list[str] | None, typer.Option(
        help="Strategy id to serve (repeat for several; default: every finished one).")] = None,
    host: Annotated[str, typer.Option(help="Address to bind (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.", min=1, max=65535)] = 8000,
    api_key_env: Annotated[str | None, typer.Option(
        help="Environment variable holding the bearer key clients must send (never printed).")] = None,
    state_dir: Annotated[Path | None, typer.Option(
        help="Folder for uploaded files, fine-tuning jobs and their models (default: RUN/serve).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    threads: Annotated[int | None, typer.Option(
        help="CPU threads per model operation (default: torch's; 1 is faster on a busy shared machine).",
        min=1)] = None,
    engine: Annotated[str, typer.Option(
        help="How the base model generates: transformers (exact); int8 (CPU: int8 Linear weights, faster "
             "single-stream decoding, different text); llamacpp (llama.cpp on the base model's GGUF, in its own "
             "process: fastest on a CPU). Strategies and scores are unchanged.")] = "transformers",
    gguf: Annotated[str | None, typer.Option(
        help="--engine llamacpp: the base model's GGUF (default: the embedded model's own file).")] = None,
):
    """Serve the run's strategies (model = strategy id), its base model and fine-tuning jobs over HTTP."""
    from tunewise.serve import serve_run

    serve_run(run_dir, [s for part in strategy for s in part.split(",") if s] if strategy else None, host, port,
              api_key_env, state_dir, device, threads, log=lambda line: typer.echo(line, err=True), engine=engine,
              gguf=gguf)
