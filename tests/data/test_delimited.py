"""Delimited files as spreadsheets write them: the delimiter detected quote-aware (or set with
`task.delimiter`), fields over csv's 128 KB default limit, errors that still name file and row."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from conftest import CASES
from tunewise.config import TaskConfig
from tunewise.data import load_task
from tunewise.data.delimited import detect_delimiter
from tunewise.errors import UserError

HOTEL = CASES / "semicolon_csv" / "hotel_reviews_semicolon.csv"
TEXTS = ['a, b; c | d', 'said "no"; left, angry', "plain words", "tab\tinside", "two\nlines, here"]


def everything(task) -> list:
    return task.train + task.validation + task.test


def write(path: Path, delimiter: str, n: int = 20, texts: list[str] = TEXTS) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter=delimiter, quoting=csv.QUOTE_MINIMAL)
        writer.writerow(["text", "label"])
        for i in range(n):
            writer.writerow([texts[i % len(texts)] + f" #{i}", ("pos", "neg")[i % 2]])
    return path


def test_the_semicolon_export_loads_20_examples_with_2_labels():
    task = load_task(TaskConfig(source=str(HOTEL)))
    examples = everything(task)
    assert len(examples) == 20
    assert task.labels == ["negative", "positive"]
    by_line = {e.meta["source"].rsplit(":", 1)[1]: e for e in examples}
    assert by_line["9"].input == "Rated 4,5 out of 5 by our whole family"  # the decimal comma stays in the text
    assert by_line["9"].target == "positive"
    assert by_line["21"].input == "Reception was rude when we asked for help"
    assert by_line["21"].target == "negative"


def test_the_semicolon_export_runs_zero_shot_from_the_cli(tmp_path, monkeypatch, tiny_causal):
    from tunewise.cli import app
    from tunewise.runs import Run

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["run", "--task", str(HOTEL), "--strategies", "zero-shot",
                                      "--model", tiny_causal])
    assert result.exit_code == 0, (result.output, result.exception)
    (run_dir,) = (tmp_path / "runs").iterdir()
    run = Run.open(run_dir, announce=False)
    try:
        task = run.task()
        assert len(everything(task)) == 20
        assert task.labels == ["negative", "positive"]
    finally:
        run.close()


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".txt"])
def test_each_delimiter_is_detected_whatever_the_suffix(tmp_path, delimiter, suffix):
    path = write(tmp_path / f"data{suffix}", delimiter)
    task = load_task(TaskConfig(source=str(path)))
    inputs = {e.input for e in everything(task)}
    assert len(inputs) == 20
    assert {t + f" #{i}" for i, t in enumerate(TEXTS)} <= inputs  # quoted delimiters, quotes, newlines kept
    assert task.labels == ["neg", "pos"]


def test_a_delimiter_found_only_inside_quotes_is_not_taken(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("text|label\n" + "".join(f'"one; two, {i}"|{("a", "b")[i % 2]}\n' for i in range(10)))
    assert detect_delimiter(path.read_text(), ",") == "|"
    task = load_task(TaskConfig(source=str(path)))
    assert {e.input for e in everything(task)} == {f"one; two, {i}" for i in range(10)}


def test_one_column_file_with_commas_only_in_quotes_keeps_the_suffix_default():
    assert detect_delimiter('text\n"a, b"\n"c; d"\n', ",") == ","
    assert detect_delimiter('text\n"a, b"\n', "\t") == "\t"


def test_a_tie_keeps_the_suffix_default():
    text = "a,b;c\n1,2;3\n4,5;6\n"  # both give 2 consistent fields
    assert detect_delimiter(text, ",") == ","
    assert detect_delimiter(text, ";") == ";"


def test_task_delimiter_overrides_detection(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("text;label,extra\n" + "".join(f"w{i};{('a', 'b')[i % 2]},x\n" for i in range(10)))
    with pytest.raises(UserError) as info:  # a tie: the suffix's comma wins
        load_task(TaskConfig(source=str(path), input_column="text"))
    assert "no column 'text' (columns: text;label, extra)" in str(info.value)
    task = load_task(TaskConfig(source=str(path), delimiter="semicolon", target_column="label,extra"))
    assert task.labels == ["a,x", "b,x"]


@pytest.mark.parametrize("value, char", [("tab", "\t"), ("\t", "\t"), ("pipe", "|"), (" ; ", ";"), ("Comma", ",")])
def test_task_delimiter_accepts_characters_and_names(value, char):
    assert TaskConfig(delimiter=value).delimiter == char


def test_unsupported_task_delimiter_names_the_choices():
    with pytest.raises(ValidationError) as info:
        TaskConfig(delimiter=":")
    assert "comma (,), semicolon (;), tab, pipe (|)" in str(info.value)


@pytest.mark.parametrize("delimiter, suffix", [(",", ".csv"), ("\t", ".tsv"), (";", ".csv")])
def test_a_field_over_128_kb_loads(tmp_path, delimiter, suffix):
    long_text = "word, and; more " * 20_000  # 320 KB, with delimiters inside the quoted value
    path = write(tmp_path / f"data{suffix}", delimiter, texts=[long_text, "short"])
    before = csv.field_size_limit()
    task = load_task(TaskConfig(source=str(path)))
    assert csv.field_size_limit() == before  # the raised limit does not leak into other csv users
    inputs = [e.input for e in everything(task)]
    assert len(inputs) == 20
    assert long_text + " #0" in inputs  # whole, not cut at the old limit


def test_an_unquoted_extra_semicolon_names_the_row_and_the_detected_delimiter(tmp_path):
    path = tmp_path / "data.csv"
    lines = [f"t{i};{('a', 'b')[i % 2]}" for i in range(20)]
    lines[5] = "one; two;a"
    path.write_text("text;label\n" + "\n".join(lines) + "\n")
    with pytest.raises(UserError) as info:
        load_task(TaskConfig(source=str(path)))
    message = str(info.value)
    assert message.startswith(f"{path}: row 7: 3 fields but the header has 2 (semicolon-separated, detected")
    assert "set task.delimiter" in message and "double quotes" in message
