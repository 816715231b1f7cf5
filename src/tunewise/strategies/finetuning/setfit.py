"""setfit: contrastive fine-tuning of a sentence encoder, then a logistic-regression head on its embeddings.

The method of Tunstall et al. 2022, "Efficient Few-Shot Learning Without Prompts" (arXiv:2209.11055), trained
through the `setfit` library (1.2, on sentence-transformers): pairs of training examples with the same label
are pulled together and pairs with different labels pushed apart (cosine-similarity loss), then scikit-learn's
LogisticRegression is fitted on the tuned encoder's embeddings. The encoder starts from the run's encoder
backend (`backend.classifier(...)`'s body, mean pooling, L2-normalised as all-MiniLM-L6-v2 is).

Saved without pickles: the tuned encoder as a sentence-transformers folder (safetensors) and the head's
coefficients as JSON, so `--resume` (and serve) reload it without executing anything from the run folder.
"""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from tunewise.data import Example, Task
from tunewise.errors import UserError
from tunewise.registry import register
from tunewise.strategies.base import FitContext, Prediction, Predictor, Strategy
from tunewise.strategies.finetuning._causal import training_split
from tunewise.strategies.finetuning._encoder import class_predictions, input_limit, token_lengths
from tunewise.strategies.finetuning._train import TrainConfig, _callbacks, count_parameters, seed_everything

BODY, HEAD = "encoder", "head.json"


class SetFitConfig(TrainConfig):
    learning_rate: float = Field(2e-5, gt=0, description="Learning rate of the encoder in the contrastive phase "
                                 "(SetFit's default).")
    epochs: float = Field(1.0, gt=0, description="Passes over the generated pairs (rounded to a whole number, "
                          "at least 1).")
    batch_size: int = Field(16, gt=0, description="Pairs per contrastive step.")
    max_length: int = Field(128, gt=8, description="Longest input in tokens (longer ones are cut and counted).")
    num_iterations: int = Field(20, ge=1, le=1000, description="Pairs generated per training example and "
                                "iteration: 2 x num_iterations x examples pairs in all (SetFit's default 20).")
    max_steps: int | None = Field(None, ge=1, description="Stop the contrastive phase after this many steps "
                                  "(caps the cost on large training splits); null trains every pair.")
    head_c: float = Field(1.0, gt=0, description="Inverse L2 regularisation strength of the logistic-regression "
                          "head (scikit-learn's C).")
    early_stopping_patience: int | None = Field(None, ge=1, description="Not used by SetFit (its contrastive "
                                                "phase has no validation loss to stop on): leave null.")

    gradient_accumulation: int = Field(1, ge=1, le=1, description="Not supported by SetFit: must stay 1 (raise "
                                       "batch_size instead).")
    weight_decay: float = Field(0.0, ge=0, description="Not supported by SetFit's contrastive phase: must stay 0 "
                                "(regularise the head with head_c).")
    bf16: bool | Literal["auto"] = Field("auto", description="SetFit trains in fp32: auto or false (true is "
                                         "refused).")

    @model_validator(mode="after")
    def _supported(self) -> SetFitConfig:
        if self.early_stopping_patience is not None:
            raise ValueError("setfit has no early stopping: leave early_stopping_patience null and cap the work "
                             "with num_iterations or max_steps")
        if self.gradient_accumulation != 1:
            raise ValueError("setfit does not accumulate gradients: set gradient_accumulation to 1 and raise "
                             "batch_size instead")
        if self.weight_decay != 0 or self.bf16 is True:  # the setfit library's contrastive phase has neither
            raise ValueError("setfit trains in fp32 without weight decay: leave weight_decay at 0 and bf16 at "
                             "auto; regularise the head with head_c")
        return self


class SetFitPredictor(Predictor):
    """Labels from the tuned encoder's embeddings through the logistic-regression head; `scores` are the head's
    probabilities over task.labels (0 for a label absent from training). Inputs longer than max_length or the
    encoder's context (tokens) are cut and counted, or refused under task.long_inputs."""

    def __init__(self, body, head, labels: list[str], max_length: int, task: Task | None = None,
                 context: int | None = None, batch_size: int = 32):
        self.model, self.head, self.labels, self.batch_size = body.eval(), head, labels, batch_size
        self.policy, self.cut = input_limit(context, task, max_length)
        self.model.max_seq_length = self.cut.tokens or max_length

    def predict(self, examples: Sequence[Example], on_batch: Callable[[int], None] | None = None
                ) -> list[Prediction]:
        preds = []
        tok = self.model.tokenizer
        for start in range(0, len(examples), self.batch_size):
            batch = list(examples[start:start + self.batch_size])
            full = token_lengths(tok, batch, self.policy)
            emb = self.model.encode([e.input for e in batch], batch_size=self.batch_size, show_progress_bar=False,
                                    convert_to_numpy=True)
            probs = np.zeros((len(batch), len(self.labels)))
            probs[:, self.head.classes_.astype(int)] = self.head.predict_proba(emb)
            lengths = [min(total, self.model.max_seq_length) for total in full]
            preds += class_predictions(batch, probs, lengths, full, self.labels, self.cut)
            if on_batch:
                on_batch(len(batch))
        return preds


def _body(backend, task: Task, ctx: FitContext):
    """A SentenceTransformer (transformer + mean pooling + L2 normalisation) over the backend's encoder weights."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    start = ctx.artifact_dir / "encoder-start"
    encoder = backend.classifier(task.labels).base_model  # the contract's way to the encoder's weights
    encoder.save_pretrained(start)
    backend.tokenizer.save_pretrained(start)
    transformer = Transformer(str(start))
    shutil.rmtree(start, ignore_errors=True)
    body = SentenceTransformer(modules=[transformer, Pooling(transformer.get_embedding_dimension(), "mean"),
                                        Normalize()], device=str(backend.device))
    for name, p in body.named_parameters():
        p.requires_grad = ".pooler." not in name  # BERT's pooler is unused by mean pooling: frozen, unchanged
    return body


def _train(body, head, task: Task, examples: list[Example], cfg: SetFitConfig, ctx: FitContext) -> None:
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    index = {label: i for i, label in enumerate(task.labels)}
    data = Dataset.from_dict({"text": [e.input for e in examples], "label": [index[e.target] for e in examples]})
    args = TrainingArguments(batch_size=cfg.batch_size, num_epochs=max(1, round(cfg.epochs)),
                             body_learning_rate=cfg.learning_rate, num_iterations=cfg.num_iterations,
                             max_steps=cfg.max_steps or -1, warmup_proportion=cfg.warmup_ratio,
                             max_length=cfg.max_length, seed=ctx.seed, report_to="none", show_progress_bar=False,
                             output_dir=str(ctx.artifact_dir / "checkpoints"), save_strategy="no",
                             logging_steps=max(1, cfg.num_iterations * len(examples) // cfg.batch_size // 8))
    model = SetFitModel(model_body=body, model_head=head)
    trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=_callbacks(ctx, cfg.id))
    for cb in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(cb)  # our progress bar and the store replace its printed dicts and tqdm bar
    trainer.train()
    shutil.rmtree(ctx.artifact_dir / "checkpoints", ignore_errors=True)  # the tuned encoder is saved next
    state = trainer.st_trainer.state
    pair_tokens = 2 * cfg.num_iterations * sum(token_lengths(body.tokenizer, examples, input_limit(
        None, None, cfg.max_length)[1]))  # each example appears in about 2 x num_iterations pairs per epoch
    ctx.stats.update(train_steps=state.global_step, epochs_run=round(state.epoch or 0, 2),
                     train_tokens=int(pair_tokens * max(state.epoch or 0, 1e-9)),
                     final_train_loss=next((r["train_loss"] for r in reversed(state.log_history)
                                            if "train_loss" in r), None))


@register
class SetFit(Strategy):
    name = "setfit"
    family = "finetuning"
    backend_kind = "encoder"
    needs = ("can_train",)
    task_kinds = ("classification",)
    summary = "SetFit: contrastive fine-tuning of a sentence encoder plus a logistic-regression head."
    Config = SetFitConfig

    def fit(self, backend, task, ctx):
        from sklearn.linear_model import LogisticRegression

        cfg: SetFitConfig = self.config
        _require(cfg.id)
        seed_everything(ctx.seed)
        examples = training_split(task, cfg.max_train_examples, ctx.seed)
        if len({e.target for e in examples}) < 2:
            raise UserError(f"{cfg.id}: the training split has one label only; SetFit needs two or more")
        with _quiet():
            body = _body(backend, task, ctx)
            if ctx.on_train_start is not None:
                ctx.on_train_start(body)
            head = LogisticRegression(C=cfg.head_c, max_iter=1000, random_state=ctx.seed)
            _train(body, head, task, examples, cfg, ctx)
            body.save(str(ctx.artifact_dir / BODY))
        trainable, total = count_parameters(body)
        (ctx.artifact_dir / HEAD).write_text(json.dumps(
            {"classes": head.classes_.tolist(), "coef": head.coef_.tolist(), "intercept": head.intercept_.tolist()}),
            encoding="utf-8")
        ctx.stats.update(train_examples=len(examples), trainable_params=trainable, total_params=total,
                         head_params=int(head.coef_.size + head.intercept_.size), method="setfit library")
        return SetFitPredictor(body, head, task.labels, cfg.max_length, task=task, context=backend.context_window)

    def load(self, backend, task, ctx):
        from sentence_transformers import SentenceTransformer
        from sklearn.linear_model import LogisticRegression

        if not (ctx.artifact_dir / HEAD).is_file():
            return None
        saved = json.loads((ctx.artifact_dir / HEAD).read_text(encoding="utf-8"))
        head = LogisticRegression()
        head.classes_, head.coef_ = np.array(saved["classes"]), np.array(saved["coef"])
        head.intercept_ = np.array(saved["intercept"])
        with _quiet():
            body = SentenceTransformer(str(ctx.artifact_dir / BODY), device=str(backend.device))
        return SetFitPredictor(body, head, task.labels, self.config.max_length, task=task,
                               context=backend.context_window)


def _require(where: str) -> None:
    try:
        import setfit  # noqa: F401
    except ImportError:
        raise UserError(f"{where}: the setfit library is not installed; pip install 'tunewise[setfit]'") from None


class _quiet:
    """setfit, sentence-transformers and datasets print banners, bars and warnings: keep them off the terminal."""

    def __enter__(self):
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.simplefilter("ignore")
        import datasets
        import setfit  # noqa: F401  (imported first: it sets its loggers' levels on import)
        from transformers.utils import logging as hf_logging

        self._bars = datasets.utils.logging.is_progress_bar_enabled(), hf_logging.is_progress_bar_enabled()
        datasets.disable_progress_bars()
        hf_logging.disable_progress_bar()  # "Loading weights", "Writing model shards"
        self._levels = {n: logging.getLogger(n).level for n in ("setfit", "sentence_transformers")}
        for n in self._levels:
            logging.getLogger(n).setLevel(logging.ERROR)
        return self

    def __exit__(self, *exc):
        import datasets
        from transformers.utils import logging as hf_logging

        for n, level in self._levels.items():
            logging.getLogger(n).setLevel(level)
        if self._bars[0]:
            datasets.enable_progress_bars()
        if self._bars[1]:
            hf_logging.enable_progress_bar()
        self._warnings.__exit__(*exc)
        return False
