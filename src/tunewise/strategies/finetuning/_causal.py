"""Causal-LM fine-tuning helpers: instruction-formatted examples with the loss on the answer only."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from tunewise.data import Example, Task
from tunewise.data.splits import cap
from tunewise.strategies.finetuning._train import TrainConfig
from tunewise.strategies.prompting._common import system_prompt

IGNORE = -100


class CausalTrainConfig(TrainConfig):
    """Options of every strategy that fine-tunes a causal LM."""

    learning_rate: float = Field(1e-3, gt=0, description="Peak learning rate.")
    epochs: float = Field(2.0, gt=0, description="Passes over the training split.")
    # Read by the run API, which measures forgetting after fit (timed apart from training).
    forgetting: bool = Field(True, description="After training, measure catastrophic forgetting: perplexity "
                             "of the base and the fine-tuned model on a general English reference text.")
    forgetting_max_tokens: int = Field(2048, ge=64, le=65536, description="Reference-text tokens scored for "
                                       "forgetting (more is steadier, slower).")
    forgetting_task: str | None = Field(None, description="A second task (file, 'demo' or 'gsm8k') whose "
                                        "zero-shot accuracy is compared before vs after fine-tuning.")
    forgetting_task_examples: int = Field(50, gt=0, description="Test examples of forgetting_task scored.")

    @field_validator("forgetting_task")
    @classmethod
    def _task_exists(cls, value: str | None) -> str | None:
        # checked now, not after minutes of training; load_config has already made a path next to the
        # config file absolute, so a relative path left here is relative to the working folder
        from tunewise.data.builtin import BUILTIN

        if value and value not in BUILTIN and not value.startswith("hf:") and not Path(value).expanduser().is_file():
            raise ValueError(f"file not found: {value} (give a data file, 'demo' or 'gsm8k')")
        return value


def shared_messages(task: Task) -> list[dict[str, str]]:
    """The prompt a fine-tuned model sees: the instruction without the label list (it learns labels),
    which keeps training sequences and every later query shorter."""
    return [{"role": "system", "content": system_prompt(task, list_labels=False)}]


def encode_examples(backend, task: Task, examples: list[Example], max_length: int,
                    shared: list[dict[str, str]] | None = None) -> list[dict]:
    """input_ids = prompt + answer; labels mask the prompt with -100 so only the answer is learned.

    `shared` replaces the default system message (e.g. none at all for plain instruction tuning)."""
    shared = shared_messages(task) if shared is None else shared
    eot = backend.end_of_turn()
    rows = []
    for ex in examples:
        prompt = backend.render(shared + [{"role": "user", "content": ex.input}], add_generation_prompt=True)
        p_ids = backend.encode(prompt)
        a_ids = backend.encode(backend.answer_prefix() + ex.target + eot)
        keep = max(max_length - len(a_ids), 1)
        p_ids = p_ids[-keep:]  # cut the input from the left, never the answer
        ids = p_ids + a_ids
        rows.append({"input_ids": ids, "attention_mask": [1] * len(ids),
                     "labels": [IGNORE] * len(p_ids) + a_ids})
    return rows


def training_split(task: Task, max_examples: int | None, seed: int) -> list[Example]:
    return cap(task.train, max_examples, task.kind, seed) if max_examples else task.train


def collator(backend):
    from transformers import DataCollatorForSeq2Seq

    backend.tokenizer.padding_side = "right"
    return DataCollatorForSeq2Seq(backend.tokenizer, padding=True, label_pad_token_id=IGNORE)
