"""`tunewise run --pilot`: fine-tuning at pilot sizes on tiny models, learning curves, predictions at the full
size in results.json and the verdict; and the crossover headline of `tunewise curve` on a synthetic case."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from conftest import make_rows, write_csv
from tunewise.cli import app
from tunewise.errors import UserError
from tunewise.evaluation.learning_curve import inverse_power_law
from tunewise.pilot import pilot_sizes
from tunewise.report.analysis import analyze
from tunewise.report.crossover import crossover_lines, crossovers
from tunewise.report.html import build_report


def test_pilot_run_predicts_the_full_size(tmp_path, tiny_encoder, tiny_causal):
    data = write_csv(tmp_path / "reviews.csv", make_rows(40))
    cfg = {"task": {"source": str(data), "test_size": 0.25}, "model": tiny_causal, "encoder": tiny_encoder,
           "strategies": ["zero-shot", {"name": "head-only", "epochs": 1, "learning_rate": 5e-3}],
           "output_dir": str(tmp_path / "runs"), "seed": 0}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    result = CliRunner().invoke(app, ["run", str(path), "--pilot", "0.5"])
    assert result.exit_code == 0, result.output
    run_dir = Path(result.output.strip().splitlines()[-1].split("run folder: ")[1])
    splits = json.loads((run_dir / "splits.json").read_text())
    full = len(splits["train"])
    pilot = json.loads((run_dir / "pilot.json").read_text())
    assert pilot["full_size"] == full and max(pilot["sizes"]) == int(0.5 * full) and len(pilot["sizes"]) >= 3
    results = json.loads((run_dir / "results.json").read_text())
    sized = {r["strategy"] for r in results if r["strategy"].startswith("head-only@n=")}
    assert sized == {f"head-only@n={n}" for n in pilot["sizes"]}  # trained at the pilot sizes only
    assert "head-only" not in {r["strategy"] for r in results if r["status"] == "done"}  # never at full size
    (predicted,) = [r for r in results if r["status"] == "predicted"]
    assert predicted["strategy"] == "head-only" and predicted["train_size"] == full
    q = predicted["metrics"]["accuracy"]
    assert 0 <= q["low"] <= q["value"] <= q["high"] <= 1
    assert next(r for r in results if r["strategy"] == "zero-shot")["status"] == "done"  # prompting: once
    rec = analyze(run_dir).recommendation
    assert rec.reasons[0].startswith(f"At {full:,} training examples head-only is expected to reach ")
    assert "zero-shot stays at" in rec.reasons[0] and "the pilot cost" in rec.reasons[0]
    assert any("predicted from a pilot" in c for c in rec.caveats)
    assert "verdict" in result.output and "predicted" in result.output
    curve = json.loads((run_dir / "curve.json").read_text())
    assert sorted(p["size"] for p in curve["points"]) == pilot["sizes"]
    html = build_report(run_dir).html.read_text(encoding="utf-8")  # the report renders the predicted strategy
    assert "is expected to reach" in html


def test_pilot_without_fine_tuning_is_a_user_error(tmp_path, tiny_causal):
    data = write_csv(tmp_path / "reviews.csv", make_rows(20))
    result = CliRunner().invoke(app, ["run", "--task", str(data), "--model", tiny_causal, "--strategies",
                                      "zero-shot", "--pilot", "0.5", "--output", str(tmp_path / "runs")])
    assert result.exit_code == 2
    assert "no fine-tuning strategy" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(app, ["run", "--task", str(data), "--pilot", "1.5"])
    assert result.exit_code == 2 and "pilot" in result.output


def test_pilot_too_small_is_a_user_error():
    assert pilot_sizes(1000, 0.2) == [8, 23, 68, 200]  # ratio (200 / 8) ** (1 / 3)
    with pytest.raises(UserError, match="raise --pilot"):
        pilot_sizes(40, 0.2)


def test_crossover_on_a_synthetic_curve():
    a, b, c = 0.9, 2.0, 0.5  # 0.9 - 2 / sqrt(n): reaches the prompt's 0.7 at n = 100
    points = [{"strategy": "lora", "size": n, "train_examples": n, "value": float(inverse_power_law(n, a, b, c))}
              for n in (16, 32, 64)]
    points += [{"strategy": "head-only", "size": n, "train_examples": n, "value": 0.55 + 0.001 * i}
               for i, n in enumerate((16, 32, 64))]
    curve = {"metric": "accuracy", "points": points,
             "baselines": [{"strategy": "zero-shot", "family": "prompting", "value": 0.6},
                           {"strategy": "few-shot", "family": "prompting", "value": 0.7},
                           {"strategy": "majority-baseline", "family": "baseline", "value": 0.95}]}
    (first, second) = crossovers(curve)
    assert first["strategy"] == "lora" and first["prompt"] == "few-shot"
    assert first["examples"] == pytest.approx(100, rel=1e-3)
    assert second["strategy"] == "head-only" and second["examples"] is None
    lines = crossover_lines(curve)
    assert lines[0] == ("lora is predicted to overtake the best prompt, few-shot (70.0%) at about 100 training "
                        "examples (beyond the measured 16–64; inverse power law fit).")
    assert "not predicted to overtake" in lines[1]
