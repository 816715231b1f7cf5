"""fit.json is the mark of a finished fit (`fit_or_load`): a saved artifact without it is trained again, a crash
while the mark is written leaves no half mark (`foundation.write_atomic`), and a torn mark is not a finished
fit. The SIGKILL tests of whole runs are in tests/runs/test_crash_resume.py."""

from __future__ import annotations

import json
import os

import pytest

from tunewise.foundation import write_atomic
from tunewise.strategies.base import (
    STATS_FILE,
    FitContext,
    Prediction,
    Predictor,
    Strategy,
    StrategyConfig,
    fit_or_load,
)


class Echo(Predictor):
    def predict(self, examples, on_batch=None):
        return [Prediction(output="x") for _ in examples]


class SavesWeights(Strategy):
    """A fine-tune in miniature: fit() saves weights; load() rebuilds from them whenever they are there."""

    name, family = "saves-weights", "finetuning"

    def __init__(self):
        super().__init__(StrategyConfig(name=self.name))
        self.fits = 0

    def fit(self, backend, task, ctx):
        self.fits += 1
        (ctx.artifact_dir / "weights.bin").write_bytes(b"w" * 100)
        ctx.stats["epochs_run"] = 1
        return Echo()

    def load(self, backend, task, ctx):
        return Echo() if (ctx.artifact_dir / "weights.bin").is_file() else None


def test_weights_without_the_mark_are_trained_again(tmp_path, small_task):
    strategy = SavesWeights()
    (tmp_path / "weights.bin").write_bytes(b"w" * 10)  # a save cut short by a crash: no fit.json after it
    _, fitted = fit_or_load(strategy, None, small_task, FitContext(tmp_path, seed=0))
    assert fitted and strategy.fits == 1
    assert json.loads((tmp_path / STATS_FILE).read_text())["epochs_run"] == 1
    _, fitted = fit_or_load(strategy, None, small_task, FitContext(tmp_path, seed=0))
    assert not fitted and strategy.fits == 1  # now it is finished: reloaded, not trained


def test_a_torn_mark_is_not_a_finished_fit(tmp_path, small_task):
    strategy = SavesWeights()
    (tmp_path / "weights.bin").write_bytes(b"w" * 100)
    (tmp_path / STATS_FILE).write_text('{"train_seconds": 1.2, "epo', encoding="utf-8")  # an older, torn write
    _, fitted = fit_or_load(strategy, None, small_task, FitContext(tmp_path, seed=0))
    assert fitted and strategy.fits == 1


def test_a_crash_while_writing_leaves_the_old_file_whole(tmp_path, monkeypatch):
    path = tmp_path / STATS_FILE
    write_atomic(path, json.dumps({"epochs_run": 1}))

    def killed(src, dst):  # the process dies after writing the new content, before it is in place
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(path, json.dumps({"epochs_run": 2, "more": "x" * 10_000}))
    assert json.loads(path.read_text()) == {"epochs_run": 1}
    assert [p.name for p in tmp_path.iterdir()] == [STATS_FILE]  # no temporary file left behind either
