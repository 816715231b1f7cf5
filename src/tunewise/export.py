"""`tunewise export RUN`: a run's base model or one of its causal fine-tunes, merged into plain weights, as one
GGUF file for llama.cpp, ollama, LM Studio or `tunewise serve --engine llamacpp`, or as a transformers folder.

What merges: full fine-tunes (the weights as trained) and the PEFT methods whose update folds into the
weights — LoRA, DoRA and IA3 (peft's `merge_and_unload`, on a copy: the run's artifact is untouched).
Prompt-learning methods (prefix, prompt and P-tuning) put virtual tokens before the input instead; they have no
merged form and are refused in one line, as are encoder strategies (no language model to export).

The GGUF writer (backends/gguf.py) copies the tokenizer from a GGUF of the same tokenizer: the embedded
SmolLM2's own file by default, `tokenizer_gguf` for any other base (the GGUF its publishers ship).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from tunewise.errors import UserError

MERGEABLE = ("LORA", "IA3")  # peft types whose update merges into the base weights (LoRA covers DoRA)


def merged_model(model: Any, what: str) -> Any:
    """`model` with any PEFT adapter merged in (a copy when there is one; `model` itself otherwise).
    Raises UserError for prompt-learning adapters, which cannot be merged."""
    from peft import PeftModel

    if not isinstance(model, PeftModel):
        return model
    kind = str(model.peft_config[model.active_adapter].peft_type).rsplit(".", 1)[-1]
    if kind not in MERGEABLE:
        raise UserError(f"{what} is a {kind.lower().replace('_', '-')} adapter: its virtual tokens have no merged "
                        "form in the weights; serve it with `tunewise serve` instead")
    return copy.deepcopy(model).merge_and_unload()


def export_run(run_dir: str | Path, strategy: str | None = None, gguf: str | Path | None = None,
               file_type: str = "q8_0", tokenizer_gguf: str | Path | None = None,
               merged_dir: str | Path | None = None, log=print) -> list[Path]:
    """Export the run's base model (`strategy` None) or that strategy's merged causal model to `gguf` (a file)
    and/or `merged_dir` (a transformers folder: config, safetensors, tokenizer). Returns the paths written.
    Raises UserError for an unknown or unfinished strategy, an encoder strategy, a prompt-learning adapter, an
    architecture backends/gguf.py does not write, or a base without a known tokenizer GGUF."""
    from tunewise.backends.embedded import embedded_gguf
    from tunewise.backends.gguf import write_gguf
    from tunewise.runs import Run

    if gguf is None and merged_dir is None:
        raise UserError("tunewise export: say where to write: --gguf FILE and/or --merged DIR")
    run = Run.open(run_dir, device="cpu", announce=False)
    try:
        what = f"the base model {run.config.model}"
        if strategy is None:
            backend = run.backend("causal")
            model = backend.model
        else:
            ids = [c.id for c in run.config.strategies]
            if strategy not in ids:
                raise UserError(f"--strategy {strategy}: run {run.id} has no such strategy (strategies: "
                                f"{', '.join(ids)})")
            cell = run.cell(strategy)
            status = run.status(cell)
            if status != "done":
                raise UserError(f"--strategy {strategy}: it is '{status or 'not started'}' in run {run.id}; finish "
                                f"it first with `tunewise run --resume {run_dir}`")
            if run.backend_kind(cell) != "causal":
                raise UserError(f"--strategy {strategy} runs on the encoder {run.config.encoder}: only causal "
                                "language models export to GGUF")
            predictor = run.predictor(cell)
            model = getattr(predictor, "model", None)
            if model is None or run.strategy(cell.strategy).family != "finetuning":
                raise UserError(f"--strategy {strategy} is a prompting strategy: it has no weights of its own; "
                                "export the base model (no --strategy) and use its prompt")
            backend = run.backend("causal")
            what = f"strategy {strategy}"
        model = merged_model(model, what)
        written = []
        if merged_dir is not None:
            out = Path(merged_dir)
            model.save_pretrained(out)
            backend.tokenizer.save_pretrained(out)
            written.append(out)
            log(f"wrote {what}, merged, as a transformers folder: {out}")
        if gguf is not None:
            source = tokenizer_gguf or embedded_gguf(run.config.model)
            if source is None:
                raise UserError(f"--gguf: the tokenizer of {run.config.model} is copied from a GGUF of it; give one "
                                "with --tokenizer-gguf FILE (the GGUF its publishers ship)")
            path = write_gguf(model, backend.tokenizer, gguf, source, file_type,
                              name=f"{run.config.model} {strategy or 'base'}")
            written.append(path)
            log(f"wrote {what} as GGUF ({file_type}, {path.stat().st_size / 2**20:,.1f} MiB): {path}")
        return written
    finally:
        run.close()
