"""`tunewise export RUN`: the base model or a causal fine-tune, merged, as GGUF (llama.cpp) or a transformers folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tunewise.cli import app, friendly


@app.command()
@friendly
def export(
    run_dir: Annotated[Path, typer.Argument(help="A run folder printed by `tunewise run`.")],
    strategy: Annotated[str | None, typer.Option(
        help="Fine-tuning strategy id to export, merged into the weights (full, LoRA, DoRA, IA3); "
             "default: the run's base model.")] = None,
    gguf: Annotated[Path | None, typer.Option(help="GGUF file to write (llama.cpp, ollama, LM Studio).")] = None,
    type_: Annotated[str, typer.Option("--type", help="GGUF tensor type: q8_0 (8-bit, near-lossless), f16 or f32 "
                                       "(exact).")] = "q8_0",
    tokenizer_gguf: Annotated[Path | None, typer.Option(
        help="A GGUF of the base model, whose tokenizer is copied (default: the embedded SmolLM2's own file).")] = None,
    merged: Annotated[Path | None, typer.Option(help="Folder to write the merged transformers model to.")] = None,
):
    """Write the run's base model or one causal fine-tune, adapters merged, as GGUF and/or a transformers folder."""
    from tunewise.export import export_run

    export_run(run_dir, strategy, gguf, type_, tokenizer_gguf, merged, log=lambda line: typer.echo(line))
