"""The encoder path: an encoder + new classification head, shared by full-finetune, head-only, gradual-unfreeze
and distill, which differ only in how they prepare the model (and distill in its soft-labelled rows)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from tunewise.backends.context import Limit, limit_for, name_of, record, too_long
from tunewise.data import Example, Task
from tunewise.errors import UserError
from tunewise.strategies.base import FitContext, Prediction, Predictor
from tunewise.strategies.finetuning._collapse import train_guarded
from tunewise.strategies.finetuning._train import TrainConfig, seed_everything, train

# (tokenizer, task, training examples, max_length) -> (training rows, validation rows)
RowsHook = Callable[[object, Task, list[Example], int], tuple[list[dict], list[dict]]]


def input_limit(context: int | None, task: Task | None, max_length: int) -> tuple[Limit, Limit]:
    """(what the policy guards: the encoder's `context_window` in tokens and task.max_input_tokens; what inputs
    are cut to: that, or the strategy's max_length when smaller). Cutting to max_length is counted, never
    refused."""
    policy = limit_for(context, task)
    if policy.tokens is not None and policy.tokens <= max_length:
        return policy, policy
    return policy, Limit(max_length, policy.policy, f"the strategy's max_length = {max_length}")


def token_lengths(tokenizer, examples: Sequence[Example], policy: Limit) -> list[int]:
    """Each input's tokens (special tokens included); raises InputTooLong under `refuse` for one over the limit."""
    lengths = [len(ids) for ids in tokenizer([e.input for e in examples], verbose=False)["input_ids"]]
    for e, n in zip(examples, lengths, strict=True):
        if policy.policy == "refuse" and policy.tokens is not None and n > policy.tokens:
            raise too_long(name_of(e), n, policy)
    return lengths


def count_cut(context: int | None, tokenizer, task: Task, examples: Sequence[Example], max_length: int
              ) -> tuple[int, int]:
    """(the length training inputs are cut to, how many of `examples` are longer) for `ctx.stats`."""
    policy, cut = input_limit(context, task, max_length)
    return cut.tokens or max_length, sum(n > (cut.tokens or max_length)
                                         for n in token_lengths(tokenizer, examples, policy))


class EncoderPredictor(Predictor):
    """Class probabilities of a sequence classifier; inputs longer than `max_length` or the encoder's
    `context` (its backend's `context_window`, tokens) are cut and counted, or refused under task.long_inputs."""

    def __init__(self, model, tokenizer, labels: list[str], max_length: int, batch_size: int = 32,
                 task: Task | None = None, context: int | None = None):
        self.model, self.tokenizer, self.labels = model.eval(), tokenizer, labels
        self.batch_size = batch_size
        self.policy, self.cut = input_limit(context, task, max_length)
        self.max_length = self.cut.tokens or max_length

    @torch.no_grad()
    def predict(self, examples: Sequence[Example], on_batch: Callable[[int], None] | None = None
                ) -> list[Prediction]:
        device = next(self.model.parameters()).device
        preds = []
        for start in range(0, len(examples), self.batch_size):
            batch = examples[start:start + self.batch_size]
            full = token_lengths(self.tokenizer, batch, self.policy)
            enc = self.tokenizer([e.input for e in batch], padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="pt").to(device)
            probs = torch.softmax(self.model(**enc).logits.float(), dim=-1).cpu().numpy()
            lengths = enc["attention_mask"].sum(1).tolist()
            preds += class_predictions(batch, probs, lengths, full, self.labels, self.cut)
            if on_batch:
                on_batch(len(batch))
        return preds


def class_predictions(batch: Sequence[Example], probs, lengths: Sequence[int], full: Sequence[int],
                      labels: list[str], cut: str) -> list[Prediction]:
    """One Prediction per example from a classifier's probabilities `probs` (shape [examples, labels]): the
    argmax label, every label's probability, the `lengths` tokens it read, and a truncation record where the
    example's `full` length was longer (backends/context.py)."""
    preds = []
    for e, row, n, total in zip(batch, probs, lengths, full, strict=True):
        trace = [record(name_of(e), total, int(n), cut)] if total > n else None
        preds.append(Prediction(output=labels[int(np.argmax(row))], scores=dict(zip(labels, map(float, row),
                                strict=True)), prompt_tokens=int(n), completion_tokens=0, trace=trace))
    return preds


def encode_rows(tokenizer, examples: list[Example], labels: list[str], max_length: int) -> list[dict]:
    if not examples:  # e.g. a task without a validation split
        return []
    index = {label: i for i, label in enumerate(labels)}
    enc = tokenizer([e.input for e in examples], truncation=True, max_length=max_length, verbose=False)
    return [{"input_ids": ids, "attention_mask": mask, "labels": index[e.target]}
            for ids, mask, e in zip(enc["input_ids"], enc["attention_mask"], examples, strict=True)]


def freeze_body(model):
    """Transfer learning: freeze the pretrained body; the head (and pooler) stay trainable. Returns `model`."""
    body = getattr(model, model.base_model_prefix, None)
    if body is None:
        raise UserError(f"cannot find the body of {type(model).__name__} to freeze")
    for name, p in body.named_parameters():
        p.requires_grad = name.startswith("pooler.")
    return model


def labelled_rows(tokenizer, task: Task, examples: list[Example], max_length: int) -> tuple[list[dict], list[dict]]:
    """(training rows, validation rows) with the gold label of each example."""
    return (encode_rows(tokenizer, examples, task.labels, max_length),
            encode_rows(tokenizer, task.validation, task.labels, max_length))


def fit_classifier(backend, task: Task, ctx: FitContext, cfg: TrainConfig, prepare: Callable | None = None, *,
                   callbacks: list | None = None, rows: RowsHook | None = None, collator=None,
                   trainer_cls=None) -> EncoderPredictor:
    """The one encoder path: training split -> rows -> new classifier -> `prepare` -> train -> save -> predictor.

    `prepare(model) -> model` freezes or schedules parts (it may add to `callbacks`); `rows` replaces the
    gold-labelled rows (distillation's soft labels, which need their own `collator` and `trainer_cls`; each
    row keeps its gold label index under "labels"). Training goes through `_collapse.train_guarded`: a
    classifier answering one label for nearly all of validation is retrained with balanced sampling of the
    rows by gold label, then with a lower learning rate (`ctx.stats['collapse']` says what happened).
    """
    from transformers import DataCollatorWithPadding

    from tunewise.strategies.finetuning._causal import training_split

    seed_everything(ctx.seed)
    tok = backend.tokenizer
    examples = training_split(task, cfg.max_train_examples, ctx.seed)
    # inputs are cut to the strategy's max_length or the encoder's context, whichever is shorter (counted)
    length, ctx.stats["truncated_train_examples"] = count_cut(backend.context_window, tok, task, examples,
                                                              cfg.max_length)
    train_rows, eval_rows = (rows or labelled_rows)(tok, task, examples, length)
    model = backend.classifier(task.labels)
    if prepare is not None:
        model = prepare(model)
    predictor = EncoderPredictor(model, tok, task.labels, cfg.max_length, task=task, context=backend.context_window)
    pristine = list(callbacks or [])

    def answer(check) -> list[str]:
        return [p.output for p in predictor.predict(check)]

    def attempt(attempt_rows: list[dict], c: TrainConfig, cx: FitContext):
        # callbacks are copied per attempt, so a schedule (gradual unfreezing) starts afresh on a retraining
        return train(model, attempt_rows, eval_rows, collator or DataCollatorWithPadding(tok), c, cx, label=cfg.id,
                     callbacks=[copy.copy(cb) for cb in pristine], trainer_cls=trainer_cls, answer=answer)

    train_guarded(  # retrains with class balance / another learning rate when one label takes every answer
        model, train_rows, [r["labels"] for r in train_rows], task.validation, attempt, answer, cfg, ctx)
    model.save_pretrained(ctx.artifact_dir / "model")
    tok.save_pretrained(ctx.artifact_dir / "model")
    return predictor


def load_classifier(backend, task: Task, ctx: FitContext, cfg: TrainConfig) -> Predictor | None:
    from transformers import AutoModelForSequenceClassification

    path: Path = ctx.artifact_dir / "model"
    if not (path / "config.json").is_file():
        return None
    model = AutoModelForSequenceClassification.from_pretrained(path).to(backend.device)
    return EncoderPredictor(model, backend.tokenizer, task.labels, cfg.max_length, task=task,
                            context=backend.context_window)
