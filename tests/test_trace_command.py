"""`tunewise trace`: a chain run on the fake backend stores every step, and the command shows them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tunewise.cli import app

runner = CliRunner()
STEPS = [
    {"name": "facts", "template": "Key facts of: {{ input }}", "max_tokens": 16},
    {"name": "label", "kind": "answer", "system": "{{ instruction }} Answer with exactly one of: "
     "{{ labels | join(', ') }}.", "template": "{{ input }}\nFacts: {{ facts }}"},
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("trace")
    rows = "".join(f"message {i} about my [{lab}] please,{lab}\n"
                   for i, lab in enumerate(["delivery", "refund"] * 10))
    (tmp / "data.csv").write_text("text,label\n" + rows, encoding="utf-8")
    config = {"task": {"source": "data.csv", "test_size": 0.3}, "model": "fake", "output_dir": str(tmp / "runs"),
              "strategies": [{"name": "chain", "steps": STEPS}, "zero-shot"]}
    (tmp / "exp.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    result = runner.invoke(app, ["run", str(tmp / "exp.yaml")])
    assert result.exit_code == 0, (result.output, result.exception)
    return Path(result.output.strip().splitlines()[-1].split("run folder: ")[1])


def first_prediction(run_dir: Path, strategy: str) -> dict:
    return json.loads((run_dir / "predictions" / f"{strategy}.jsonl").read_text().splitlines()[0])


def test_chain_trace_is_stored(run_dir):
    row = first_prediction(run_dir, "chain")
    assert [s["step"] for s in row["trace"]] == ["facts", "label"]
    facts, label = row["trace"]
    assert facts["input"] == f"Key facts of: {row['input']}"
    assert label["input"] == f"{row['input']}\nFacts: {facts['output']}"
    assert row["prompt_tokens"] == facts["tokens"]["prompt"] + label["tokens"]["prompt"]
    results = json.loads((run_dir / "results.json").read_text())
    assert {r["strategy"]: r["status"] for r in results if r["family"] != "baseline"} == {"chain": "done",
                                                                                           "zero-shot": "done"}
    assert results[0]["cost"]["details"]["steps"] == ["facts", "label"]


def test_trace_shows_every_step(run_dir):
    row = first_prediction(run_dir, "chain")
    result = runner.invoke(app, ["trace", str(run_dir), "chain", row["example_id"]])
    assert result.exit_code == 0, (result.output, result.exception)
    text = result.stdout
    for needle in (f"example {row['example_id']}", "strategy chain", row["input"], "target", row["target"],
                   "step 1: facts", "step 2: label", f"Key facts of: {row['input']}",
                   f"Facts: {row['trace'][0]['output']}",
                   "Answer with exactly one of: delivery, refund.", "label probabilities"):
        assert needle in text, needle
    assert "[delivery]" in text or "[refund]" in text  # user text is printed as is, not as rich markup


def test_trace_of_a_strategy_without_steps(run_dir):
    row = first_prediction(run_dir, "zero-shot")
    result = runner.invoke(app, ["trace", str(run_dir), "zero-shot", row["example_id"]])
    assert result.exit_code == 0, result.output
    assert "no trace" in result.stdout and row["output"] in result.stdout


def fails_cleanly(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error:"), result.stderr
    return errors[0]


def test_unknown_run_strategy_or_example_is_one_line(run_dir, tmp_path):
    row = first_prediction(run_dir, "chain")
    line = fails_cleanly(["trace", str(run_dir), "chian", row["example_id"]])
    assert "has no strategy 'chian' (strategies: chain, zero-shot, majority-baseline, random-baseline)" in line
    line = fails_cleanly(["trace", str(run_dir), "chain", "nope"])
    assert "strategy 'chain' has no prediction for example 'nope' (example ids: " in line
    line = fails_cleanly(["trace", str(tmp_path), "chain", row["example_id"]])
    assert "not a tunewise run folder" in line
