"""Fine-tuning a causal LM on a task, shared by full fine-tuning, gradual unfreezing and the PEFT methods.

The model handed to `train_causal` is the one trained (tests snapshot it through `ctx.on_train_start`);
the data are the instruction-formatted examples of `_causal.py` with the loss on the answer only.
Also here: per-model default hyper-parameters for strategies that train an encoder or a causal LM,
saving/reloading whole causal models, and sizes on disk for `ctx.stats`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunewise.strategies.base import Strategy
from tunewise.strategies.finetuning import _causal
from tunewise.strategies.finetuning._train import train
from tunewise.strategies.prompting._common import prompt_predictor


def train_causal(model, backend, task, ctx, cfg, callbacks: list | None = None) -> dict[str, Any]:
    """Train `model` (a causal LM or a PeftModel over one) on the task; answer-only loss."""
    train_rows = _causal.encode_examples(
        backend, task, _causal.training_split(task, cfg.max_train_examples, ctx.seed), cfg.max_length,
        stats=ctx.stats)
    eval_rows = _causal.encode_examples(backend, task, task.validation, cfg.max_length)
    return train(model, train_rows, eval_rows, _causal.collator(backend), cfg, ctx, label=cfg.id,
                 callbacks=callbacks)


def lm_predictor(backend, task, model):
    """Predict with a fine-tuned causal LM through the same prompt it was trained on."""
    return prompt_predictor(backend.with_model(model), task, _causal.shared_messages(task))


def save_causal(model, backend, path: Path) -> None:
    """A whole model plus tokenizer: a folder plain `transformers` (and vLLM) can load."""
    model.save_pretrained(path)
    backend.tokenizer.save_pretrained(path)


def load_causal(backend, path: Path):
    """The model saved by `save_causal`, on the backend's device; None when there is none (resume)."""
    from transformers import AutoModelForCausalLM

    if not (path / "config.json").is_file():
        return None
    return AutoModelForCausalLM.from_pretrained(path, dtype=backend.dtype).to(backend.device).eval()


def dir_mb(path: Path) -> float:
    """Size on disk of a saved artifact folder, in MiB."""
    return round(sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 2**20, 3)


def model_defaults(data: Any, by_model: dict[str, dict[str, Any]], default_model: str = "encoder") -> Any:
    """Fill hyper-parameters the user left out with the defaults for the chosen `model` (before validation).

    Encoder classifiers and causal LMs want very different learning rates and lengths; the dumped
    config carries the resolved values, so it round-trips.
    """
    if isinstance(data, dict):
        chosen = by_model.get(str(data.get("model", default_model)), {})
        data = {**chosen, **data}
    return data


class ModelOptionStrategy(Strategy):
    """A strategy that trains either the encoder (default) or the causal LM, chosen by its `model` option:
    the instance's backend kind and task kinds follow that option."""

    backend_kind = "encoder"  # the class default; each instance follows its `model` option
    task_kinds = ("classification",)

    def __init__(self, config):
        super().__init__(config)
        self.backend_kind = config.model
        if config.model == "causal":
            self.task_kinds = ("classification", "generation")
