"""Causal-LM fine-tuning helpers: instruction-formatted examples with the loss on the answer only."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from tunewise.backends.context import Limit, fit_text, limit_for, name_of
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
                    shared: list[dict[str, str]] | None = None, stats: dict | None = None) -> list[dict]:
    """input_ids = prompt + answer; labels mask the prompt with -100 so only the answer is learned.

    `shared` replaces the default system message (e.g. none at all for plain instruction tuning). A sequence
    longer than max_length (or the model's context) loses the end of the example's input, never the
    instruction nor the answer (an answer that would leave no room keeps half the sequence); over the context
    `task.long_inputs: refuse` stops instead (backends/context.py). `stats` gets truncated_train_examples."""
    shared = shared_messages(task) if shared is None else shared
    eot = backend.end_of_turn()
    context = backend.context_window
    length = min(max_length, context) if context else max_length
    rows, cut = [], 0
    for ex in examples:
        def measure(text: str) -> int:
            return backend.count_tokens(backend.render(shared + [{"role": "user", "content": text}],
                                                       add_generation_prompt=True))

        a_ids = backend.encode(backend.answer_prefix() + ex.target + eot)
        if length - len(a_ids) <= measure(""):  # the answer leaves no room for the input: it keeps half
            a_ids = a_ids[:max(length // 2, 1)]
        policy = limit_for(context, task, len(a_ids))
        if policy.policy == "refuse":
            fit_text(backend, policy, name_of(ex), ex.input, measure)  # raises when over the context or the cap
        room, why = length - len(a_ids), f"the strategy's max_length = {max_length}"
        if policy.tokens is not None and policy.tokens < room:
            room, why = policy.tokens, policy.why
        text, step = fit_text(backend, Limit(room, "truncate", why), name_of(ex), ex.input, measure)
        cut += step is not None
        p_ids = backend.encode(backend.render(shared + [{"role": "user", "content": text}],
                                              add_generation_prompt=True))
        ids = p_ids + a_ids
        rows.append({"input_ids": ids, "attention_mask": [1] * len(ids),
                     "labels": [IGNORE] * len(p_ids) + a_ids})
    if stats is not None:
        stats["truncated_train_examples"] = stats.get("truncated_train_examples", 0) + cut
    return rows


def training_split(task: Task, max_examples: int | None, seed: int) -> list[Example]:
    return cap(task.train, max_examples, task.kind, seed) if max_examples else task.train


def collator(backend):
    from transformers import DataCollatorForSeq2Seq

    backend.tokenizer.padding_side = "right"
    return DataCollatorForSeq2Seq(backend.tokenizer, padding=True, label_pad_token_id=IGNORE)
