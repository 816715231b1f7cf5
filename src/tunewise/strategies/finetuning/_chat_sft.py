"""Supervised fine-tuning on chat conversations with LoRA: what a local fine-tuning *job* runs.

`tunewise serve`'s /v1/fine_tuning/jobs and `openai-finetune` on a local model train here. Each
conversation is rendered with the model's chat template; the loss falls on the assistant turns only
(those without `weight: 0`), exactly as `_causal.encode_examples` does for one turn, so the trained
adapter answers the prompts it is later scored on.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunewise.strategies.base import FitContext
from tunewise.strategies.finetuning._causal import IGNORE
from tunewise.strategies.finetuning._train import seed_everything, train


def encode_conversation(backend, messages: list[dict[str, Any]], max_length: int) -> dict | None:
    """input_ids and labels for one conversation (loss on the assistant turns); None when nothing to learn."""
    messages = [{"role": "system" if m["role"] == "developer" else m["role"], "content": m.get("content") or "",
                 "weight": m.get("weight", 1)} for m in messages]
    turns = [i for i, m in enumerate(messages) if m["role"] == "assistant" and m["weight"] != 0 and i > 0]
    if not turns:
        return None
    ids: list[int] = []
    labels: list[int] = []
    done = ""  # the text encoded so far
    for i in turns:
        head = backend.render(_plain(messages[:i]), add_generation_prompt=True)
        if not head.startswith(done):  # a template that rewrites earlier turns: learn the last turn only
            ids, labels = [], []
            head, done = backend.render(_plain(messages[:turns[-1]]), add_generation_prompt=True), ""
            i = turns[-1]
        context = backend.encode(head[len(done):])
        answer_text = backend.answer_prefix() + messages[i]["content"] + backend.end_of_turn()
        answer = backend.encode(answer_text)
        ids += context + answer
        labels += [IGNORE] * len(context) + answer
        done = head + answer_text
        if i == turns[-1]:
            break
    ids, labels = ids[-max_length:], labels[-max_length:]  # cut from the left, never the last answer
    if all(t == IGNORE for t in labels):
        return None
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}


def _plain(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{"role": m["role"], "content": m["content"]} for m in messages]


class _EpochEnd:
    """A TrainerCallback that hands the model to `on_epoch(epoch, step, model)` after each epoch (checkpoints)."""

    def __new__(cls, on_epoch: Callable[[int, int, Any], None]):
        from transformers import TrainerCallback

        class EpochEnd(TrainerCallback):
            def on_epoch_end(self, args, state, control, model=None, **kw):
                on_epoch(round(state.epoch or 0), state.global_step, model)

        return EpochEnd()


class _Stop:
    """A TrainerCallback that ends training when `should_stop()` turns true (job cancelled)."""

    def __new__(cls, should_stop: Callable[[], bool]):
        from transformers import TrainerCallback

        class Stop(TrainerCallback):
            def on_step_end(self, args, state, control, **kw):
                if should_stop():
                    control.should_training_stop = True

        return Stop()


def train_lora_on_chats(backend, conversations: list[list[dict]], validation: list[list[dict]],
                        hyper: dict[str, Any], out_dir: Path, seed: int,
                        log: Callable[[dict[str, Any]], None] = lambda r: None,
                        should_stop: Callable[[], bool] = lambda: False,
                        on_train_start: Callable[[Any], None] | None = None,
                        on_epoch: Callable[[int, int, Any], None] | None = None) -> tuple[Any, dict[str, Any]]:
    """Train a LoRA adapter (lora's defaults) on the conversations, save it to out_dir/adapter, and return
    the trained PeftModel and the training stats (train_tokens, trainable_params, ...).

    `hyper`: options of the lora strategy (epochs, batch_size, learning_rate, warmup_ratio, rank, ...).
    `on_epoch(epoch, step, model)` runs after each epoch (the jobs service saves checkpoints there)."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model
    from transformers import DataCollatorForSeq2Seq

    from tunewise.strategies.finetuning.lora import LoraConfig

    cfg = LoraConfig(**{"max_length": 512, **hyper, "name": "lora", "id": out_dir.name,
                        "early_stopping_patience": None, "forgetting": False})
    length = min(cfg.max_length, backend.context_window or cfg.max_length)  # never past the model's context
    rows = [r for r in (encode_conversation(backend, c, length) for c in conversations) if r]
    eval_rows = [r for r in (encode_conversation(backend, c, length) for c in validation) if r]
    if not rows:
        raise ValueError("no example has an assistant turn to learn")
    seed_everything(seed)
    model = get_peft_model(backend.fresh_model(), PeftLoraConfig(
        task_type="CAUSAL_LM", r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
        target_modules=cfg.target_modules))
    # A private tokenizer copy: the collator pads on the right, while a server may be generating with the
    # shared tokenizer (left padding) in another thread at the same time.
    tokenizer = copy.deepcopy(backend.tokenizer)
    collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE)
    collator.tokenizer.padding_side = "right"
    ctx = FitContext(artifact_dir=out_dir, seed=seed, log=log, on_train_start=on_train_start)
    with _TRAIN_LOCK:  # Trainer and the global seeds are not meant for two trainings at once
        callbacks = [_Stop(should_stop)] + ([_EpochEnd(on_epoch)] if on_epoch else [])
        stats = train(model, rows, [], collator, cfg, ctx, label=out_dir.name, callbacks=callbacks)
    if eval_rows:
        stats["valid_loss"] = _mean_loss(model, eval_rows, collator)
    if not should_stop():
        model.save_pretrained(out_dir / "adapter")
    return model, stats


_TRAIN_LOCK = threading.Lock()


def _mean_loss(model, rows: list[dict], collator) -> float:
    import torch

    device = next(model.parameters()).device
    losses = []
    with torch.no_grad():
        for start in range(0, len(rows), 8):
            batch = {k: v.to(device) for k, v in collator(rows[start:start + 8]).items()}
            losses.append(float(model(**batch).loss))
    return sum(losses) / len(losses)
