"""distill: knowledge distillation from a teacher strategy into a small encoder classifier.

The teacher is any other registered strategy (few-shot prompting on the causal LM by default), fitted
on the training split with its own `fit`. It labels the training inputs with soft labels (its label
probabilities when it has them, else its hard answer); the student (encoder + classification head, as
full-finetune) learns  alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(student, gold label)
(Hinton et al. 2015), both softened by the temperature T. The point is the trade: the student should keep
most of the teacher's accuracy at a fraction of its per-query cost, and `ctx.stats` records both.
"""

from __future__ import annotations

import gc
import math
import time
from typing import Any

from pydantic import Field, ValidationError, field_validator

from tunewise.backends.context import count_truncated
from tunewise.errors import UserError
from tunewise.registry import register
from tunewise.strategies.base import FitContext, Strategy
from tunewise.strategies.finetuning._encoder import encode_rows, fit_classifier, freeze_body, load_classifier
from tunewise.strategies.finetuning._train import TrainConfig


class DistillConfig(TrainConfig):
    teacher: Any = Field("few-shot", validate_default=True, description="The teacher: a strategy name or a "
                         "mapping with 'name' and its options (default few-shot prompting).")
    teacher_model: str = Field("smollm2-135m-instruct", description="Model the teacher runs on (a causal LM "
                               "for prompting/LM teachers): embedded name, hub name, local path or 'fake'.")
    alpha: float = Field(0.5, ge=0, le=1, description="Weight of the distillation (KL) term; the rest goes to "
                         "cross-entropy on the gold labels. 1 = learn from the teacher only.")
    temperature: float = Field(2.0, gt=0, le=50, description="Softens teacher and student distributions so "
                               "the student also learns the teacher's second choices.")
    freeze_body: bool = Field(False, description="Train only the student's head (head-only) instead of all "
                              "its weights.")
    learning_rate: float = Field(1e-4, gt=0, description="Peak learning rate of the student.")
    epochs: float = Field(8.0, gt=0, description="Passes over the training split (early stopping may end "
                          "sooner).")
    batch_size: int = Field(16, gt=0, description="Examples per device step.")
    max_length: int = Field(128, gt=8, description="Longest student input in tokens.")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay.")

    @field_validator("teacher")
    @classmethod
    def _teacher(cls, value: Any):
        from tunewise.registry import strategy_config

        try:
            cfg = strategy_config(value)
        except ValidationError as err:  # the teacher's own options: name them as teacher.<key>
            raise ValueError("; ".join(f"teacher.{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                       for e in err.errors(include_url=False))) from None
        except ValueError as err:
            raise ValueError(str(err).removeprefix("[0]: ")) from None
        if cfg.name == "distill":
            raise ValueError("the teacher cannot itself be 'distill'")
        return cfg


def distill_trainer(alpha: float, temperature: float):
    """A Trainer subclass whose loss mixes KL to the teacher's soft labels with CE on the gold labels."""
    import torch.nn.functional as F
    from transformers import Trainer

    class DistillTrainer(Trainer):
        loss_is_scaled_for_ga = False  # our loss is a per-batch mean: let Trainer divide by accumulation

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            soft = inputs.pop("soft_labels")
            outputs = model(**inputs)  # with `labels` in inputs, outputs.loss is the CE on gold labels
            t = temperature
            student = F.log_softmax(outputs.logits.float() / t, dim=-1)
            # teacher probabilities -> logits (log p) -> softened at the same temperature
            teacher = F.softmax(soft.clamp_min(1e-8).log() / t, dim=-1)
            kl = F.kl_div(student, teacher, reduction="batchmean") * t * t  # T^2 keeps gradient scale
            loss = alpha * kl + (1 - alpha) * outputs.loss
            return (loss, outputs) if return_outputs else loss

    return DistillTrainer


class SoftLabelCollator:
    """Dynamic padding for the token fields, plus the teacher's distributions stacked as a tensor."""

    def __init__(self, tokenizer):
        from transformers import DataCollatorWithPadding

        self.pad = DataCollatorWithPadding(tokenizer)

    def __call__(self, rows: list[dict]) -> dict:
        import torch

        batch = self.pad([{k: v for k, v in r.items() if k != "soft_labels"} for r in rows])
        batch["soft_labels"] = torch.tensor([r["soft_labels"] for r in rows], dtype=torch.float32)
        return batch


def soft_labels(predictions, labels: list[str]) -> list[list[float] | None]:
    """The teacher's distribution per example: its scores, else one-hot on its answer, else None (unusable)."""
    out: list[list[float] | None] = []
    for p in predictions:
        if p.scores and all(label in p.scores for label in labels):
            row = [max(float(p.scores[label]), 0.0) for label in labels]
            total = sum(row)
            out.append([v / total for v in row] if total > 0 and math.isfinite(total) else None)
        elif p.output in labels:
            out.append([float(label == p.output) for label in labels])
        else:
            out.append(None)
    return out


def _timed_predict(predictor, examples) -> tuple[list, float]:
    start = time.perf_counter()
    preds = predictor.predict(examples) if examples else []
    return preds, (time.perf_counter() - start) / max(len(examples), 1)


def _accuracy(preds, examples) -> float | None:
    return sum(p.output == e.target for p, e in zip(preds, examples, strict=True)) / len(examples) \
        if examples else None


@register
class Distill(Strategy):
    name = "distill"
    family = "finetuning"
    backend_kind = "encoder"
    needs = ("can_train",)
    task_kinds = ("classification",)
    summary = "Knowledge distillation: a teacher strategy's soft labels train a small encoder student."
    Config = DistillConfig

    def _teacher_labels(self, backend, task, ctx: FitContext, train_examples):
        """Fit the teacher, label train+validation; return soft labels, its validation predictions, stats.

        The teacher is fitted (or reloaded) through the context, on `teacher_model` from the run's backends."""
        from tunewise.registry import get_strategy

        c = self.config
        teacher_cls = get_strategy(c.teacher.name)
        if task.kind not in teacher_cls.task_kinds:
            raise UserError(f"strategies.{c.id}.teacher: '{teacher_cls.name}' cannot do {task.kind} tasks")
        teacher, teacher_stats = ctx.nested(c.teacher, task, c.teacher_model, "teacher", f"{c.id}.teacher")
        train_preds, _ = _timed_predict(teacher, train_examples)
        val_preds, latency = _timed_predict(teacher, task.validation or train_examples[:32])
        # the teacher's prompts follow task.long_inputs too: inputs it saw cut are counted
        teacher_stats["truncated_inputs"] = count_truncated(p.trace for p in train_preds + val_preds)
        return soft_labels(train_preds, task.labels), soft_labels(val_preds, task.labels), val_preds, latency, \
            teacher_stats

    def fit(self, backend, task, ctx):
        c = self.config
        teacher: dict[str, Any] = {}

        def soft_rows(tok, task, examples, max_length):
            """The student's rows: each training (and validation) input with the teacher's distribution."""
            soft, val_soft, teacher["val"], teacher["latency"], teacher["stats"] = self._teacher_labels(
                backend, task, ctx, examples)
            gc.collect()  # the teacher's model is no longer referenced: free it before the student trains
            teacher["soft"], teacher["examples"] = soft, examples
            train_rows = [dict(r, soft_labels=s) for r, s in zip(encode_rows(tok, examples, task.labels, max_length),
                                                                 soft, strict=True) if s is not None]
            if not train_rows:
                raise UserError(f"strategies.{c.id}: the teacher gave no usable label for any training example; "
                                "pick a teacher that answers with the task's labels")
            teacher["usable"] = len(train_rows)
            eval_rows = [] if not task.validation else [  # val_soft labels the validation split when it exists
                dict(r, soft_labels=s) for r, s in zip(encode_rows(tok, task.validation, task.labels, max_length),
                                                       val_soft, strict=True) if s is not None]
            return train_rows, eval_rows

        student = fit_classifier(backend, task, ctx, c, freeze_body if c.freeze_body else None, rows=soft_rows,
                                 collator=SoftLabelCollator(backend.tokenizer),
                                 trainer_cls=distill_trainer(c.alpha, c.temperature))
        ctx.stats["distillation"] = self._report(task, student, teacher)
        return student

    def _report(self, task, student, teacher: dict[str, Any]) -> dict[str, Any]:
        """Teacher vs student on the validation split (or the first training examples): accuracy, agreement,
        seconds per example and the speed-up."""
        c, soft, teacher_val, teacher_latency = self.config, teacher["soft"], teacher["val"], teacher["latency"]
        probe = task.validation or teacher["examples"][:32]
        student_val, student_latency = _timed_predict(student, probe)
        return {
            "teacher": c.teacher.id, "teacher_model": c.teacher_model,
            "soft_label_examples": sum(s is not None and max(s) < 1.0 for s in soft),
            "unusable_teacher_labels": len(soft) - teacher["usable"],
            "teacher_val_accuracy": _accuracy(teacher_val, task.validation) if task.validation else None,
            "student_val_accuracy": _accuracy(student_val, task.validation) if task.validation else None,
            "agreement": sum(a.output == b.output for a, b in zip(teacher_val, student_val, strict=True))
            / len(probe),
            "teacher_seconds_per_example": teacher_latency, "student_seconds_per_example": student_latency,
            "speedup": teacher_latency / student_latency if student_latency > 0 else None,
            "teacher_stats": teacher["stats"]}

    def load(self, backend, task, ctx):
        return load_classifier(backend, task, ctx, self.config)
