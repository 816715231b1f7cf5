"""`tunewise report` / `compare` on run folders built straight in the store (no models): sections, CSV, MLflow."""

from __future__ import annotations

import csv
import json
import random
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tunewise.cli import app
from tunewise.config import config_to_dict, parse_config
from tunewise.data import Example, Task
from tunewise.evaluation.metrics import evaluate, per_example_score
from tunewise.store import Store

LABELS = ["negative", "positive"]
SPEC = [("zero-shot", "prompting", 0.60), ("few-shot", "prompting", 0.80), ("lora", "finetuning", 0.90)]
ENV = {"python": "3.11", "torch": "2.x", "transformers": "5.x", "cpu_count": 2, "cuda": None, "device": "cpu"}


def make_run(root: Path, name: str = "20260101-000000-toy", n: int = 60, spec=SPEC, kind: str = "classification",
             seed: int = 0, failed: bool = False) -> Path:
    cfg = parse_config({"strategies": [s for s, _, _ in spec] or ["zero-shot"], "output_dir": str(root), "seed": seed})
    run_dir = root / name
    run_dir.mkdir(parents=True)
    store = Store(run_dir / "tunewise.db")
    store.create_run(name, config_to_dict(cfg), ENV)
    labels = LABELS if kind == "classification" else []
    examples = [Example(str(i), f"review {i} <b>bold</b> & more", LABELS[i % 2] if labels else f"answer {i}")
                for i in range(n)]
    task = Task("toy", kind, [], [], examples, "Classify.", labels)
    rng = random.Random(seed)
    for sid, family, acc in spec:
        store.start_result(name, sid, sid, family)
        right = set(rng.sample(range(n), round(acc * n)))
        outputs = [e.target if i in right else (LABELS[1 - i % 2] if labels else "wrong")
                   for i, e in enumerate(examples)]
        store.add_predictions(name, sid, [
            {"example_id": e.id, "position": i, "input": e.input, "target": e.target, "output": o,
             "score": per_example_score(task, e, o), "prompt_tokens": 40 if family == "prompting" else 20,
             "completion_tokens": 2, "latency_s": 0.1 if family == "prompting" else 0.01,
             "scores": {o: 0.8, next(x for x in LABELS if x != o): 0.2} if labels and sid != "zero-shot" else None,
             "trace": [{"role": "user", "content": f"<prompt {i}>"}] if sid == "few-shot" else None}
            for i, (e, o) in enumerate(zip(examples, outputs, strict=True))])
        cost = {"trainable_params": 1000 if family == "finetuning" else 0, "total_params": 100000,
                "trainable_share": 0.01 if family == "finetuning" else 0,
                "train_seconds": 3600.0 if family == "finetuning" else 0.0, "train_tokens": 5000,
                "prompt_tokens_per_example": 40, "completion_tokens_per_example": 2,
                "seconds_per_example": 0.1 if family == "prompting" else 0.01, "peak_rss_mb": 500.0,
                "artifact_mb": 2.0, "details": {}}
        if family == "finetuning":
            cost["details"]["forgetting"] = {"ppl_before": 10.0, "ppl_after": 11.0, "ppl_change_pct": 10.0}
        store.finish_result(name, sid, evaluate(task, examples, outputs, n_boot=50), cost, None)  # macro-F1 is slow
    for step in range(1, 11):
        store.log_train(name, "lora", {"step": step, "epoch": step / 5, "loss": 2.0 / step})
    store.log_train(name, "lora", {"step": 10, "epoch": 2.0, "eval_loss": 0.4})
    if failed:
        store.start_result(name, "full-finetune", "full-finetune", "finetuning")
        store.fail_result(name, "full-finetune", "RuntimeError: out of memory")
    store.set_run_status(name, "done")
    store.close()
    (run_dir / "splits.json").write_text(json.dumps({"kind": kind, "test": [e.id for e in examples]}))
    return run_dir


def report(*args: str):
    return CliRunner().invoke(app, ["report", *args])


def test_report_has_every_section_and_is_self_contained(tmp_path):
    run_dir = make_run(tmp_path, failed=True)
    result = report(str(run_dir))
    assert result.exit_code == 0, result.output
    assert "verdict Use lora" in result.output
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    for part in ('id="verdict"', 'id="leaderboard-table"', 'id="chart-pareto"', 'id="chart-breakeven"',
                 'id="training"', 'id="confusion"', 'id="disagreements"', 'id="config"', "Environment",
                 "Prices (USD)", "McNemar", "cost per 1,000 queries", "latency per query", "ECE", 'id="forgetting"',
                 "perplexity on general text went from 10.00 to 11.00"):
        assert part in html, part
    assert html.index('id="verdict"') < html.index('id="leaderboard"')  # verdict first
    assert html.count("<svg") >= 3 and "full-finetune" in html and "out of memory" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)  # nothing fetched from the network
    assert "@import" not in html and "url(" not in html
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; more" in html and "<b>bold</b>" not in html  # autoescaped
    assert re.search(r"&lt;prompt \d+&gt;", html)  # traces are shown, escaped


def test_results_csv_is_written_next_to_results_json(tmp_path):
    run_dir = make_run(tmp_path)
    assert report(str(run_dir)).exit_code == 0
    with open(run_dir / "results.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["strategy"] for r in rows] == ["zero-shot", "few-shot", "lora"]
    assert sum(r["recommended"] == "True" for r in rows) == 1
    lora = rows[2]
    assert float(lora["value"]) == pytest.approx(0.9) and lora["metric"] == "accuracy"
    assert float(lora["one_off_usd"]) == pytest.approx(0.10)  # 3600 s on the default $0.10/hour CPU
    assert lora["vs_best_pvalue"] == "" and rows[0]["vs_best_test"].startswith("McNemar")
    assert float(rows[1]["ece"]) >= 0


def test_settings_file_overrides_constraints_and_prices(tmp_path):
    run_dir = make_run(tmp_path)
    settings = tmp_path / "settings.yaml"
    settings.write_text("constraints:\n  monthly_queries: 250\n  task_changes_often: true\n"
                        "prices:\n  cpu_per_hour: 1.0\n", encoding="utf-8")
    assert report(str(run_dir), "--settings", str(settings)).exit_code == 0
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "250 queries/month" in html and "task changes often" in html and "$1.00/hour" in html
    settings.write_text("constraints:\n  min_quality: 90\n", encoding="utf-8")
    bad = report(str(run_dir), "--settings", str(settings))
    assert bad.exit_code == 2 and "constraints.min_quality" in bad.output and "Traceback" not in bad.output
    settings.write_text("budget: 3\n", encoding="utf-8")
    bad = report(str(run_dir), "--settings", str(settings))
    assert bad.exit_code == 2 and "budget" in bad.output


def test_report_on_a_folder_that_is_not_a_run(tmp_path):
    result = report(str(tmp_path))
    assert result.exit_code == 2 and "not a tunewise run folder" in result.output


def test_generation_run_and_curve_chart(tmp_path):
    run_dir = make_run(tmp_path, kind="generation")
    (run_dir / "curve.json").write_text(json.dumps({"metric": "exact_match", "points": [
        {"strategy": "lora", "size": 8, "train_examples": 8, "value": 0.5, "low": 0.4, "high": 0.6, "run": "x"},
        {"strategy": "lora", "size": None, "train_examples": 40, "value": 0.9, "low": 0.8, "high": 0.95,
         "run": "."}], "baselines": [{"strategy": "few-shot", "value": 0.8, "low": 0.7, "high": 0.9}]}))
    assert report(str(run_dir)).exit_code == 0
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    assert 'id="chart-curve"' in html and "paired bootstrap" in html and 'id="confusion"' not in html
    assert "exact_match" in html


def test_compare_two_runs(tmp_path):
    a = make_run(tmp_path, "20260101-000000-toy")
    b = make_run(tmp_path, "20260102-000000-toy", seed=1, spec=[("few-shot", "prompting", 0.70),
                                                                 ("lora", "finetuning", 0.95)])
    result = CliRunner().invoke(app, ["compare", str(a), str(b)])
    assert result.exit_code == 0, result.output
    out = result.output
    for word in ("zero-shot", "few-shot", "lora", "not run / failed", "-10.0 points", "+5.0 points", "p =",
                 "A verdict", "B verdict", "seed: 0 → 1", "zero-shot removed"):
        assert word in out, word


def test_mlflow_logging_to_a_local_file_store(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps the file store for tests like this
    run_dir = make_run(tmp_path)
    uri = (tmp_path / "mlruns").as_uri()
    result = report(str(run_dir), "--mlflow-uri", uri)
    assert result.exit_code == 0, result.output
    assert "mlflow run:" in result.output
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["tunewise-toy"], output_format="list")
    names = {r.info.run_name for r in runs}
    assert {"20260101-000000-toy", "zero-shot", "few-shot", "lora"} <= names
    lora = next(r for r in runs if r.info.run_name == "lora")
    assert lora.data.metrics["value"] == pytest.approx(0.9) and "one_off_usd" in lora.data.metrics
    assert lora.data.params["rank"] == "16"
    parent = next(r for r in runs if r.info.run_name == "20260101-000000-toy")
    assert parent.data.tags["tunewise.recommended"] == "lora"
    artifacts = Path(parent.info.artifact_uri.removeprefix("file://"))
    assert (artifacts / "report.html").is_file() and (artifacts / "results.csv").is_file()


def test_report_with_nothing_or_one_thing_finished(tmp_path):
    none = make_run(tmp_path, "20260101-000000-none", spec=[], failed=True)
    result = report(str(none))
    assert result.exit_code == 0 and "nothing to recommend" in result.output
    assert "out of memory" in (none / "report.html").read_text(encoding="utf-8")
    one = make_run(tmp_path, "20260101-000000-one", spec=[("lora", "finetuning", 0.9)])
    result = report(str(one))
    assert result.exit_code == 0 and "only strategy that finished" in result.output
    assert "significantly better than every" not in (one / "report.html").read_text(encoding="utf-8")
