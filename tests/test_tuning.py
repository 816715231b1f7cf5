"""k-fold cross-validation and Optuna search: fold counts, trial budgets, spaces, errors, CLI."""

from __future__ import annotations

import json
import sys

import pytest
from typer.testing import CliRunner

from tunewise.cli import app
from tunewise.config import ExperimentConfig, TaskConfig
from tunewise.errors import UserError
from tunewise.tuning import check_space, cross_validate, folds, load_space, search


def _config(csv, strategies, **kw) -> ExperimentConfig:
    return ExperimentConfig(task=TaskConfig(source=str(csv)), model="fake", strategies=strategies, **kw)


def test_cross_validation_returns_k_scores(sentiment_csv):
    seen = []
    result = cross_validate(_config(sentiment_csv, ["zero-shot"]), "zero-shot", k=3,
                            on_fold=lambda i, s: seen.append(i))
    assert len(result["scores"]) == 3 and seen == [0, 1, 2]
    assert result["metric"] == "accuracy" and all(0 <= s <= 1 for s in result["scores"])
    assert result["mean"] == pytest.approx(sum(result["scores"]) / 3)
    assert result["std"] >= 0


def test_cross_validation_of_a_fine_tuning_strategy(sentiment_csv, tiny_encoder):
    cfg = _config(sentiment_csv, [{"name": "head-only", "epochs": 1}], encoder=tiny_encoder)
    result = cross_validate(cfg, "head-only", k=2)
    assert len(result["scores"]) == 2


def test_folds_partition_the_pool_and_stratify():
    from tunewise.data import Example

    pool = [Example(str(i), f"x{i}", "a" if i % 3 else "b") for i in range(30)]
    splits = folds(pool, "classification", 5, seed=0)
    held = sorted(j for _, h in splits for j in h)
    assert held == list(range(30))  # every example held out exactly once
    for train_idx, held_idx in splits:
        assert not set(train_idx) & set(held_idx)
        assert sum(pool[j].target == "b" for j in held_idx) == 2  # 10 b's spread over 5 folds


def test_search_respects_its_trial_budget(sentiment_csv):
    trials = []
    result = search(_config(sentiment_csv, [{"name": "few-shot", "k": 2}]), "few-shot", n_trials=4,
                    space={"k": [1, 2, 4], "selection": ["balanced", "random"]}, on_trial=trials.append)
    assert result["n_trials"] == 4 and len(result["trials"]) == 4 and len(trials) == 4
    assert set(result["best_params"]) == {"k", "selection"}
    assert result["best_value"] == max(t["value"] for t in result["trials"])


def test_search_with_the_default_space_trains(sentiment_csv, tiny_encoder):
    cfg = _config(sentiment_csv, [{"name": "head-only", "epochs": 1}], encoder=tiny_encoder)
    result = search(cfg, "head-only", n_trials=2)
    assert result["n_trials"] == 2 and set(result["best_params"]) == {"learning_rate"}
    assert all(1e-5 <= t["params"]["learning_rate"] <= 1e-2 for t in result["trials"])


def test_search_space_and_input_errors(sentiment_csv):
    from tunewise.registry import get_strategy

    lora = get_strategy("lora")
    assert check_space(None, lora) == {"learning_rate": {"low": 1e-5, "high": 1e-2, "log": True},
                                       "rank": {"choices": [4, 8, 16, 32]}}
    for bad, match in [({"nope": [1]}, "no option 'nope'"), ({"rank": {"low": 8, "high": 4}}, "low < high"),
                       ({"learning_rate": {"low": 0, "high": 1, "log": True}}, "log scale"),
                       ({"rank": {"choices": []}}, "non-empty"), ({"rank": 4}, "choices")]:
        with pytest.raises(UserError, match=match):
            check_space(bad, lora)
    assert load_space('{rank: [4, 8]}') == {"rank": [4, 8]}
    with pytest.raises(UserError, match="--space"):
        load_space("[1, 2]")
    cfg = _config(sentiment_csv, ["zero-shot"])
    with pytest.raises(UserError, match="--strategy nope"):
        cross_validate(cfg, "nope", k=3)
    with pytest.raises(UserError, match="at least 2 folds"):
        cross_validate(cfg, "zero-shot", k=1)
    with pytest.raises(UserError, match="at least 1 trial"):
        search(cfg, "zero-shot", n_trials=0)


def test_missing_optuna_is_a_user_error(sentiment_csv, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # makes `import optuna` fail
    with pytest.raises(UserError, match=r"tunewise\[tune\]"):
        search(_config(sentiment_csv, ["few-shot"]), "few-shot", n_trials=1, space={"k": [1]})


def test_cli_cv_and_tune(sentiment_csv):
    runner = CliRunner()
    result = runner.invoke(app, ["cv", "--task", str(sentiment_csv), "--model", "fake", "--strategy", "zero-shot",
                                 "--k", "3"])
    assert result.exit_code == 0, result.output
    assert "fold 3/3" in result.output and "±" in result.output
    result = runner.invoke(app, ["tune", "--task", str(sentiment_csv), "--model", "fake", "--strategy", "few-shot",
                                 "--trials", "2", "--space", "{k: [1, 2]}", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["n_trials"] == 2
    result = runner.invoke(app, ["tune", "--task", str(sentiment_csv), "--model", "fake", "--strategy", "few-shot",
                                 "--space", "{nope: [1]}"])
    assert result.exit_code == 2 and "space.nope" in result.output
