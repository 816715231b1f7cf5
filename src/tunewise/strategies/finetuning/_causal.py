"""Causal-LM fine-tuning helpers: instruction-formatted examples with the loss on the answer only."""

from __future__ import annotations

from pydantic import Field

from tunewise.data import Example, Task
from tunewise.data.splits import cap
from tunewise.strategies.prompting._common import system_prompt

from tunewise.strategies.finetuning._train import TrainConfig

IGNORE = -100


class CausalTrainConfig(TrainConfig):
    """Options of every strategy that fine-tunes a causal LM."""

    learning_rate: float = Field(1e-3, gt=0, description="Peak learning rate.")
    epochs: float = Field(2.0, gt=0, description="Passes over the training split.")


def shared_messages(task: Task) -> list[dict[str, str]]:
    """The prompt a fine-tuned model sees: the instruction without the label list (it learns labels),
    which keeps training sequences and every later query shorter."""
    return [{"role": "system", "content": system_prompt(task, list_labels=False)}]


def encode_examples(backend, task: Task, examples: list[Example], max_length: int) -> list[dict]:
    """input_ids = prompt + answer; labels mask the prompt with -100 so only the answer is learned."""
    shared = shared_messages(task)
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
