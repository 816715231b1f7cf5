"""Loading user data: every bad input is a one-line UserError naming file, row and field; happy paths
load the right examples and split them deterministically. Files are built in tmp_path; no models."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest

from tunewise.config import TaskConfig
from tunewise.data import load_task
from tunewise.data.loading import read_rows
from tunewise.errors import UserError

LABELS = ("billing", "shipping", "returns")


def make_rows(n: int = 30, labels: tuple[str, ...] = LABELS) -> list[dict[str, str]]:
    return [{"text": f"customer message number {i}", "label": labels[i % len(labels)]} for i in range(n)]


def write_csv(path: Path, rows: list[dict], delimiter: str = ",", header: bool = True) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter=delimiter)
        if header:
            writer.writerow(list(rows[0]))
        for row in rows:
            writer.writerow(list(row.values()))
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_parquet(path: Path, rows: list[dict]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def write(fmt: str, path_stem: Path, rows: list[dict]) -> Path:
    if fmt == "csv":
        return write_csv(path_stem.with_suffix(".csv"), rows)
    if fmt == "tsv":
        return write_csv(path_stem.with_suffix(".tsv"), rows, delimiter="\t")
    if fmt == "jsonl":
        return write_jsonl(path_stem.with_suffix(".jsonl"), rows)
    return write_parquet(path_stem.with_suffix(".parquet"), rows)


def user_error(cfg: TaskConfig, seed: int = 0) -> str:
    with pytest.raises(UserError) as info:
        load_task(cfg, seed=seed)
    message = str(info.value)
    assert "\n" not in message, f"error message spans several lines: {message!r}"
    return message


def ids(examples) -> list[str]:
    return [e.id for e in examples]


# --- happy paths -------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "parquet"])
def test_each_format_loads_every_row(tmp_path, fmt):
    path = write(fmt, tmp_path / "data", make_rows(30))
    task = load_task(TaskConfig(source=str(path)), seed=0)
    assert len(task.train) + len(task.validation) + len(task.test) == 30
    assert task.labels == sorted(LABELS)
    assert task.kind == "classification"
    assert task.name == "data"
    assert {e.input for e in task.train + task.validation + task.test} == {
        f"customer message number {i}" for i in range(30)}


def test_split_is_deterministic_for_a_seed_and_changes_with_the_seed(tmp_path):
    path = write_csv(tmp_path / "data.csv", make_rows(40))
    cfg = TaskConfig(source=str(path), validation_size=0.0)
    first, again, other = load_task(cfg, seed=1), load_task(cfg, seed=1), load_task(cfg, seed=2)
    assert ids(first.test) == ids(again.test)
    assert ids(first.train) == ids(again.train)
    assert set(ids(first.test)) != set(ids(other.test))


def test_split_respects_test_size_and_stratifies(tmp_path):
    path = write_csv(tmp_path / "data.csv", make_rows(40, labels=("a", "b")))
    task = load_task(TaskConfig(source=str(path), test_size=0.25, validation_size=0.0), seed=0)
    assert len(task.test) == 10
    assert len(task.train) == 30
    assert Counter(e.target for e in task.test) == {"a": 5, "b": 5}
    assert not set(ids(task.train)) & set(ids(task.test))


def test_validation_split_is_carved_from_the_data(tmp_path):
    path = write_csv(tmp_path / "data.csv", make_rows(40))
    task = load_task(TaskConfig(source=str(path), test_size=0.25, validation_size=0.25), seed=0)
    assert (len(task.train), len(task.validation), len(task.test)) == (20, 10, 10)
    assert len(set(ids(task.train + task.validation + task.test))) == 40


@pytest.mark.parametrize("seed", range(12))
def test_every_label_stays_in_train_even_when_rare(tmp_path, seed):
    # one example of 'rare', two of 'scarce': a plain random split can put them all in test/validation
    rows = make_rows(30) + [{"text": "only one of these", "label": "rare"},
                            {"text": "one of two", "label": "scarce"}, {"text": "two of two", "label": "scarce"}]
    path = write_csv(tmp_path / "data.csv", rows)
    task = load_task(TaskConfig(source=str(path)), seed=seed)
    train_labels = {e.target for e in task.train}
    assert train_labels == set(LABELS) | {"rare", "scarce"}
    assert {e.target for e in task.validation + task.test} <= train_labels
    assert len(task.train) + len(task.validation) + len(task.test) == 33


@pytest.mark.parametrize("seed", [0, 3])
def test_max_test_examples_caps_the_test_set(tmp_path, seed):
    path = write_csv(tmp_path / "data.csv", make_rows(40))
    full = load_task(TaskConfig(source=str(path)), seed=seed)
    capped = load_task(TaskConfig(source=str(path), max_test_examples=5), seed=seed)
    assert len(full.test) > 5
    assert len(capped.test) == 5
    assert set(ids(capped.test)) <= set(ids(full.test))
    assert ids(capped.train) == ids(full.train)
    assert ids(load_task(TaskConfig(source=str(path), max_test_examples=5), seed=seed).test) == ids(capped.test)


def test_limit_argument_caps_the_test_set_too(tmp_path):
    path = write_csv(tmp_path / "data.csv", make_rows(40))
    assert len(load_task(TaskConfig(source=str(path)), seed=0, limit=4).test) == 4


def test_max_train_examples_keeps_every_label(tmp_path):
    path = write_csv(tmp_path / "data.csv", make_rows(40))
    task = load_task(TaskConfig(source=str(path), max_train_examples=6), seed=0)
    assert len(task.train) == 6
    assert {e.target for e in task.train} == set(LABELS)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_split_column_assigns_rows(tmp_path, fmt):
    rows = make_rows(30)
    for i, row in enumerate(rows):
        row["split"] = ["train", "train", "train", "Test", "dev"][i % 5]
    path = write(fmt, tmp_path / "data", rows)
    task = load_task(TaskConfig(source=str(path), split_column="split"), seed=0)
    assert len(task.train) == 18
    assert len(task.test) == 6
    assert len(task.validation) == 6
    assert {e.input for e in task.test} == {f"customer message number {i}" for i in range(3, 30, 5)}
    assert task.train[0].meta["split"] == "train"


def test_without_header_columns_are_named_by_position(tmp_path):
    path = write_csv(tmp_path / "data.csv", make_rows(30), header=False)
    rows, where = read_rows(str(path), has_header=False)
    assert where == str(path)
    assert len(rows) == 30
    assert [k for k in rows[0] if k != "__line__"] == ["0", "1"]
    assert rows[0]["__line__"] == 1
    task = load_task(TaskConfig(source=str(path), has_header=False, input_column="0", target_column="1"))
    assert task.labels == sorted(LABELS)
    assert len(task.train) + len(task.validation) + len(task.test) == 30


def test_without_header_unnamed_columns_ask_for_the_config_key(tmp_path):
    path = write_csv(tmp_path / "data.csv", make_rows(30), header=False)
    message = user_error(TaskConfig(source=str(path), has_header=False))
    assert str(path) in message
    assert "columns: 0, 1" in message
    assert "task.input_column" in message


def test_separate_train_and_test_files(tmp_path):
    train = write_csv(tmp_path / "train.csv", make_rows(30))
    test = write_jsonl(tmp_path / "test.jsonl", make_rows(9))
    task = load_task(TaskConfig(train=str(train), test=str(test)), seed=0)
    # the default source ('demo') must not leak the built-in demo task into the user's data
    assert task.labels == sorted(LABELS)
    assert len(task.test) == 9
    assert len(task.train) + len(task.validation) == 30
    assert task.name == "train"
    assert all(e.meta["source"].startswith(str(train)) for e in task.train)


def test_source_and_a_different_train_file_conflict(tmp_path):
    source = write_csv(tmp_path / "all.csv", make_rows(30))
    train = write_csv(tmp_path / "train.csv", make_rows(30))
    message = user_error(TaskConfig(source=str(source), train=str(train)))
    assert "task.source" in message and "task.train" in message
    assert str(train) in message


def test_columns_guessed_for_the_test_file_like_for_the_source(tmp_path):
    rows = [{"question": r["text"], "intent": r["label"]} for r in make_rows(30)]
    source = write_csv(tmp_path / "train.csv", rows)
    test = write_csv(tmp_path / "test.csv", rows[:6])
    task = load_task(TaskConfig(source=str(source), test=str(test)))
    assert len(task.test) == 6
    assert task.labels == sorted(LABELS)


# --- the file itself ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["nope.csv", "nope.jsonl", "nope.parquet"])
def test_missing_file(tmp_path, name):
    path = tmp_path / name
    message = user_error(TaskConfig(source=str(path)))
    assert message.startswith(f"{path}: file not found")
    assert "check the path" in message


def test_folder_instead_of_file(tmp_path):
    folder = tmp_path / "data.csv"
    folder.mkdir()
    message = user_error(TaskConfig(source=str(folder)))
    assert message.startswith(f"{folder}: is a folder")
    assert "CSV" in message


@pytest.mark.parametrize("name, content", [("data.xlsx", b"PK\x03\x04\x14\x00\xe9\xff binary"),
                                           ("data.xml", b"<rows/>"), ("data", b"text,label\n")])
def test_unknown_extension(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    message = user_error(TaskConfig(source=str(path)))
    assert message.startswith(f"{path}: unknown file type")
    assert ".csv" in message and ".jsonl" in message and ".parquet" in message
    assert "UTF-8" not in message


@pytest.mark.parametrize("name", ["empty.csv", "empty.tsv", "empty.jsonl"])
def test_empty_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"")
    message = user_error(TaskConfig(source=str(path)))
    assert message.startswith(f"{path}: the file is empty")


@pytest.mark.parametrize("name, content", [("header.csv", "text,label\n"), ("header.tsv", "text\tlabel\n"),
                                           ("header2.csv", "text,label\n\n,\n")])
def test_header_only(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    message = user_error(TaskConfig(source=str(path)))
    assert message.startswith(f"{path}: no examples, only a header line")


def test_empty_parquet_table(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "empty.parquet"
    pq.write_table(pa.table({"text": pa.array([], pa.string()), "label": pa.array([], pa.string())}), path)
    message = user_error(TaskConfig(source=str(path)))
    assert message.startswith(f"{path}: the Parquet table has no rows")


def test_corrupt_parquet(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"this is not parquet at all")
    message = user_error(TaskConfig(source=str(path)))
    assert message.startswith(f"{path}: not a readable Parquet file")


# --- columns -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
@pytest.mark.parametrize("role", ["input", "target"])
def test_missing_named_column(tmp_path, fmt, role):
    rows = [{"body": r["text"], "category": r["label"]} for r in make_rows(30)]
    path = write(fmt, tmp_path / "data", rows)
    cfg = TaskConfig(source=str(path), input_column="body", target_column="category")
    cfg = cfg.model_copy(update={f"{role}_column": "nosuch"})
    message = user_error(cfg)
    assert message.startswith(f"{path}: no column 'nosuch'")
    assert "columns: body, category" in message
    assert f"task.{role}_column" in message


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_unguessable_target_column(tmp_path, fmt):
    rows = [{"text": r["text"], "category": r["label"]} for r in make_rows(30)]
    path = write(fmt, tmp_path / "data", rows)
    message = user_error(TaskConfig(source=str(path)))
    assert str(path) in message
    assert "columns: text, category" in message
    assert "task.target_column" in message


def test_jsonl_row_without_the_column(tmp_path):
    rows = make_rows(30)
    del rows[6]["label"]
    path = write_jsonl(tmp_path / "data.jsonl", rows)
    message = user_error(TaskConfig(source=str(path)))
    assert message.startswith(f"{path}: row 7: column 'label' is missing")


def test_missing_column_in_separate_test_file(tmp_path):
    train = write_csv(tmp_path / "train.csv", make_rows(30))
    test = write_csv(tmp_path / "test.csv", [{"text": "x", "tag": "billing"}])
    message = user_error(TaskConfig(train=str(train), test=str(test), target_column="label"))
    assert message.startswith(f"{test}: no column 'label'")
    assert "columns: text, tag" in message
    assert "task.target_column" in message


def test_duplicate_header_column(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("text,label,text\n" + "".join(f"t{i},{LABELS[i % 3]},x\n" for i in range(30)))
    message = user_error(TaskConfig(source=str(path)))
    assert message.startswith(f"{path}: line 1: column 'text' appears more than once")


# --- rows --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("held_out", ["test", "validation"])
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_label_missing_from_training_file(tmp_path, fmt, held_out):
    train = write(fmt, tmp_path / "train", make_rows(30))
    other_rows = make_rows(6)
    other_rows[3]["label"] = "warranty"
    other = write(fmt, tmp_path / held_out, other_rows)
    cfg = TaskConfig(train=str(train), **{held_out: str(other)})
    if held_out == "validation":
        cfg = cfg.model_copy(update={"test": str(write(fmt, tmp_path / "test", make_rows(6)))})
    message = user_error(cfg)
    row = 5 if fmt == "csv" else 4  # CSV: the header is line 1
    assert message.startswith(f"{other}: row {row}: label 'warranty' does not occur in the training data")
    assert "train labels: billing, returns, shipping" in message


@pytest.mark.parametrize("name", ["latin1.csv", "latin1.tsv", "latin1.jsonl"])
def test_non_utf8_bytes(tmp_path, name):
    path = tmp_path / name
    if name.endswith("jsonl"):
        body = '{"text": "fine", "label": "a"}\n{"text": "caf\xe9", "label": "b"}\n'
    else:
        sep = "\t" if name.endswith("tsv") else ","
        body = f"text{sep}label\nfine{sep}a\nok{sep}b\ncaf\xe9{sep}a\n"
    path.write_bytes(body.encode("latin-1"))
    message = user_error(TaskConfig(source=str(path)))
    line = 2 if name.endswith("jsonl") else 4
    assert message.startswith(f"{path}: line {line}: not valid UTF-8 (byte 0xe9)")
    assert "UTF-8" in message.split(";")[-1]


def test_utf8_bom_is_accepted(tmp_path):
    path = write_csv(tmp_path / "data.csv", make_rows(30))
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    task = load_task(TaskConfig(source=str(path)))
    assert task.labels == sorted(LABELS)


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
@pytest.mark.parametrize("field", ["text", "label"])
def test_empty_cell(tmp_path, fmt, field):
    rows = make_rows(30)
    rows[9][field] = "   "
    path = write(fmt, tmp_path / "data", rows)
    message = user_error(TaskConfig(source=str(path)))
    row = {"csv": 11, "jsonl": 10, "parquet": 10}[fmt]
    assert message.startswith(f"{path}: row {row}: column '{field}' is empty")
    assert "fill it or remove the row" in message


def test_jsonl_null_label(tmp_path):
    rows: list[dict] = make_rows(30)
    rows[4]["label"] = None
    path = write_jsonl(tmp_path / "data.jsonl", rows)
    assert user_error(TaskConfig(source=str(path))).startswith(f"{path}: row 5: column 'label' is empty")


def test_csv_short_row_leaves_the_label_empty(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("text,label\n" + "".join(f"t{i},{LABELS[i % 3]}\n" for i in range(10)) + "lonely text\n")
    assert user_error(TaskConfig(source=str(path))).startswith(f"{path}: row 12: column 'label' is empty")


def test_csv_row_with_an_unquoted_comma(tmp_path):
    path = tmp_path / "data.csv"
    lines = [f"t{i},{LABELS[i % 3]}" for i in range(20)]
    lines[7] = "hello, world,billing"
    path.write_text("text,label\n" + "\n".join(lines) + "\n")
    message = user_error(TaskConfig(source=str(path)))
    assert message.startswith(f"{path}: row 9: 3 fields but the header has 2")
    assert "double quotes" in message


def test_csv_quoted_comma_and_newline_are_fine(tmp_path):
    rows = make_rows(30)
    rows[2]["text"] = "hello, world"
    rows[4]["text"] = "two\nlines"
    path = write_csv(tmp_path / "data.csv", rows)
    task = load_task(TaskConfig(source=str(path)))
    inputs = {e.input for e in task.train + task.validation + task.test}
    assert {"hello, world", "two\nlines"} <= inputs


def test_csv_rows_after_a_multiline_field_keep_their_line_numbers(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text('text,label\n"two\nlines",billing\nok,shipping\n,returns\n')
    assert user_error(TaskConfig(source=str(path))).startswith(f"{path}: row 5: column 'text' is empty")


def test_csv_unclosed_quote(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text('text,label\nfine,billing\n"never closed,shipping\nmore,returns\nrest,billing\n')
    message = user_error(TaskConfig(source=str(path)))
    assert message.startswith(f"{path}: line 3: a quoted field is never closed")


@pytest.mark.parametrize("bad, reason", [("{not json", "not valid JSON"),
                                         ('{"text": "a", "label": "b"', "not valid JSON"),
                                         ('["a", "b"]', "expected a JSON object"),
                                         ('"just a string"', "expected a JSON object")])
def test_invalid_jsonl_line(tmp_path, bad, reason):
    good = [json.dumps(r) for r in make_rows(10)]
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(good[:4] + [bad] + good[4:]) + "\n")
    message = user_error(TaskConfig(source=str(path)))
    assert message.startswith(f"{path}: line 5: {reason}")


def test_jsonl_blank_lines_are_skipped_but_counted(tmp_path):
    lines = [json.dumps(r) for r in make_rows(30)]
    lines[5] = json.dumps({"text": "", "label": "billing"})
    path = tmp_path / "data.jsonl"
    path.write_text("\n\n" + "\n".join(lines) + "\n")
    assert user_error(TaskConfig(source=str(path))).startswith(f"{path}: row 8: column 'text' is empty")


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_split_column_with_unknown_value(tmp_path, fmt):
    rows = make_rows(30)
    for i, row in enumerate(rows):
        row["split"] = "test" if i % 4 == 0 else "train"
    rows[12]["split"] = "holdout"
    path = write(fmt, tmp_path / "data", rows)
    message = user_error(TaskConfig(source=str(path), split_column="split"))
    row = 14 if fmt == "csv" else 13
    assert message.startswith(f"{path}: row {row}: column 'split' is 'holdout'")
    assert "train, validation or test" in message


def test_split_column_with_empty_value(tmp_path):
    rows = make_rows(30)
    for i, row in enumerate(rows):
        row["split"] = "test" if i % 4 == 0 else "train"
    rows[2]["split"] = ""
    path = write_csv(tmp_path / "data.csv", rows)
    message = user_error(TaskConfig(source=str(path), split_column="split"))
    assert message.startswith(f"{path}: row 4: column 'split' is empty")


def test_split_column_that_does_not_exist(tmp_path):
    path = write_csv(tmp_path / "data.csv", make_rows(30))
    message = user_error(TaskConfig(source=str(path), split_column="fold"))
    assert message.startswith(f"{path}: no column 'fold'")
    assert "columns: text, label" in message
    assert "task.split_column" in message


# --- too little data ---------------------------------------------------------------------------------


def test_single_label(tmp_path):
    path = write_csv(tmp_path / "data.csv", make_rows(20, labels=("billing",)))
    message = user_error(TaskConfig(source=str(path)))
    assert message.startswith(f"{path}: the training examples have 1 distinct label(s) (billing)")
    assert "task.kind" in message


def test_single_row(tmp_path):
    path = write_csv(tmp_path / "data.csv", make_rows(1))
    message = user_error(TaskConfig(source=str(path)))
    assert message.startswith(f"{path}: no test examples after splitting")


def test_hf_source_offline(monkeypatch):
    pytest.importorskip("datasets")
    import datasets
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    message = user_error(TaskConfig(source="hf:some-user/some-dataset-that-does-not-exist"))
    assert message.startswith("hf:some-user/some-dataset-that-does-not-exist: could not load")
    assert "network access" in message
