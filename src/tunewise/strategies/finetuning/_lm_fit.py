"""The one path every causal-LM fine-tuning strategy takes (full, gradual-unfreeze, sft, adapters, PEFT).

fresh copy of the base weights -> `prepare` (freeze, unfreeze, wrap) -> train with the answer-only loss
-> save the artifact -> predictor; and one load path for `--resume`. A strategy says only how it
prepares the model and what it saves (`CausalFit`, `CausalArtifact`); the model handed to `train()` is
the one trained (tests snapshot it through `ctx.on_train_start`); a classifier that collapses to one label
is retrained (`_collapse.train_guarded`). Also here: per-model default
hyper-parameters for strategies that train an encoder or a causal LM, and sizes on disk for `ctx.stats`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from tunewise.strategies.base import Predictor, Strategy
from tunewise.strategies.finetuning import _causal
from tunewise.strategies.finetuning._collapse import train_guarded
from tunewise.strategies.finetuning._encoder import fit_classifier, load_classifier
from tunewise.strategies.finetuning._train import seed_everything, train
from tunewise.strategies.prompting._common import prompt_predictor


def _same(model):
    return model


@dataclass(frozen=True)
class CausalArtifact:
    """How a fine-tuned causal LM is saved and reloaded, and what its predictions run on."""

    folder: str  # under ctx.artifact_dir
    save: Callable[[Any, Any, Path], None]  # (trained model, backend, folder)
    load: Callable[[Any, Path], Any]  # (backend, folder) -> the model, or None when nothing was saved
    size_stat: str = "model_mb"  # ctx.stats key for its size on disk (MiB)
    runs_on: Callable[[Any], Any] = _same  # the trained/loaded model -> what predictions and probes run on


@dataclass
class CausalFit:
    """What one strategy's causal fine-tune changes on the shared path."""

    prepare: Callable[[Any], Any] = _same  # fresh base model -> the model to train (freeze, unfreeze, wrap)
    artifact: CausalArtifact | None = None  # None: the whole model (`WHOLE_MODEL`)
    shared: list[dict[str, str]] | None = None  # the prompt's fixed part; None: `_causal.shared_messages`
    callbacks: list = field(default_factory=list)  # extra TrainerCallbacks; `prepare` may add to them
    max_new_tokens: int = 64  # generation tasks: longest answer in tokens


def train_causal(model, backend, task, ctx, cfg, how: CausalFit) -> None:
    """Train `model` (a causal LM or a PeftModel over one) on the task; answer-only loss, in place.
    Records `response_tokens` (tokens under the loss per epoch) next to `train()`'s statistics. A classifier
    that collapses to one label is retrained with the remedies of `_collapse.py` (`how.callbacks` are copied
    per attempt, so a schedule such as gradual unfreezing starts afresh); `ctx.stats['collapse']` says so."""
    split = _causal.training_split(task, cfg.max_train_examples, ctx.seed)
    train_rows = _causal.encode_examples(backend, task, split, cfg.max_length, how.shared,
                                         stats=ctx.stats)
    eval_rows = _causal.encode_examples(backend, task, task.validation, cfg.max_length, how.shared)
    ctx.stats["response_tokens"] = sum(sum(t != _causal.IGNORE for t in r["labels"]) for r in train_rows)

    runs_on = (how.artifact or WHOLE_MODEL).runs_on  # e.g. prompt-learning PEFT predicts through a wrapper

    def answer(check) -> list[str]:
        return [p.output for p in lm_predictor(backend, task, runs_on(model), how.shared,
                                               how.max_new_tokens).predict(check)]

    def attempt(rows, c, cx) -> None:
        train(model, rows, eval_rows, _causal.collator(backend), c, cx, label=cfg.id,
              callbacks=[copy.copy(cb) for cb in how.callbacks], answer=answer)

    if not task.is_classification:
        attempt(train_rows, cfg, ctx)
        return
    train_guarded(model, train_rows, [e.target for e in split], task.validation, attempt, answer, cfg, ctx)


def fit_causal(backend, task, ctx, cfg, how: CausalFit) -> Predictor:
    """Fine-tune a fresh copy of the causal LM as `how` says, save it, and return its predictor."""
    artifact = how.artifact or WHOLE_MODEL
    seed_everything(ctx.seed)
    model = how.prepare(backend.fresh_model())
    train_causal(model, backend, task, ctx, cfg, how)
    scoring = artifact.runs_on(model)
    path = ctx.artifact_dir / artifact.folder
    artifact.save(model, backend, path)
    ctx.stats[artifact.size_stat] = dir_mb(path)
    return lm_predictor(backend, task, scoring, how.shared, how.max_new_tokens)


def load_causal_fit(backend, task, ctx, how: CausalFit) -> Predictor | None:
    """The predictor of a finished `fit_causal` from its saved artifact; None when there is none (resume)."""
    artifact = how.artifact or WHOLE_MODEL
    model = artifact.load(backend, ctx.artifact_dir / artifact.folder)
    return None if model is None else lm_predictor(backend, task, artifact.runs_on(model), how.shared,
                                                   how.max_new_tokens)


def lm_predictor(backend, task, model, shared: list[dict[str, str]] | None = None, max_new_tokens: int = 64):
    """Predict with a fine-tuned causal LM through the same prompt it was trained on."""
    shared = _causal.shared_messages(task) if shared is None else shared
    return prompt_predictor(backend.with_model(model), task, shared, max_new_tokens=max_new_tokens)


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


WHOLE_MODEL = CausalArtifact("model", save_causal, load_causal)


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
    the instance's backend kind and task kinds follow that option. Subclasses say how to `prepare` the
    model; fitting and loading take the encoder path (`_encoder`) or the causal path above."""

    backend_kind = "encoder"  # the class default; each instance follows its `model` option
    task_kinds = ("classification",)

    def __init__(self, config):
        super().__init__(config)
        self.backend_kind = config.model
        if config.model == "causal":
            self.task_kinds = ("classification", "generation")

    def prepare(self, model, ctx, callbacks: list):
        """Make the fresh model (classifier or causal LM) ready to train; may add TrainerCallbacks."""
        return model

    def fit(self, backend, task, ctx):
        callbacks: list = []
        prepare = partial(self.prepare, ctx=ctx, callbacks=callbacks)
        if self.config.model == "encoder":
            return fit_classifier(backend, task, ctx, self.config, prepare, callbacks=callbacks)
        return fit_causal(backend, task, ctx, self.config, CausalFit(prepare, callbacks=callbacks))

    def load(self, backend, task, ctx):
        if self.config.model == "encoder":
            return load_classifier(backend, task, ctx, self.config)
        return load_causal_fit(backend, task, ctx, CausalFit())
