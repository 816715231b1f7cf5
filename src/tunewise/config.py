"""Experiment configuration: pydantic models with unknown keys rejected and errors that name the key.

The sections live where their layer needs them: `task:` in `tunewise.data.config` (data reads it),
`prices:` in `tunewise.prices` (the report and `openai-finetune` price with it), the `Strict` base in
`tunewise.foundation`; this module assembles the whole experiment and validates its strategies through
the registry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from tunewise.data.config import TaskConfig
from tunewise.foundation import Strict, UserError, unknown_key
from tunewise.foundation import format_validation_error as _format
from tunewise.prices import ApiPrice, PricesConfig
from tunewise.strategies.base import SelectionConfig

__all__ = ["ApiPrice", "ConstraintsConfig", "ExecutorConfig", "ExperimentConfig", "PricesConfig", "ResourcesConfig",
           "Strict", "TaskConfig", "config_to_dict", "dump_config", "format_validation_error", "load_config",
           "parse_config", "resolve_relative_paths"]


class ConstraintsConfig(Strict):
    min_quality: float | None = Field(None, ge=0, le=1, description="Lowest acceptable value of the task's "
                                      "primary metric (see `metric`), as a share: 0.85 = 85%.")
    max_latency_ms: float | None = Field(None, gt=0, description="Highest acceptable latency per query in "
                                         "milliseconds (as measured in this run's batches).")
    monthly_queries: int = Field(10_000, ge=0, description="Queries you expect to serve per month; costs "
                                 "in the recommendation are given at this volume.")
    budget_per_month: float | None = Field(None, ge=0, description="Most you will spend per month in USD, "
                                           "one-off costs spread over `horizon_months` included.")
    horizon_months: int = Field(12, gt=0, description="Months over which one-off (training) costs are "
                                "spread when comparing monthly costs.")
    needs_new_knowledge: bool = Field(False, description="The task needs facts the model does not know "
                                      "(products, policies); favours putting them in the prompt.")
    task_changes_often: bool = Field(False, description="Labels or instructions change often; favours "
                                     "prompting, which changes at once, over retraining.")


class ResourcesConfig(Strict):
    """What one cell reserves from Ray's scheduler (`--executor ray`); unset fields take the family's default."""

    num_cpus: float | None = Field(None, gt=0, description="CPU cores one cell reserves (default 1); the worker "
                                   "runs torch on that many threads.")
    num_gpus: float | None = Field(None, ge=0, description="GPUs one cell reserves (default: 1 for fine-tuning "
                                   "when the Ray cluster has GPUs and `device` is not cpu, else 0); 0.5 shares one.")
    memory_mb: float | None = Field(None, gt=0, description="Memory in MiB one cell reserves (default: none "
                                    "reserved); Ray schedules no more cells on a node than its memory holds.")


class ExecutorConfig(Strict):
    kind: Literal["local", "ray"] = Field("local", description="Where cells run: local (one after another in "
                                          "this process) or ray (each cell a Ray task; `pip install "
                                          "'tunewise[ray]'`). `--executor` overrides it.")
    address: str | None = Field(None, description="Ray cluster to join: 'auto' (the one `ray start --head` "
                                "started on this machine), 'ray://HOST:10001' or HOST:6379; unset: start a "
                                "local Ray instance for this run. `--address` overrides it.")
    max_retries: int = Field(2, ge=0, le=10, description="Times Ray re-runs a cell whose worker process died "
                             "(killed, out of memory) before the cell counts as failed.")
    resources: dict[str, ResourcesConfig] = Field(default_factory=dict, description="Per strategy id, or per "
                                                  "family ('prompting', 'finetuning'): what one cell reserves "
                                                  "on Ray; a strategy id wins over its family.")


class ExperimentConfig(Strict):
    task: TaskConfig = Field(default_factory=TaskConfig, description="The data and what to do with it.")
    model: str = Field("smollm2-135m-instruct", description="Causal LM for prompting and LM fine-tuning: an "
                       "embedded name, a Hugging Face model name or a local path.")
    encoder: str = Field("minilm-l6", description="Encoder for classification-head strategies "
                         "(full-finetune, head-only).")
    strategies: list[Any] = Field(  # validate_default: the default names become configs too
        default_factory=lambda: ["zero-shot", "few-shot", "lora", "full-finetune", "head-only"],
        validate_default=True,
        description="Strategies to compare: names, or mappings with 'name' and the strategy's options.")
    metric: Literal["auto", "accuracy", "macro_f1", "balanced_accuracy", "mcc", "exact_match", "token_f1"] = Field(
        "auto", description="The primary metric that ranks strategies and decides the verdict. auto: macro-F1 "
        "when one class holds over 60% of the test labels (accuracy would reward always answering it), else "
        "accuracy; exact_match for generation. accuracy, macro_f1, balanced_accuracy and mcc apply to "
        "classification, exact_match and token_f1 to generation.")
    seed: int = Field(0, description="Seed for splits, sampling and training.")
    seeds: int = Field(1, ge=1, le=100, description="Runs of every strategy, at seeds seed, seed+1, ...; the test "
                       "split stays the same. With 2 or more, the leaderboard, report and verdict use the "
                       "spread across them (mean ± std).")
    device: Literal["auto", "cpu", "cuda", "mps"] = Field("auto", description="Where models run.")
    output_dir: str = Field("runs", description="Folder in which each run gets its own subfolder.")
    eval_batch_size: int = Field(16, gt=0, description="Examples per batch when scoring.")
    pilot: float | None = Field(None, gt=0, le=1, description="Pilot instead of full-size fine-tuning: train each "
                                "fine-tuning strategy at 4 sizes up to this share of the training split, fit its "
                                "learning curve and predict its score at the full size (prompting runs once).")
    prices: PricesConfig = Field(default_factory=PricesConfig, description="Prices that turn measured "
                                 "time and tokens into money in the report (dated defaults; override them).")
    constraints: ConstraintsConfig = Field(default_factory=ConstraintsConfig, description="What the "
                                           "recommendation must respect: quality, latency, volume, budget.")
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig, description="Where the cells run (local "
                                     "or Ray) and what each reserves there.")
    selection: SelectionConfig = Field(default_factory=SelectionConfig, description="Each strategy's settings "
                                       "chosen on the validation split within the same budget for both families "
                                       "(prompt format, calibration, wording, k, demonstrations; learning rate, "
                                       "epochs).")

    @field_validator("strategies")
    @classmethod
    def _strategies(cls, value: list[Any]) -> list[Any]:
        from tunewise.registry import strategy_config

        if not value:
            raise ValueError("list at least one strategy (see `tunewise strategies`)")
        configs, problems = [], []
        for index, item in enumerate(value):
            try:
                configs.append(strategy_config(item, index))
            except ValidationError as err:  # the strategy's own options: report as strategies[i].key
                problems += [_strategy_problem(e, index, item) for e in err.errors(include_url=False)]
            except ValueError as err:  # no name / unknown name; the message starts with "[index]: "
                loc = (index, "name") if isinstance(item, dict) and "name" in item else (index,)
                problems.append(_problem(str(err).removeprefix(f"[{index}]: "), loc, item))
        if not problems:
            first: dict[str, int] = {}
            for index, c in enumerate(configs):
                if c.id in first:
                    problems.append(_problem(
                        f"id '{c.id}' is already used by strategies[{first[c.id]}]; give one of them a "
                        "different 'id'", (index, "id"), c.id))
                first.setdefault(c.id, index)
        if problems:
            raise ValidationError.from_exception_data("strategies", problems)
        return configs


    @model_validator(mode="after")
    def _resource_keys(self) -> ExperimentConfig:
        known = [s.id for s in self.strategies] + ["prompting", "finetuning"]
        for key in self.executor.resources:
            if key not in known:
                raise ValueError(f"executor.resources.{key}: not a strategy id of this config nor a family "
                                 f"(known: {', '.join(known)})")
        return self


def _problem(message: str, loc: tuple, value: Any) -> dict[str, Any]:
    return {"type": PydanticCustomError("strategy", "{message}", {"message": message}), "loc": loc,
            "input": value}


def _strategy_problem(e: dict[str, Any], index: int, item: Any) -> dict[str, Any]:
    loc = (index, *e["loc"])
    if e["type"] == "extra_forbidden" and e["loc"]:
        from tunewise.registry import get_strategy

        known = [k for k in get_strategy(str(item["name"])).Config.model_fields if k != "name"]
        return _problem(unknown_key(str(e["loc"][-1]), known, "`tunewise strategies` lists the options"),
                        loc, e["input"])
    return {"type": e["type"], "loc": loc, "input": e["input"], **({"ctx": e["ctx"]} if "ctx" in e else {})}


def format_validation_error(err: ValidationError, source: str) -> str:
    """One line per problem, each naming the key path, joined with '; ' (unknown keys get 'did you mean')."""
    sections = {"task": TaskConfig, "prices": PricesConfig, "constraints": ConstraintsConfig,
                "executor": ExecutorConfig, "selection": SelectionConfig}

    def known(loc: tuple) -> list[str]:
        if len(loc) > 2:
            return []
        model = sections.get(str(loc[0]), ExperimentConfig) if len(loc) == 2 else ExperimentConfig
        return list(model.model_fields)

    return _format(err, source, known)


def parse_config(data: dict[str, Any], source: str = "config") -> ExperimentConfig:
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as err:
        raise UserError(format_validation_error(err, source)) from None


def load_config(path: str | Path) -> ExperimentConfig:
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a folder; give the experiment's YAML file")
    if not path.is_file():
        raise UserError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        where = f" line {mark.line + 1}:" if mark else ""
        problem = getattr(err, "problem", None) or (str(err).splitlines() or [type(err).__name__])[0]
        raise UserError(f"{path}:{where} not valid YAML ({problem}); fix the syntax there") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not valid UTF-8; save it as UTF-8") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of keys (task, model, strategies, ...)")
    resolve_relative_paths(data, path.parent)
    return parse_config(data, str(path))


def resolve_relative_paths(data: dict[str, Any], base: Path) -> None:
    """Data paths in a config file are relative to the file, as users expect (also when the file is
    missing, so that the error names where tunewise looked). Built-in sources ('demo', 'gsm8k'),
    'hf:' names and the split names of an 'hf:' source are not paths."""
    from tunewise.data.builtin import BUILTIN

    strategies = data.get("strategies")
    for strategy in strategies if isinstance(strategies, list) else []:  # another type: validation names it
        if isinstance(strategy, dict):
            _resolve_strategy_paths(strategy, base)
    task = data.get("task")
    if not isinstance(task, dict):
        return
    source = task.get("source")
    hub = isinstance(source, str) and source.startswith("hf:")
    for key in ("source", "train", "validation", "test"):
        value = task.get(key)
        if not isinstance(value, str) or not value or value.startswith("hf:"):
            continue
        if (key == "source" and value in BUILTIN) or (key != "source" and hub):
            continue
        path = Path(value).expanduser()
        task[key] = str(path if path.is_absolute() else (base / path).resolve())


# Strategy options whose value may name a file: templates (in chain steps too) and a second task.
_FILE_SUFFIXES = (".j2", ".jinja", ".jinja2", ".txt", ".csv", ".tsv", ".jsonl", ".json", ".parquet")


def _resolve_strategy_paths(node: Any, base: Path) -> Any:
    """A strategy option that names a file relative to the config file (a template, a forgetting task) is made
    absolute when that file exists next to the config; anything else (inline text, 'demo', a path relative to
    the current folder) is left as written."""
    if isinstance(node, dict):
        for key, value in node.items():
            node[key] = _resolve_strategy_paths(value, base)
        return node
    if isinstance(node, list):
        return [_resolve_strategy_paths(v, base) for v in node]
    if isinstance(node, str) and "\n" not in node and node.strip().lower().endswith(_FILE_SUFFIXES):
        path = Path(node.strip()).expanduser()
        if not path.is_absolute() and (base / path).is_file():
            return str((base / path).resolve())
    return node


def dump_config(config: ExperimentConfig) -> str:
    return yaml.safe_dump(config_to_dict(config), sort_keys=False)


def config_to_dict(config: ExperimentConfig) -> dict[str, Any]:
    data = config.model_dump(mode="json")
    data["strategies"] = [s.model_dump(mode="json") for s in config.strategies]
    return data
