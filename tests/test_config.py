"""Config validation: unknown keys, bad values and YAML mistakes give a one-line UserError naming the key
path (e.g. strategies[0].rnak) or the line; data paths resolve relative to the config file. No models."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunewise.config import ExperimentConfig, TaskConfig, dump_config, load_config, parse_config
from tunewise.data import load_task
from tunewise.errors import UserError


def config_error(data: dict) -> str:
    with pytest.raises(UserError) as info:
        parse_config(data, "exp.yaml")
    message = str(info.value)
    assert "\n" not in message, f"error message spans several lines: {message!r}"
    assert message.startswith("exp.yaml: ")
    return message


def load_error(path: Path) -> str:
    with pytest.raises(UserError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message, f"error message spans several lines: {message!r}"
    return message


def write_data(path: Path, n: int = 30) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    labels = ("billing", "shipping", "returns")
    path.write_text("text,label\n" + "".join(f"message {i},{labels[i % 3]}\n" for i in range(n)),
                    encoding="utf-8")
    return path


def test_defaults_are_valid():
    cfg = parse_config({})
    assert cfg.task.source == "demo"
    assert [s.id for s in cfg.strategies] == ["zero-shot", "few-shot", "lora", "full-finetune", "head-only"]


def test_strategy_mapping_with_options():
    cfg = parse_config({"strategies": ["zero-shot", {"name": "lora", "rank": 4, "id": "lora-r4"},
                                       {"name": "lora", "rank": 8}]})
    assert [s.id for s in cfg.strategies] == ["zero-shot", "lora-r4", "lora"]
    assert cfg.strategies[1].rank == 4
    assert "rank: 4" in dump_config(cfg)


def test_unknown_top_level_key():
    message = config_error({"strategy": ["lora"]})
    assert message.startswith("exp.yaml: strategy: unknown key")
    assert "strategies" in message  # the suggestion


def test_unknown_key_inside_task():
    message = config_error({"task": {"source": "demo", "input_col": "text"}})
    assert message.startswith("exp.yaml: task.input_col: unknown key")
    assert "input_column" in message


def test_unknown_key_without_close_match_lists_the_keys():
    message = config_error({"task": {"zzzz": 1}})
    assert message.startswith("exp.yaml: task.zzzz: unknown key")
    assert "source" in message and "test_size" in message


def test_unknown_key_inside_strategy_mapping():
    message = config_error({"strategies": ["zero-shot", {"name": "lora", "rnak": 4}]})
    assert message.startswith("exp.yaml: strategies[1].rnak: unknown key")
    assert "'rank'" in message
    assert "tunewise strategies" in message


def test_unknown_strategy_name():
    message = config_error({"strategies": ["zero-shot", "lorra"]})
    assert message.startswith("exp.yaml: strategies[1]: unknown strategy 'lorra'")
    for name in ("zero-shot", "few-shot", "lora", "full-finetune", "head-only"):
        assert name in message


def test_unknown_strategy_name_in_mapping():
    message = config_error({"strategies": [{"name": "prompt-engineering-magic", "lr": 1}]})
    assert message.startswith("exp.yaml: strategies[0].name: unknown strategy 'prompt-engineering-magic'")


def test_strategy_mapping_without_name():
    message = config_error({"strategies": [{"rank": 4}]})
    assert message.startswith("exp.yaml: strategies[0]: give a strategy name")


@pytest.mark.parametrize("strategies, dup_index, dup_id", [
    (["lora", "zero-shot", "lora"], 2, "lora"),
    ([{"name": "zero-shot", "id": "x"}, {"name": "few-shot", "id": "x"}], 1, "x"),
])
def test_duplicate_strategy_ids(strategies, dup_index, dup_id):
    message = config_error({"strategies": strategies})
    assert message.startswith(f"exp.yaml: strategies[{dup_index}].id: id '{dup_id}' is already used")
    assert "different 'id'" in message


def test_empty_strategy_list():
    assert config_error({"strategies": []}).startswith("exp.yaml: strategies: list at least one strategy")


@pytest.mark.parametrize("option, value, expected", [
    ("learning_rate", -0.001, "strategies[0].learning_rate: Input should be greater than 0"),
    ("learning_rate", float("nan"), "strategies[0].learning_rate:"),
    ("rank", 0, "strategies[0].rank: Input should be greater than 0"),
    ("rank", "big", "strategies[0].rank: Input should be a valid integer"),
    ("dropout", 1.5, "strategies[0].dropout: Input should be less than 1"),
])
def test_bad_strategy_values(option, value, expected):
    message = config_error({"strategies": [{"name": "lora", option: value}]})
    assert message.startswith(f"exp.yaml: {expected}")


def test_every_bad_strategy_is_reported():
    message = config_error({"strategies": [{"name": "lora", "rank": 0}, "zero-shot",
                                           {"name": "lora", "id": "l2", "rnak": 2}]})
    assert "strategies[0].rank:" in message
    assert "strategies[2].rnak:" in message


@pytest.mark.parametrize("task, expected", [
    ({"test_size": 1.5}, "task.test_size: Input should be less than 1"),
    ({"test_size": 0}, "task.test_size: Input should be greater than 0"),
    ({"validation_size": -0.1}, "task.validation_size: Input should be greater than or equal to 0"),
    ({"test_size": 0.6, "validation_size": 0.5}, "task.test_size + task.validation_size must be below 1"),
    ({"kind": "regression"}, "task.kind: Input should be 'classification' or 'generation'"),
    ({"max_test_examples": 0}, "task.max_test_examples: Input should be greater than 0"),
    ({"has_header": "maybe"}, "task.has_header: Input should be a valid boolean"),
])
def test_bad_task_values(task, expected):
    assert expected in config_error({"task": task})


@pytest.mark.parametrize("data, expected", [
    ({"device": "gpu"}, "device: Input should be 'auto', 'cpu', 'cuda' or 'mps'"),
    ({"eval_batch_size": 0}, "eval_batch_size: Input should be greater than 0"),
    ({"seed": "abc"}, "seed: Input should be a valid integer"),
    ({"task": "data.csv"}, "task: Input should be a valid dictionary"),
    ({"strategies": "lora"}, "strategies: Input should be a valid list"),
])
def test_bad_top_level_values(data, expected):
    assert config_error(data).startswith(f"exp.yaml: {expected}")


def test_numeric_column_names_for_files_without_header():
    cfg = parse_config({"task": {"has_header": False, "input_column": 0, "target_column": 1}})
    assert (cfg.task.input_column, cfg.task.target_column) == ("0", "1")


# --- YAML files --------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, line", [
    ("task:\n  source: data.csv\n   input_column: text\n", 3),
    ("model: x\nstrategies: [lora, zero-shot\n", 3),
    ("task:\n\tsource: data.csv\n", 2),
    ("seed: 1\nmodel: 'unterminated\n", 3),
])
def test_yaml_syntax_error_names_the_line(tmp_path, text, line):
    path = tmp_path / "exp.yaml"
    path.write_text(text, encoding="utf-8")
    message = load_error(path)
    assert message.startswith(f"{path}: line {line}: not valid YAML (")


def test_yaml_that_is_not_a_mapping(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("- lora\n- zero-shot\n", encoding="utf-8")
    assert load_error(path).startswith(f"{path}: expected a mapping of keys")


def test_yaml_not_utf8(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_bytes("task:\n  name: caf\xe9\n".encode("latin-1"))
    assert load_error(path).startswith(f"{path}: not valid UTF-8")


def test_config_file_missing_or_folder(tmp_path):
    assert load_error(tmp_path / "nope.yaml").startswith(f"{tmp_path / 'nope.yaml'}: config file not found")
    assert load_error(tmp_path).startswith(f"{tmp_path}: is a folder")


def test_yaml_errors_name_the_file(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("strategies:\n  - name: lora\n    rnak: 4\n", encoding="utf-8")
    assert load_error(path).startswith(f"{path}: strategies[0].rnak: unknown key")


def test_empty_yaml_means_defaults(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("# nothing yet\n", encoding="utf-8")
    assert load_config(path) == ExperimentConfig()


def test_relative_data_paths_resolve_against_the_config_file(tmp_path, monkeypatch):
    project = tmp_path / "project"
    train = write_data(project / "data" / "train.csv")
    test = write_data(project / "data" / "test.csv", n=9)
    config = project / "configs" / "exp.yaml"
    config.parent.mkdir(parents=True)
    config.write_text("task:\n  train: ../data/train.csv\n  test: ../data/test.csv\n", encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config(config)
    assert Path(cfg.task.train) == train.resolve()
    assert Path(cfg.task.test) == test.resolve()
    task = load_task(cfg.task, seed=cfg.seed)
    assert len(task.test) == 9
    assert task.labels == ["billing", "returns", "shipping"]


def test_relative_source_next_to_the_config(tmp_path, monkeypatch):
    write_data(tmp_path / "cfg" / "data.csv")
    config = tmp_path / "cfg" / "exp.yaml"
    config.write_text("task:\n  source: data.csv\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert Path(load_config(config).task.source) == (tmp_path / "cfg" / "data.csv").resolve()


def test_missing_relative_data_path_is_reported_where_it_was_looked_for(tmp_path, monkeypatch):
    config = tmp_path / "cfg" / "exp.yaml"
    config.parent.mkdir()
    config.write_text("task:\n  source: data.csv\n", encoding="utf-8")
    write_data(tmp_path / "data.csv")  # next to the working directory, not to the config: not used
    monkeypatch.chdir(tmp_path)
    cfg = load_config(config)
    with pytest.raises(UserError) as info:
        load_task(cfg.task)
    assert str(info.value).startswith(f"{(tmp_path / 'cfg' / 'data.csv').resolve()}: file not found")


def test_builtin_and_hub_names_are_not_paths(tmp_path):
    (tmp_path / "demo").mkdir()
    (tmp_path / "test").mkdir()  # an hf split name that happens to be a folder next to the config
    config = tmp_path / "exp.yaml"
    config.write_text("task:\n  source: demo\n", encoding="utf-8")
    assert load_config(config).task.source == "demo"
    config.write_text("task:\n  source: hf:user/data\n  test: test\n", encoding="utf-8")
    cfg = load_config(config)
    assert (cfg.task.source, cfg.task.test) == ("hf:user/data", "test")


def test_absolute_paths_are_kept(tmp_path):
    data = write_data(tmp_path / "abs" / "data.csv")
    config = tmp_path / "exp.yaml"
    config.write_text(f"task:\n  source: {data}\n", encoding="utf-8")
    assert load_config(config).task.source == str(data)


def test_task_config_rejects_unknown_keys_directly():
    with pytest.raises(ValueError, match="nope"):
        TaskConfig(nope=1)


def test_strategy_files_resolve_against_the_config_file(tmp_path, monkeypatch):
    project = tmp_path / "project"
    (project / "prompts").mkdir(parents=True)
    (project / "prompts" / "user.j2").write_text("Message: {{ input }}", encoding="utf-8")
    (project / "prompts" / "facts.j2").write_text("Facts of: {{ input }}", encoding="utf-8")
    second = write_data(project / "data" / "general.csv")
    config = project / "exp.yaml"
    config.write_text(
        "strategies:\n"
        "  - name: template\n    user: prompts/user.j2\n    system: 'Inline {{ labels }} text.txt'\n"
        "  - name: chain\n    steps:\n      - {name: facts, template: prompts/facts.j2}\n"
        "      - {name: answer, template: '{{ facts }}', kind: answer}\n"
        "  - name: lora\n    forgetting_task: data/general.csv\n", encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    template, chain, lora = load_config(config).strategies
    assert Path(template.user) == (project / "prompts" / "user.j2").resolve()
    assert template.system == "Inline {{ labels }} text.txt"  # not a file next to the config: left as written
    assert Path(chain.steps[0].template) == (project / "prompts" / "facts.j2").resolve()
    assert chain.steps[1].template == "{{ facts }}"
    assert Path(lora.forgetting_task) == second.resolve()
