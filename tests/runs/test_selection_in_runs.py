"""A run chooses settings on validation within `selection:` and shows what it chose: results.json
(cost.details.selection), `tunewise show` and the HTML report, with the budget both families had."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tunewise.cli import app
from tunewise.config import parse_config
from tunewise.errors import UserError
from tunewise.report.html import build_report
from tunewise.runs import Run


def _run(tmp_path, data, **kw):
    config = parse_config({"task": {"source": str(data), "test_size": 0.25}, "model": "fake", "encoder": "fake",
                           "strategies": ["zero-shot"], "output_dir": str(tmp_path / "runs"), "seed": 3, **kw})
    run = Run.create(config)
    run.write_splits()
    run.write_baselines()
    assert not run.execute(run.cells())
    run.finish()
    run.close()
    return run.dir


def test_chosen_settings_reach_results_show_and_the_report(tmp_path, sentiment_csv):
    run_dir = _run(tmp_path, sentiment_csv, selection={"budget": 2, "examples": 5})
    result = next(r for r in json.loads((run_dir / "results.json").read_text()) if r["strategy"] == "zero-shot")
    sel = result["cost"]["details"]["selection"]
    assert sel["budget"] == 2 and 0 < sel["examples"] <= 5 and len(sel["tried"]) == 2
    assert set(sel["chosen"]) == {"calibrate", "instruction"}  # the fake has no local weights: no plain format
    shown = CliRunner().invoke(app, ["show", str(run_dir)])
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.output.split())
    assert "each strategy tried at most 2 candidate settings" in text and "zero-shot: chose calibrate=" in text
    html = build_report(run_dir).html.read_text()
    assert "Settings chosen on validation" in html and "chose calibrate=" in html


def test_budget_one_runs_every_strategy_as_written_and_says_so(tmp_path, sentiment_csv):
    run_dir = _run(tmp_path, sentiment_csv, selection={"budget": 1})
    result = next(r for r in json.loads((run_dir / "results.json").read_text()) if r["strategy"] == "zero-shot")
    assert "selection" not in result["cost"]["details"]
    html = build_report(run_dir).html.read_text()
    assert "every strategy ran as written" in html


def test_a_mistyped_selection_key_names_the_key_and_the_fix():
    with pytest.raises(UserError, match=r"selection\.budgett: unknown key; did you mean 'budget'"):
        parse_config({"selection": {"budgett": 3}})
    with pytest.raises(UserError, match=r"selection\.budget"):
        parse_config({"selection": {"budget": 0}})
