"""A run whose labels are stored as codes and named in the config serves what it measured: the served strategies
(a prompt and a LoRA adapter over the shared base) score the names and answer in the stored codes, exactly as
the run's own predictions did."""

from __future__ import annotations

import pytest

from _serving import stored, write_config
from conftest import make_rows, write_csv


@pytest.mark.parametrize("strategy", ["zero-shot", "lora"])
def test_served_predictions_match_the_runs_with_named_labels(strategy, tmp_path, tiny_causal, tiny_encoder):
    from typer.testing import CliRunner

    from _serving import run_folder
    from tunewise.cli import app
    from tunewise.serve.hub import ModelHub

    code = {"negative": "0", "positive": "1"}
    data = write_csv(tmp_path / "coded.csv", [{**r, "label": code[r["label"]]} for r in make_rows(8)])
    entry = strategy if strategy == "zero-shot" else {"name": "lora", "epochs": 1, "rank": 4, "batch_size": 8,
                                                      "forgetting": False, "early_stopping_patience": None}
    config = write_config(tmp_path / "exp.yaml", task={"source": str(data), "label_names": ["negative", "positive"]},
                          model=tiny_causal, encoder=tiny_encoder, strategies=[entry],
                          output_dir=str(tmp_path / "runs"), seed=1)
    result = CliRunner().invoke(app, ["run", str(config)])
    assert result.exit_code == 0, result.output
    run_dir = run_folder(result.output)
    rows = stored(run_dir, strategy)
    hub = ModelHub(run_dir, [strategy], "cpu", log=lambda line: None)
    served = hub.predict(hub.entry(strategy), [r["input"] for r in rows]).result()
    assert [p.output for p in served] == [r["output"] for r in rows]
    assert {p.output for p in served} <= {"0", "1"}
    assert all(set(p.scores) == {"0", "1"} for p in served if p.scores)
