"""Experiment configuration: pydantic models with unknown keys rejected and errors that name the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tunewise.errors import UserError


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TaskConfig(Strict):
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
    instruction: str | None = Field(None, description="What the model should do, in plain words.")
    test_size: float = Field(0.3, gt=0, lt=1, description="Share of rows held out for test when the "
                             "data has no splits (stratified by label, seeded).")
    validation_size: float = Field(0.1, ge=0, lt=1, description="Share of rows for validation.")
    max_train_examples: int | None = Field(None, gt=0, description="Cap on training examples (seeded "
                                           "stratified subsample).")
    max_test_examples: int | None = Field(None, gt=0, description="Cap on test examples (same as --limit).")

    @model_validator(mode="after")
    def _sizes(self) -> TaskConfig:
        if self.test_size + self.validation_size >= 1:
            raise ValueError("task.test_size + task.validation_size must be below 1")
        return self


class ExperimentConfig(Strict):
    task: TaskConfig = Field(default_factory=TaskConfig, description="The data and what to do with it.")
    model: str = Field("smollm2-135m-instruct", description="Causal LM for prompting and LM fine-tuning: an "
                       "embedded name, a Hugging Face model name or a local path.")
    encoder: str = Field("minilm-l6", description="Encoder for classification-head strategies "
                         "(full-finetune, head-only).")
    strategies: list[Any] = Field(
        default_factory=lambda: ["zero-shot", "few-shot", "lora", "full-finetune", "head-only"],
        description="Strategies to compare: names, or mappings with 'name' and the strategy's options.")
    seed: int = Field(0, description="Seed for splits, sampling and training.")
    device: Literal["auto", "cpu", "cuda", "mps"] = Field("auto", description="Where models run.")
    output_dir: str = Field("runs", description="Folder in which each run gets its own subfolder.")
    eval_batch_size: int = Field(16, gt=0, description="Examples per batch when scoring.")

    @field_validator("strategies")
    @classmethod
    def _strategies(cls, value: list[Any]) -> list[Any]:
        from tunewise.registry import strategy_config

        if not value:
            raise ValueError("list at least one strategy (see `tunewise strategies`)")
        configs = [strategy_config(item, index) for index, item in enumerate(value)]
        ids = [c.id for c in configs]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"strategy ids must be unique; give repeated ones an 'id' ({', '.join(dupes)})")
        return configs


def format_validation_error(err: ValidationError, source: str) -> str:
    """One line per problem, each naming the key path, joined with '; '."""
    parts = []
    for e in err.errors():
        loc = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in e["loc"]).replace(".[", "[")
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; `tunewise strategies` lists strategy options)"
        parts.append(f"{loc}: {msg}" if loc else msg)
    return f"{source}: " + "; ".join(parts)


def parse_config(data: dict[str, Any], source: str = "config") -> ExperimentConfig:
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as err:
        raise UserError(format_validation_error(err, source)) from None


def load_config(path: str | Path) -> ExperimentConfig:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UserError(f"{path}:{where}: not valid YAML ({getattr(err, 'problem', err)})") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not valid UTF-8; save it as UTF-8") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of keys (task, model, strategies, ...)")
    _resolve_relative_paths(data, path.parent)
    return parse_config(data, str(path))


def _resolve_relative_paths(data: dict[str, Any], base: Path) -> None:
    """Data paths in a config file are relative to the file, as users expect."""
    task = data.get("task")
    if not isinstance(task, dict):
        return
    for key in ("source", "train", "validation", "test"):
        value = task.get(key)
        if isinstance(value, str) and (base / value).exists() and not Path(value).is_absolute():
            task[key] = str((base / value).resolve())


def dump_config(config: ExperimentConfig) -> str:
    return yaml.safe_dump(config_to_dict(config), sort_keys=False)


def config_to_dict(config: ExperimentConfig) -> dict[str, Any]:
    data = config.model_dump(mode="json")
    data["strategies"] = [s.model_dump(mode="json") for s in config.strategies]
    return data
