"""`tunewise tune --engine ray`: Ray Tune with OptunaSearch and ASHA, intermediate scores per epoch, the trial
budget, resume after an interrupt, the recipe of the best trial, and the errors (no Ray, wrong folder)."""

from __future__ import annotations

import logging
import os
import signal
import sys

import pytest
from typer.testing import CliRunner

from tunewise.cli import app
from tunewise.config import ExperimentConfig, TaskConfig, load_config
from tunewise.errors import UserError


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    yield ray
    ray.shutdown()


def _config(csv, strategies, tmp_path, **kw) -> ExperimentConfig:
    return ExperimentConfig(task=TaskConfig(source=str(csv)), model="fake", strategies=strategies,
                            output_dir=str(tmp_path / "runs"), **kw)


def test_ray_search_reports_every_epoch_and_writes_a_recipe(local_ray, sentiment_csv, tiny_encoder, tmp_path):
    from tunewise.raytune import search_ray

    cfg = _config(sentiment_csv, [{"name": "head-only", "epochs": 2, "early_stopping_patience": None}], tmp_path,
                  encoder=tiny_encoder)
    seen = []
    result = search_ray(cfg, "head-only", n_trials=2, space={"learning_rate": [1e-4, 1e-2]}, on_trial=seen.append)
    assert result["engine"] == "ray" and result["metric"] == "accuracy"
    assert result["n_trials"] == 2 and len(seen) == 2 and not result["interrupted"]
    assert {t["params"]["learning_rate"] for t in result["trials"]} <= {1e-4, 1e-2}
    for t in result["trials"]:
        if t["state"] == "COMPLETE":  # one report after each of the 2 epochs, one for the finished fit
            assert t["epochs"] == 2 and t["reports"] == 3
        else:  # ASHA stopped it after an epoch
            assert t["state"] == "STOPPED_EARLY" and t["reports"] == t["epochs"] >= 1
    finished = [t for t in result["trials"] if t["state"] == "COMPLETE"]
    assert finished and result["best_value"] == max(t["value"] for t in finished)
    assert (tmp_path / "runs" / "tune-sentiment-head-only" / "ray-tune").is_dir()  # the Tune experiment

    from tunewise.tuning import write_recipe

    recipe = write_recipe(cfg, "head-only", result["best_params"], tmp_path / "best.yaml", "from a test")
    assert recipe.read_text().startswith(f"# tunewise run {recipe}\n# from a test\n")
    loaded = load_config(recipe)
    assert [s.id for s in loaded.strategies] == ["head-only"]
    assert loaded.strategies[0].learning_rate == result["best_params"]["learning_rate"]
    assert loaded.strategies[0].epochs == 2 and loaded.task.source == str(sentiment_csv)


def test_interrupted_ray_search_resumes_where_it_stopped(local_ray, sentiment_csv, tmp_path):
    from tunewise.raytune import search_ray

    cfg = _config(sentiment_csv, [{"name": "few-shot", "k": 2}], tmp_path)
    space = {"k": [1, 2, 4], "selection": ["balanced", "random"]}
    folder = tmp_path / "search"

    def ctrl_c(trial):  # the user presses Ctrl-C once the first trial has ended
        os.kill(os.getpid(), signal.SIGINT)

    first = search_ray(cfg, "few-shot", n_trials=3, space=space, folder=folder, concurrent=1, on_trial=ctrl_c)
    assert first["interrupted"]
    done = [t for t in first["trials"] if t["state"] == "COMPLETE"]
    assert 1 <= len(done) < 3
    with pytest.raises(UserError, match="already holds a search"):
        search_ray(cfg, "few-shot", n_trials=3, space=space, folder=folder)
    resumed = search_ray(cfg, "few-shot", n_trials=3, space=space, folder=folder, resume=True)
    assert not resumed["interrupted"] and resumed["n_trials"] == 3
    assert all(t["state"] == "COMPLETE" for t in resumed["trials"])
    assert [t["params"] for t in resumed["trials"][:len(done)]] == [t["params"] for t in done]  # kept, not redone


def test_ray_engine_errors(sentiment_csv, tmp_path, monkeypatch):
    from tunewise.raytune import search_ray

    cfg = _config(sentiment_csv, ["few-shot"], tmp_path)
    with pytest.raises(UserError, match="holds no Ray Tune search"):
        search_ray(cfg, "few-shot", n_trials=1, space={"k": [1]}, folder=tmp_path / "none", resume=True)
    with pytest.raises(UserError, match="at least 1 trial"):
        search_ray(cfg, "few-shot", n_trials=0)
    runner = CliRunner()
    result = runner.invoke(app, ["tune", "--task", str(sentiment_csv), "--model", "fake", "--strategy", "few-shot",
                                 "--resume"])
    assert result.exit_code == 2 and "--engine ray" in result.output
    result = runner.invoke(app, ["tune", "--task", str(sentiment_csv), "--model", "fake", "--engine", "dask"])
    assert result.exit_code == 2 and "--engine dask" in result.output
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail
    with pytest.raises(UserError, match=r"tunewise\[ray,tune\]"):
        search_ray(cfg, "few-shot", n_trials=1, space={"k": [1]})


def test_cli_tune_writes_a_recipe_tunewise_run_loads(sentiment_csv, tmp_path):
    recipe = tmp_path / "recipes" / "few-shot.yaml"
    result = CliRunner().invoke(app, ["tune", "--task", str(sentiment_csv), "--model", "fake", "--strategy", "few-shot",
                                      "--trials", "2", "--space", "{k: [1, 3]}", "--write-recipe", str(recipe)])
    assert result.exit_code == 0, result.output
    assert f"recipe: {recipe}" in result.output
    loaded = load_config(recipe)
    tuned = next(s for s in loaded.strategies if s.id == "few-shot")
    assert tuned.k in (1, 3) and f"with {{'k': {tuned.k}}}" in result.output  # the best trial's k
