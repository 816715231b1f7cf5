"""task.label_names: a list in the labels' natural order or a mapping; Hugging Face ClassLabel names read through
the hf: path (a datasets.Dataset built here, offline); one-line errors; the code-like-labels warning of
`validate` appears for 0/1 labels and not for names."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from tunewise.cli import app
from tunewise.config import parse_config
from tunewise.data import load_task
from tunewise.data.config import TaskConfig
from tunewise.data.labels import looks_like_codes
from tunewise.errors import UserError

runner = CliRunner()


def coded_csv(tmp_path, labels=("0", "1"), n: int = 24):
    path = tmp_path / "coded.csv"
    path.write_text("text,label\n" + "".join(f"message number {chr(97 + i % 26)},{labels[i % len(labels)]}\n"
                                             for i in range(n)), encoding="utf-8")
    return path


def test_a_list_names_the_labels_in_natural_order(tmp_path):
    task = load_task(TaskConfig(source=str(coded_csv(tmp_path, ("2", "10", "1"))),
                                label_names=["one", "two", "ten"]))
    assert task.labels == ["1", "2", "10"]
    assert task.label_names == {"1": "one", "2": "two", "10": "ten"}
    assert {e.target for e in task.test} <= {"1", "2", "10"}  # examples keep the stored label
    assert task.instruction.endswith("one, two, ten.")  # the default instruction lists the names
    shown = task.named()
    assert shown.labels == ["one", "two", "ten"] and {e.target for e in shown.train} == {"one", "two", "ten"}
    assert [e.id for e in shown.test] == [e.id for e in task.test]
    assert task.stored_label("ten") == "10"


def test_a_mapping_from_yaml_with_number_keys(tmp_path):
    data = coded_csv(tmp_path)
    cfg = parse_config({"task": {"source": str(data), "label_names": {0: "negative", 1: "positive"}}}, "exp.yaml")
    assert load_task(cfg.task).label_names == {"0": "negative", "1": "positive"}


@pytest.mark.parametrize("names, expected", [
    (["negative"], "task.label_names: 1 names for 2 labels (0, 1); give one name per label in this order: 0, 1"),
    ({"0": "negative", "1": "positive", "2": "neutral"}, "task.label_names: '2' is not a label of the training data"),
    ({"0": "negative"}, "task.label_names: no name for label(s) 1"),
    (["good", "good"], "task.label_names: 'good' names both '0' and '1'"),
    (["good", " "], "task.label_names: the name of label '1' is empty"),
])
def test_bad_names_are_one_line_errors(tmp_path, names, expected):
    with pytest.raises(UserError) as info:
        load_task(TaskConfig(source=str(coded_csv(tmp_path)), label_names=names))
    assert str(info.value).startswith(expected) and "\n" not in str(info.value)


def test_names_on_a_generation_task_are_refused(tmp_path):
    with pytest.raises(UserError, match="task.label_names: names labels of a classification task"):
        load_task(TaskConfig(source=str(coded_csv(tmp_path)), kind="generation", label_names=["a", "b"]))


def classlabel_dataset():
    datasets = pytest.importorskip("datasets")
    features = datasets.Features({"sentence": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["negative", "positive"])})
    rows = {"sentence": [f"review {chr(97 + i)} here" for i in range(20)], "label": [i % 2 for i in range(20)]}
    return datasets.Dataset.from_dict(rows, features=features)


def test_classlabel_names_come_with_an_hf_source(monkeypatch):
    datasets = pytest.importorskip("datasets")
    ds = classlabel_dataset()
    monkeypatch.setattr(datasets, "load_dataset", lambda name, config=None, split=None: ds)
    task = load_task(TaskConfig(source="hf:someone/reviews"))
    assert task.labels == ["0", "1"] and task.label_names == {"0": "negative", "1": "positive"}
    assert "negative, positive" in task.instruction
    override = load_task(TaskConfig(source="hf:someone/reviews", label_names=["bad", "good"]))
    assert override.label_names == {"0": "bad", "1": "good"}  # the config wins over the dataset's names


@pytest.mark.parametrize("labels, codes", [
    (["0", "1"], True), (["LABEL_0", "LABEL_1"], True), (["A", "B", "C"], True), (["-1", "1"], True),
    (["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"], True),
    (["negative", "positive"], False), (["billing", "refund"], False), (["yes", "no"], False),
])
def test_code_like_labels(labels, codes):
    assert looks_like_codes(labels) is codes


def validate(tmp_path, strategies: str, names: str = "") -> str:
    coded_csv(tmp_path)
    config = tmp_path / "exp.yaml"
    config.write_text(f"model: fake\ntask:\n  source: coded.csv\n{names}strategies: [{strategies}]\n",
                      encoding="utf-8")
    result = runner.invoke(app, ["validate", str(config)])
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def test_validate_warns_about_code_labels_for_prompting(tmp_path):
    warnings = [line for line in validate(tmp_path, "zero-shot, lora").splitlines() if "warning:" in line]
    assert len(warnings) == 1
    assert warnings[0].startswith("warning: labels look like codes (0, 1): prompting strategies (zero-shot) will "
                                  "score the strings '0' and '1'; name them with task.label_names:")


def test_no_warning_with_names_or_without_prompting(tmp_path):
    named = validate(tmp_path, "zero-shot", "  label_names: [negative, positive]\n")
    assert "warning:" not in named and "2 labels: 0 = negative, 1 = positive" in named
    assert "warning:" not in validate(tmp_path, "lora")


def test_run_warns_about_code_labels_too(tmp_path):
    coded_csv(tmp_path)
    config = tmp_path / "exp.yaml"
    config.write_text(f"model: fake\noutput_dir: {tmp_path / 'runs'}\ntask:\n  source: coded.csv\n"
                      "strategies: [zero-shot]\n", encoding="utf-8")
    result = runner.invoke(app, ["run", str(config)])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "warning: labels look like codes (0, 1): prompting strategies (zero-shot)" in " ".join(result.output.split())


def test_field_names_reach_the_task_and_a_name_that_would_break_the_layout_is_refused(tmp_path):
    data = coded_csv(tmp_path)
    cfg = parse_config({"task": {"source": str(data), "input_name": "Review", "target_name": "Sentiment"}},
                       "exp.yaml")
    task = load_task(cfg.task)
    assert (task.input_name, task.target_name) == ("Review", "Sentiment")
    assert task.named().target_name == "Sentiment"
    assert load_task(TaskConfig(source=str(data))).input_name is None
    for bad in ("Review:", "two\nlines", ""):
        with pytest.raises(UserError, match=r"task\.input_name"):
            parse_config({"task": {"source": str(data), "input_name": bad}}, "exp.yaml")
