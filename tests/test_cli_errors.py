"""The CLI on bad input: exit code 2, exactly one 'error:' line, no traceback. In-process (CliRunner);
every failure happens before any model is loaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import tunewise.experiment  # noqa: F401  (imports torch once, at collection, so each test stays fast)
from tunewise.cli import app

runner = CliRunner()
STRATEGIES = ("zero-shot", "few-shot", "lora", "full-finetune", "head-only")


def write_data(path: Path, n: int = 30, labels: tuple[str, ...] = ("billing", "shipping", "returns")) -> Path:
    path.write_text("text,label\n" + "".join(f"message {i},{labels[i % len(labels)]}\n" for i in range(n)),
                    encoding="utf-8")
    return path


def fails_cleanly(args: list[str], **kwargs) -> str:
    """Run the CLI, expect exit 2 with one 'error:' line and no traceback; return that line."""
    result = runner.invoke(app, args, **kwargs)
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit)  # not a crash that CliRunner caught
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    assert [line for line in result.stderr.splitlines() if line.strip()] == errors
    return errors[0]


def test_validate_good_config(tmp_path, monkeypatch):
    write_data(tmp_path / "data.csv")
    config = tmp_path / "good.yaml"
    config.write_text("task:\n  source: data.csv\nstrategies: [zero-shot, lora]\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path.parent)  # the data path is relative to the config, not to the cwd
    result = runner.invoke(app, ["validate", str(config)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())  # the success line may be wrapped at the console width
    assert text.startswith(f"{config}: valid")
    assert "3 labels" in text
    assert "strategies: zero-shot, lora" in text
    assert "error:" not in result.output


def test_validate_config_with_default_strategies(tmp_path):
    write_data(tmp_path / "data.csv")
    config = tmp_path / "good.yaml"
    config.write_text("task:\n  source: data.csv\n", encoding="utf-8")
    result = runner.invoke(app, ["validate", str(config)])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "strategies: " + ", ".join(STRATEGIES) in " ".join(result.stdout.split())


@pytest.mark.parametrize("text, expected", [
    ("task:\n  source: data.csv\nstrategies:\n  - name: lora\n    rnak: 4\n", "strategies[0].rnak: unknown key"),
    ("task:\n  source: data.csv\n  test_size: 1.5\n", "task.test_size: Input should be less than 1"),
    ("task:\n  source: data.csv\n   bad: indent\n", "line 3: not valid YAML"),
    ("tsk:\n  source: data.csv\n", "tsk: unknown key"),
    ("strategies: [zero-shot, zero-shot]\n", "strategies[1].id: id 'zero-shot' is already used"),
])
def test_validate_bad_config(tmp_path, text, expected):
    write_data(tmp_path / "data.csv")
    config = tmp_path / "bad.yaml"
    config.write_text(text, encoding="utf-8")
    line = fails_cleanly(["validate", str(config)])
    assert line.startswith(f"error: {config}:")
    assert expected in line


@pytest.mark.parametrize("body, expected", [
    ("text,category\nhello,a\n", "no column 'label' (columns: text, category); set task.target_column"),
    ("text,label\nhello,a\n,b\nbye,a\n", "row 3: column 'text' is empty"),
    ("", "the file is empty"),
])
def test_validate_bad_data(tmp_path, body, expected):
    data = tmp_path / "data.csv"
    data.write_text(body, encoding="utf-8")
    config = tmp_path / "exp.yaml"
    config.write_text("task:\n  source: data.csv\n  target_column: label\n", encoding="utf-8")
    line = fails_cleanly(["validate", str(config)])
    assert line.startswith(f"error: {data.resolve()}: ")
    assert expected in line


def test_validate_label_only_in_test_file(tmp_path):
    write_data(tmp_path / "train.csv")
    test = tmp_path / "test.jsonl"
    test.write_text(json.dumps({"text": "a", "label": "billing"}) + "\n"
                    + json.dumps({"text": "b", "label": "warranty"}) + "\n", encoding="utf-8")
    config = tmp_path / "exp.yaml"
    config.write_text("task:\n  train: train.csv\n  test: test.jsonl\n", encoding="utf-8")
    line = fails_cleanly(["validate", str(config)])
    assert line.startswith(f"error: {test.resolve()}: row 2: label 'warranty' does not occur in the training data")


def test_validate_missing_config_file(tmp_path):
    line = fails_cleanly(["validate", str(tmp_path / "nope.yaml")])
    assert line == f"error: {tmp_path / 'nope.yaml'}: config file not found"


def test_run_missing_task_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    line = fails_cleanly(["run", "--task", "missing.csv", "--strategies", "zero-shot"])
    assert line.startswith(f"error: {(tmp_path / 'missing.csv').resolve()}: file not found")
    assert not (tmp_path / "runs").exists()  # nothing was started


def test_run_task_with_unknown_extension(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data.xlsx").write_bytes(b"PK\x03\x04\x00\xe9\xff")
    line = fails_cleanly(["run", "--task", "data.xlsx"])
    assert "data.xlsx: unknown file type '.xlsx'" in line


def test_run_unknown_strategy(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_data(tmp_path / "data.csv")
    line = fails_cleanly(["run", "--task", "data.csv", "--strategies", "zero-shot,lorra"])
    assert line.startswith("error: command line: strategies[1]: unknown strategy 'lorra'")


def test_run_bad_config(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("strategies:\n  - name: lora\n    learning_rate: -1\n", encoding="utf-8")
    line = fails_cleanly(["run", str(config)])
    assert line == f"error: {config}: strategies[0].learning_rate: Input should be greater than 0"


def test_run_limit_zero(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_data(tmp_path / "data.csv")
    line = fails_cleanly(["run", "--task", "data.csv", "--limit", "0"])
    assert "task.max_test_examples: Input should be greater than 0" in line


def test_resume_folder_that_is_not_a_run(tmp_path):
    folder = tmp_path / "some" / "dir"
    folder.mkdir(parents=True)
    line = fails_cleanly(["run", "--resume", str(folder)])
    assert line.startswith(f"error: {folder}: not a tunewise run folder")
    line = fails_cleanly(["run", "--resume", str(tmp_path / "not" / "there")])
    assert "not a tunewise run folder" in line


def test_resume_with_other_options(tmp_path):
    line = fails_cleanly(["run", "--resume", str(tmp_path), "--limit", "5"])
    assert "--resume continues a run with its own saved config" in line


def test_show_folder_that_is_not_a_run(tmp_path):
    line = fails_cleanly(["show", str(tmp_path)])
    assert "not a tunewise run folder" in line


def test_hf_dataset_offline(monkeypatch, tmp_path):
    pytest.importorskip("datasets")
    import datasets
    import huggingface_hub.constants

    # the hub libraries read HF_HUB_OFFLINE when imported; set it there too, as a fresh process would
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.chdir(tmp_path)
    line = fails_cleanly(["run", "--task", "hf:some/dataset", "--strategies", "zero-shot"],
                         env={"HF_HUB_OFFLINE": "1"})
    assert line.startswith("error: hf:some/dataset: could not load the Hugging Face dataset")
    assert "needs network access" in line


def test_strategies_lists_every_builtin():
    result = runner.invoke(app, ["strategies"])
    assert result.exit_code == 0, result.output
    for name in STRATEGIES:
        assert f"{name}  (" in result.stdout
    assert "rank" in result.stdout  # options are listed too


def test_error_message_with_square_brackets_is_printed_verbatim(tmp_path):
    write_data(tmp_path / "train.csv", labels=("[b]", "[i]"))
    (tmp_path / "test.csv").write_text("text,label\nhello,[b]\nbye,[/b]\n", encoding="utf-8")
    config = tmp_path / "exp.yaml"
    config.write_text("task:\n  train: train.csv\n  test: test.csv\n", encoding="utf-8")
    line = fails_cleanly(["validate", str(config)])
    assert "row 3: label '[/b]' does not occur in the training data (train labels: [b], [i])" in line


def test_python_dash_m_runs_the_cli_with_its_exit_codes(tmp_path):
    # `python -m tunewise` is what `accelerate launch -m tunewise run ...` starts in each process.
    import subprocess
    import sys

    ok = subprocess.run([sys.executable, "-m", "tunewise", "strategies"], capture_output=True, text=True, check=False)
    assert ok.returncode == 0 and "lora" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "tunewise", "validate", str(tmp_path / "missing.yaml")],
                         capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and "config file not found" in bad.stderr and "Traceback" not in bad.stderr
