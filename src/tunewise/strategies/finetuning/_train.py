"""Training shared by every fine-tuning strategy, on `transformers.Trainer`.

Trainer brings mixed precision, accumulation, schedulers, checkpointing and `accelerate launch`; we
add: length-grouped batches with dynamic padding, early stopping with the best checkpoint restored,
a rich progress bar, loss curves sent to the store, and a clear stop when the loss turns NaN/inf.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, model_validator
from torch.utils.data import Dataset

from tunewise.data import Example
from tunewise.errors import UserError
from tunewise.strategies.base import FitContext, StrategyConfig


class TrainConfig(StrategyConfig):
    """Hyper-parameters every fine-tuning strategy shares; each strategy sets its own defaults."""

    learning_rate: float = Field(1e-4, gt=0, description="Peak learning rate (linear decay after warmup).")
    epochs: float = Field(3.0, gt=0, description="Passes over the training split (early stopping may end "
                          "sooner).")
    batch_size: int = Field(8, gt=0, description="Examples per device step.")
    gradient_accumulation: int = Field(1, gt=0, description="Steps whose gradients add up before an update.")
    warmup_ratio: float = Field(0.06, ge=0, lt=1, description="Share of steps with linear warmup.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    max_length: int = Field(256, gt=8, description="Longest training sequence in tokens (longer ones are "
                            "cut from the left of the input, never the answer).")
    early_stopping_patience: int | None = Field(
        2, ge=1, description="Stop after this many epochs without a better validation loss and restore the "
        "best epoch; null trains all epochs.")
    max_train_examples: int | None = Field(None, gt=0, description="Train on at most this many examples.")
    bf16: bool | Literal["auto"] = Field(
        "auto", description="bf16 autocast: true, false, or auto (on when the device runs bf16 matrix "
        "products faster than fp32, measured once per process).")

    @model_validator(mode="after")
    def _finite(self) -> TrainConfig:
        if not math.isfinite(self.learning_rate):
            raise ValueError("learning_rate must be a finite number")
        return self


class ListDataset(Dataset):
    def __init__(self, rows: list[dict[str, Any]]):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.rows[i]


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameters."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def _callbacks(ctx: FitContext, label: str, answer: Callable | None = None):
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        task = None

        def on_train_begin(self, args, state, control, **kw):
            if ctx.progress is not None:
                self.task = ctx.progress.add_task(f"train {label}", total=state.max_steps)

        def on_step_end(self, args, state, control, **kw):
            if self.task is not None:
                ctx.progress.update(self.task, completed=state.global_step)

        def on_train_end(self, args, state, control, **kw):
            if self.task is not None:
                ctx.progress.update(self.task, completed=state.max_steps, visible=False)

        def on_epoch_end(self, args, state, control, **kw):
            if ctx.on_epoch is not None and answer is not None:
                ctx.on_epoch(answer)  # the model answers in eval mode; Trainer sets train mode each step

        def on_log(self, args, state, control, logs=None, **kw):
            logs = logs or {}
            for key in ("loss", "eval_loss"):
                value = logs.get(key)
                if value is not None and not math.isfinite(value):
                    raise UserError(
                        f"{label}: training {key.replace('_', ' ')} became {value} at step "
                        f"{state.global_step}; lower learning_rate or enable gradient clipping")
            if "loss" in logs or "eval_loss" in logs:
                ctx.log({"step": state.global_step, "epoch": state.epoch,
                         **{k: logs[k] for k in ("loss", "eval_loss", "learning_rate") if k in logs}})

    return [Progress()]


@cache
def bf16_is_faster(device_type: str) -> bool:
    """Measure, once per process, whether bf16 matrix products beat fp32 on this device."""
    if device_type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device_type != "cpu":
        return False
    a32 = torch.randn(512, 512)
    a16 = a32.to(torch.bfloat16)

    def rate(a) -> float:
        a @ a  # warm-up
        start = time.perf_counter()
        for _ in range(8):
            a @ a
        return time.perf_counter() - start

    return rate(a16) < 0.8 * rate(a32)


def use_bf16(cfg: TrainConfig, device: torch.device) -> bool:
    return bf16_is_faster(device.type) if cfg.bf16 == "auto" else bool(cfg.bf16)


def train(model, train_rows: list[dict], eval_rows: list[dict], collator, cfg: TrainConfig,
          ctx: FitContext, label: str, callbacks: list | None = None, trainer_cls=None,
          answer: Callable[[Sequence[Example]], list[str]] | None = None) -> dict[str, Any]:
    """Run Trainer and return what the cost model needs; the model ends with its best weights.

    `callbacks` are extra TrainerCallbacks (e.g. an unfreezing schedule); `trainer_cls` a Trainer
    subclass for a custom loss (e.g. distillation); `answer(examples) -> outputs` predicts with the model
    as it is, for `ctx.on_epoch` after each epoch.
    """
    from transformers import EarlyStoppingCallback, Trainer, TrainingArguments

    if ctx.on_train_start is not None:
        ctx.on_train_start(model)
    work = _shared(ctx.artifact_dir / "checkpoints")  # under DDP every process reads the main one's checkpoints
    use_eval = bool(eval_rows) and cfg.early_stopping_patience is not None
    device = next(model.parameters()).device
    args = TrainingArguments(
        output_dir=str(work), learning_rate=cfg.learning_rate, num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size, per_device_eval_batch_size=max(cfg.batch_size, 16),
        gradient_accumulation_steps=cfg.gradient_accumulation, warmup_steps=cfg.warmup_ratio,
        weight_decay=cfg.weight_decay, lr_scheduler_type="linear", max_grad_norm=1.0,
        eval_strategy="epoch" if use_eval else "no", save_strategy="epoch" if use_eval else "no",
        load_best_model_at_end=use_eval, metric_for_best_model="eval_loss", greater_is_better=False,
        save_total_limit=1 if use_eval else None, save_only_model=True,
        train_sampling_strategy="group_by_length", logging_steps=max(1, len(train_rows) // cfg.batch_size // 8),
        report_to="none", disable_tqdm=True, seed=ctx.seed, data_seed=ctx.seed,
        use_cpu=device.type == "cpu", bf16=use_bf16(cfg, device), dataloader_num_workers=0,
        remove_unused_columns=False,
        ddp_find_unused_parameters=False)  # DDP: every trainable parameter is used in forward (no extra graph pass)
    callbacks = _callbacks(ctx, label, answer) + list(callbacks or [])
    if use_eval:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping_patience))
    trainer = (trainer_cls or Trainer)(model=model, args=args, train_dataset=ListDataset(train_rows),
                      eval_dataset=ListDataset(eval_rows) if use_eval else None,
                      data_collator=collator, callbacks=callbacks)
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # our progress bar and store replace its printed dicts
    result = trainer.train()
    # accelerate wraps forward() in bf16 autocast for mixed precision; undo it so predictions after
    # training run exactly as they will after reloading the saved artifact.
    trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)
    trainer.accelerator.wait_for_everyone()  # DDP: every process has its best weights before the folder goes
    if trainer.accelerator.is_main_process:
        shutil.rmtree(work, ignore_errors=True)  # the best weights are in memory; the artifact is saved next
    _dump_checksum(model, trainer)
    tokens_per_epoch = sum(len(r["input_ids"]) for r in train_rows)
    trainable, total = count_parameters(model)
    best = trainer.state.best_metric
    ctx.stats.update(
        train_examples=len(train_rows), train_tokens=int(tokens_per_epoch * (trainer.state.epoch or 0)),
        epochs_run=round(trainer.state.epoch or 0, 2), train_steps=trainer.state.global_step,
        trainable_params=trainable, total_params=total, final_train_loss=result.training_loss,
        best_eval_loss=best, bf16=bool(args.bf16))
    model.eval()
    return ctx.stats


def _shared(path: Path) -> Path:
    """The main process's `path` in every process of a multi-process launch (DDP); `path` otherwise."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return path
    from accelerate.utils import broadcast_object_list

    return Path(broadcast_object_list([str(path)], from_process=0)[0])


CHECKSUM_ENV = "TUNEWISE_PARAM_CHECKSUM_DIR"  # tests: each process writes its trained parameters' digest here


def _dump_checksum(model, trainer) -> None:
    """With CHECKSUM_ENV set: rank-<i>.json in that folder holding the SHA-256 of the trainable parameters after
    training, the process count and the optimizer steps (how a DDP test sees that gradients were averaged)."""
    folder = os.environ.get(CHECKSUM_ENV)
    if not folder:
        return
    digest = hashlib.sha256()
    for name, p in sorted(model.named_parameters()):
        if p.requires_grad:
            digest.update(name.encode() + p.detach().float().cpu().numpy().tobytes())
    rank = trainer.accelerator.process_index
    Path(folder, f"rank-{rank}.json").write_text(json.dumps({
        "rank": rank, "processes": trainer.accelerator.num_processes, "steps": trainer.state.global_step,
        "sha256": digest.hexdigest()}), encoding="utf-8")


def seed_everything(seed: int) -> None:
    from transformers import set_seed

    set_seed(seed)
    torch.use_deterministic_algorithms(False)
