"""The `task:` section of an experiment: where the examples come from and how they are split."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from tunewise.data.delimited import delimiter_char
from tunewise.foundation import Strict


class TaskConfig(Strict):
    # `input_column: 0` for a file without header names its first column "0"
    model_config = ConfigDict(coerce_numbers_to_str=True)

    source: str = Field(
        "demo",
        description="Where the examples come from: 'demo' (built-in support intents), 'gsm8k' (embedded "
        "GSM8K test set), a CSV/TSV/JSONL/Parquet file, or 'hf:NAME[:CONFIG]' for a Hugging Face dataset.",
    )
    name: str | None = Field(None, description="Display name of the task (defaults to the source's name).")
    kind: Literal["classification", "generation"] | None = Field(
        None, description="classification (closed label set) or generation (free text with references).")
    input_column: str | None = Field(None, description="Column holding the model input text.")
    target_column: str | None = Field(None, description="Column holding the label or reference answer.")
    split_column: str | None = Field(
        None, description="Column whose values (train/validation/test) assign rows to splits.")
    train: str | None = Field(None, description="Separate file (or hf split name) for training examples.")
    validation: str | None = Field(None, description="Separate file (or hf split name) for validation.")
    test: str | None = Field(None, description="Separate file (or hf split name) for the held-out test set.")
    has_header: bool = Field(True, description="CSV/TSV files: first line holds column names. When false, "
                             "columns are named 0, 1, 2, ...")
    delimiter: str | None = Field(None, description="CSV/TSV files: the field delimiter, one of comma (,), "
                                  "semicolon (;), tab, pipe (|). Default: detected from the file (quote-aware), "
                                  "the suffix's (.csv comma, .tsv tab) on a tie.")
    instruction: str | None = Field(None, description="What the model should do, in plain words.")
    label_names: list[str] | dict[str, str] | None = Field(
        None, description="Classification: what the model is shown for each stored label, as a list (one name "
        "per distinct label, in natural sort order: 0, 1, 2, ..., 10) or a mapping {label: name}. Results keep "
        "the stored label. Default: a Hugging Face ClassLabel's names, else the labels themselves.")
    input_name: str | None = Field(
        None, min_length=1, max_length=40, pattern=r"^[^\n:]+$",
        description="What plain-completion prompts call the input, e.g. Review (as DSPy signature fields and "
        "lm-evaluation-harness templates name it: 'Review: ...'). Default: Input.")
    target_name: str | None = Field(
        None, min_length=1, max_length=40, pattern=r"^[^\n:]+$",
        description="What plain-completion prompts call the answer, e.g. Sentiment ('Sentiment (negative or "
        "positive):'). Default: Answer.")
    test_size: float = Field(0.3, gt=0, lt=1, description="Share of rows held out for test when the "
                             "data has no splits (stratified by label, seeded).")
    validation_size: float = Field(0.1, ge=0, lt=1, description="Share of rows for validation.")
    max_train_examples: int | None = Field(None, gt=0, description="Cap on training examples (seeded "
                                           "stratified subsample).")
    max_test_examples: int | None = Field(None, gt=0, description="Cap on test examples (same as --limit).")
    max_input_tokens: int | None = Field(None, gt=0, description="Most tokens of one prompt (instruction, "
                                         "demonstrations and the example; the answer's room comes on top). "
                                         "Default: what the model's context allows.")
    long_inputs: Literal["truncate", "refuse"] = Field(
        "truncate", description="An example whose prompt does not fit the model's context (or "
        "max_input_tokens): truncate cuts the end of the example's own text, keeping the instruction, "
        "demonstrations and answer, and counts it in the results; refuse stops with an error naming it.")

    @field_validator("delimiter")
    @classmethod
    def _delimiter(cls, value: str | None) -> str | None:
        return None if value is None else delimiter_char(value)

    @model_validator(mode="after")
    def _sizes(self) -> TaskConfig:
        if self.test_size + self.validation_size >= 1:
            raise ValueError("task.test_size + task.validation_size must be below 1")
        return self
