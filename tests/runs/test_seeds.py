"""`seeds: N` / `--seeds N`: every strategy runs at N seeds on the same test split; results.json carries the
spread (mean, std, range) on each strategy's own row; the leaderboard and the HTML report show it."""

from __future__ import annotations

import json
import statistics

from typer.testing import CliRunner

from tunewise.cli import app
from tunewise.config import parse_config
from tunewise.report.html import build_report
from tunewise.report.seeds import seed_spread
from tunewise.runs import Run


def test_seeds_make_n_cells_per_strategy_at_consecutive_seeds(tmp_path, sentiment_csv):
    run = Run.create(parse_config({"task": {"source": str(sentiment_csv)}, "model": "fake", "seed": 7, "seeds": 3,
                                   "strategies": ["zero-shot", {"name": "few-shot", "k": 2}],
                                   "output_dir": str(tmp_path)}))
    try:
        cells = run.cells()
    finally:
        run.close()
    assert [(c.id, c.seed) for c in cells] == [
        ("zero-shot", 7), ("zero-shot@seed=8", 8), ("zero-shot@seed=9", 9),
        ("few-shot", 7), ("few-shot@seed=8", 8), ("few-shot@seed=9", 9)]
    assert all(c.train_size is None for c in cells)


def test_cli_seeds_store_n_results_per_strategy_and_the_spread(tmp_path, sentiment_csv):
    result = CliRunner().invoke(app, ["run", "--task", str(sentiment_csv), "--model", "fake", "--strategies",
                                      "zero-shot,few-shot", "--seeds", "2", "--output", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    assert "across seeds (mean ± std)" in result.output and "(2 seeds)" in result.output
    (run_dir,) = (tmp_path / "runs").iterdir()
    rows = json.loads((run_dir / "results.json").read_text())
    by_id = {r["strategy"]: r for r in rows}
    assert {"zero-shot", "zero-shot@seed=1", "few-shot", "few-shot@seed=1"} <= set(by_id)
    for sid in ("zero-shot", "few-shot"):
        spread = by_id[sid]["seed_spread"]
        values = [by_id[i]["metrics"][spread["metric"]]["value"] for i in (sid, f"{sid}@seed=1")]
        assert spread["n"] == 2 and spread["seeds"] == [0, 1] and spread["values"] == values
        assert spread["mean"] == statistics.fmean(values) and spread["std"] == statistics.stdev(values)
        assert "seed_spread" not in by_id[f"{sid}@seed=1"]  # the spread sits on the strategy's own row
    html = build_report(run_dir).html.read_text(encoding="utf-8")
    assert "(2 seeds)" in html


def _row(sid, value, seed, family="prompting", train_size=None, status="done"):
    return {"strategy": sid, "family": family, "status": status, "seed": seed, "train_size": train_size,
            "metrics": {"primary": "accuracy", "accuracy": {"value": value}}}


def test_seed_spread_counts_only_the_strategys_seed_cells_at_the_full_training_split():
    rows = [_row("lora", 0.80, 0), _row("lora@seed=1", 0.90, 1), _row("lora@seed=2", 0.70, 2),
            _row("lora@n=64", 0.10, 0, train_size=64), _row("lora@seed=3", 0.0, 3, status="failed"),
            _row("zero-shot", 0.5, 0), _row("majority-baseline", 0.5, 0, family="baseline")]
    spread = seed_spread(rows, run_seed=0)
    assert set(spread) == {"lora"}  # zero-shot ran at one seed only; baselines have no seeds
    s = spread["lora"]
    assert s["seeds"] == [0, 1, 2] and s["values"] == [0.80, 0.90, 0.70] and s["n"] == 3
    assert abs(s["mean"] - 0.80) < 1e-12 and abs(s["std"] - 0.10) < 1e-12 and abs(s["range"] - 0.20) < 1e-12
