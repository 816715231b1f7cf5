"""Trivial baselines in every run, the primary metric fit for imbalance, and a verdict that refuses a constant.

Runs use the fake backend (no model): its zero-shot answers the label whose word occurs in the input, so the
data decide whether a strategy is a constant (every input says 'good') or has learned something.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import write_csv
from tunewise.cli import app
from tunewise.config import ConstraintsConfig
from tunewise.data import Example, Task
from tunewise.evaluation.baselines import baselines, majority_label
from tunewise.report.analysis import analyze
from tunewise.report.cost_model import StrategyCost
from tunewise.report.html import build_report
from tunewise.report.recommend import TrivialCheck, recommend
from tunewise.store import Store

NOUNS = ["product", "service", "delivery", "screen", "battery", "staff", "price", "packaging", "app"]


def imbalanced_csv(path: Path, n: int = 200, minority: float = 0.15, telling: bool = False) -> Path:
    """'good' for 85% of rows. Every input says 'good' unless `telling`, when the 'bad' rows say 'bad'."""
    rng = random.Random(0)
    rows = []
    for i in range(n):
        label = "bad" if i < minority * n else "good"
        word = label if telling else "good"
        rows.append({"text": f"the {rng.choice(NOUNS)} was {word} {i}", "label": label})
    rng.shuffle(rows)
    return write_csv(path, rows)


def run(tmp_path: Path, data: Path, *extra: str) -> tuple[Path, str]:
    result = CliRunner().invoke(app, ["run", "--task", str(data), "--model", "fake", "--strategies",
                                      "zero-shot,few-shot", "--output", str(tmp_path / "runs"), *extra])
    assert result.exit_code == 0, result.output
    return Path(result.output.strip().splitlines()[-1].split("run folder: ")[1]), result.output


def _task(train_targets, test_n=10, kind="classification"):
    train = [Example(str(i), f"text {i}", t) for i, t in enumerate(train_targets)]
    test = [Example(f"t{i}", f"question {i}", "x") for i in range(test_n)]
    return Task("t", kind, train, [], test, "Do it.", sorted(set(train_targets)) if kind == "classification" else [])


def test_baselines_come_from_the_training_split_and_are_seeded():
    task = _task(["b"] * 7 + ["a"] * 3, test_n=400)
    assert majority_label(task) == "b"
    majority, rand = baselines(task, seed=3)
    assert majority.id == "majority-baseline" and set(majority.outputs) == {"b"}
    assert majority.description == "always answering 'b'"
    assert 0.6 < rand.outputs.count("b") / 400 < 0.8  # drawn in the training proportions
    assert rand.outputs == baselines(task, seed=3)[1].outputs != baselines(task, seed=4)[1].outputs
    assert majority_label(_task(["b", "a"])) == "a"  # a tie goes to the first label in the task's order
    assert baselines(Task("t", "classification", [], [], task.test, "", ["a", "b"]), 0) == []


def test_generation_keeps_the_better_of_empty_answer_and_echo_on_the_training_split():
    echo = Task("t", "generation", [Example("1", "Paris", "Paris"), Example("2", "blue whale", "whale")], [],
                [Example("3", "q", "r")], "Extract.")
    assert [b.id for b in baselines(echo, 0)] == ["echo-baseline"] and baselines(echo, 0)[0].outputs == ["q"]
    math = Task("t", "generation", [Example("1", "1 + 1", "2")], [], [Example("3", "q", "r")], "Add.")
    assert [b.id for b in baselines(math, 0)] == ["empty-baseline"]


def test_constant_predictor_on_imbalanced_data_is_refused(tmp_path):
    run_dir, output = run(tmp_path, imbalanced_csv(tmp_path / "const.csv"))
    assert "majority-baseline" in output and "random-baseline" in output and "baseline" in output
    assert "ranked on macro-F1" in output and "'good' holds 85%" in output
    a = analyze(run_dir)
    assert a.metric == "macro_f1" and set(a.baselines) == {"majority-baseline", "random-baseline"}
    zero = next(r for r in a.done if r["strategy"] == "zero-shot")["metrics"]
    majority = next(r for r in a.done if r["strategy"] == "majority-baseline")["metrics"]
    assert zero["accuracy"]["value"] == majority["accuracy"]["value"] == pytest.approx(0.85)  # wins on accuracy
    rec = a.recommendation
    assert rec.choice is None
    assert rec.headline.startswith("No strategy beats always answering 'good' on macro-F1")
    assert rec.rejected["zero-shot"].startswith("no better than always answering 'good' (macro-F1 45.9% vs 45.9%")
    text = " ".join(rec.reasons)
    assert "What would help" in text and "A larger model: this run used fake" in text and "fails on 'bad'" in text
    assert [t["strategy"] for t in a.per_class] == ["zero-shot", "few-shot"]
    assert a.per_class[0]["fails"] == ["'bad' (recall 0%, precision 0%)"]
    assert not {c.strategy for c in a.costs} & set(a.baselines)  # baselines are not priced nor on the front
    html = build_report(run_dir).html.read_text(encoding="utf-8")
    assert "No strategy beats always answering &#39;good&#39; on macro-F1" in html
    assert 'id="per-class"' in html and "Decided on macro-F1" in html and 'class="baseline"' in html
    assert ">recommended<" not in html
    csv_text = (run_dir / "results.csv").read_text(encoding="utf-8")
    assert "majority-baseline,majority-baseline,baseline,done,macro_f1" in csv_text


def test_a_strategy_that_learned_the_task_is_recommended_over_the_baselines(tmp_path):
    run_dir, _ = run(tmp_path, imbalanced_csv(tmp_path / "telling.csv", telling=True))
    a = analyze(run_dir)
    assert a.metric == "macro_f1" and a.trivial["zero-shot"]["beats"]
    rec = a.recommendation
    assert rec.choice in ("zero-shot", "few-shot") and rec.choice not in a.baselines
    assert any("significantly better than the trivial baselines: always answering 'good'" in r for r in rec.reasons)


def test_metric_option_overrides_and_the_constant_is_still_refused(tmp_path):
    config = tmp_path / "exp.yaml"
    config.write_text(f"task: {{source: {imbalanced_csv(tmp_path / 'c.csv')}}}\nmodel: fake\nmetric: accuracy\n"
                      f"strategies: [zero-shot]\noutput_dir: {tmp_path / 'runs'}\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["run", str(config)])
    assert result.exit_code == 0, result.output
    a = analyze(next((tmp_path / "runs").iterdir()))
    assert a.metric == "accuracy" and a.metric_reason == "set by `metric: accuracy` in the config"
    assert a.recommendation.choice is None  # 85% accuracy is what always answering 'good' scores


def test_balanced_task_keeps_accuracy(tmp_path, sentiment_csv):
    a = analyze(run(tmp_path, sentiment_csv)[0])
    assert a.metric == "accuracy" and "balanced enough" in a.metric_reason


def test_baselines_are_stored_once_across_resume(tmp_path):
    run_dir, _ = run(tmp_path, imbalanced_csv(tmp_path / "const.csv"))
    store = Store(run_dir / "tunewise.db")
    run_id = store.run()["id"]
    before = {r["strategy"]: r["finished_at"] for r in store.results(run_id) if r["family"] == "baseline"}
    store.close()
    again = CliRunner().invoke(app, ["run", "--resume", str(run_dir)])
    assert again.exit_code == 0, again.output
    store = Store(run_dir / "tunewise.db")
    after = {r["strategy"]: r["finished_at"] for r in store.results(run_id) if r["family"] == "baseline"}
    assert after == before and len(store.predictions(run_id, "majority-baseline")) == 60


def test_wrong_kind_of_metric_fails_before_any_strategy(tmp_path):
    config = tmp_path / "exp.yaml"
    config.write_text(f"task: {{source: {imbalanced_csv(tmp_path / 'c.csv')}}}\nmodel: fake\nmetric: token_f1\n"
                      f"strategies: [zero-shot]\noutput_dir: {tmp_path / 'runs'}\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["run", str(config)])
    assert result.exit_code == 2 and "metric: 'token_f1' does not apply to classification" in result.output


def _cost(name, quality, family="prompting"):
    return StrategyCost(name, family, quality, quality - 0.05, quality + 0.05, 0.0, 0.1, 0.01, "CPU")


def test_recommend_rules_out_strategies_no_better_than_the_baselines():
    check = TrivialCheck(
        {"lora": {"beats": False, "baseline": "majority-baseline", "value": 0.47, "baseline_value": 0.46,
                  "pvalue": 0.4, "method": "paired bootstrap on macro_f1"},
         "few-shot": {"beats": True, "baseline": "random-baseline", "value": 0.70, "baseline_value": 0.5,
                      "pvalue": 0.001, "method": "paired bootstrap on macro_f1"}},
        {"majority-baseline": "always answering 'ok'", "random-baseline": "guessing"}, ["more data"],
        {"majority-baseline": 0.46, "random-baseline": 0.5})
    rec = recommend([_cost("lora", 0.47, "finetuning"), _cost("few-shot", 0.70)], ConstraintsConfig(),
                    {("lora", "few-shot"): 0.001, ("few-shot", "lora"): 0.001}, 300, "macro_f1", trivial=check)
    assert rec.choice == "few-shot"
    assert rec.headline == ("Use few-shot (prompt engineering): it is the only strategy significantly better than "
                            "the trivial baselines.")
    assert rec.rejected["lora"] == ("not significantly better than always answering 'ok' (macro-F1 47.0% vs 46.0%, "
                                    "p = 0.400)")
    assert any("always answering 'ok' (46.0%), guessing (50.0%)" in r for r in rec.reasons)
    check.verdicts["few-shot"]["beats"] = False
    none = recommend([_cost("lora", 0.47, "finetuning"), _cost("few-shot", 0.70)], ConstraintsConfig(), {}, 300,
                     "macro_f1", trivial=check)
    assert none.choice is None and none.headline.startswith("No strategy beats guessing on macro-F1")
    assert "What would help — more data" in none.reasons


def test_what_would_help_comes_from_the_runs_measurements(tmp_path):
    from types import SimpleNamespace

    from tunewise.report.diagnose import looks_like_codes, what_would_help

    assert looks_like_codes(["0", "1"]) and looks_like_codes(["LABEL_0", "LABEL_1"]) and looks_like_codes(["A", "B"])
    assert not looks_like_codes(["acceptable", "unacceptable"])
    tuned = {"strategy": "lora", "family": "finetuning", "status": "done",
             "metrics": {"per_class": {"0": {"precision": 0.7, "recall": 1.0, "f1": 0.82, "support": 70},
                                       "1": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 30}}},
             "cost": {"details": {"collapse": {"collapsed": True, "label": "0", "share": 0.99,
                                               "tried": [{"remedy": "balanced sampling"}]}}}}
    curve = {"points": [{"strategy": "lora", "train_examples": 100, "value": 0.40},
                        {"strategy": "lora", "train_examples": 400, "value": 0.46}]}
    a = SimpleNamespace(done=[tuned], results=[tuned], curve=curve, kind="classification", labels=["0", "1"],
                        label_names={}, run_dir=tmp_path, model_of=lambda r: "smollm2-135m-instruct")
    hints = what_would_help(a, "lora")
    assert hints[0] == ("More training examples: lora's learning curve still rises (40.0% at 100 examples, 46.0% "
                        "at 400).")
    assert "lora's training collapsed: it answers '0' for 99% of the validation examples, even after trying " \
           "balanced sampling" in hints[1]
    assert "this run used smollm2-135m-instruct" in hints[2] and "look like codes" in hints[3]
    assert "fails on '1' (recall 0%, precision 0%)" in hints[4]
    assert "task.label_names" in hints[3]
    a.label_names = {"0": "unacceptable", "1": "acceptable"}  # named labels: no hint about codes
    assert not any("look like codes" in h for h in what_would_help(a, "lora"))
    a.curve = None
    assert what_would_help(a, "lora")[0].startswith("More training examples may help: measure it with `tunewise curve")
