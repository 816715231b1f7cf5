"""The run API: cells as picklable data, one cell function that works in a fresh process, resume from stored
predictions and saved fits, training-size and seed cells beside the run's own, one backend load per model,
consent and prices through the fit context, forgetting measured after fit, and the store's new columns."""

from __future__ import annotations

import json
import pickle
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tunewise.backends import cache
from tunewise.config import parse_config
from tunewise.runs import Cell, Run, Session, run_cell
from tunewise.runs import cell as cell_module
from tunewise.store import Store


def _config(tmp_path: Path, data: Path, strategies, **kw):
    return parse_config({"task": {"source": str(data), "test_size": 0.25}, "model": "fake", "encoder": "fake",
                         "strategies": strategies, "output_dir": str(tmp_path / "runs"), "seed": 3, **kw})


@pytest.fixture
def fake_run(tmp_path, sentiment_csv):
    run = Run.create(_config(tmp_path, sentiment_csv, ["zero-shot", {"name": "few-shot", "k": 2}]))
    yield run
    run.close()


def test_cells_are_plain_picklable_data_with_stable_ids():
    lora = {"name": "lora", "id": "lora", "rank": 4}
    own = Cell.of(lora, run_seed=3)
    assert own.id == "lora" and own.seed == 3 and own.train_size is None  # the run's own: id = strategy id
    assert Cell.of(lora, 3, seed=1).id == "lora@seed=1"
    assert Cell.of(lora, 3, train_size=256).id == "lora@n=256"
    assert Cell.of(lora, 3, seed=1, train_size=256).id == "lora@seed=1,n=256"
    assert pickle.loads(pickle.dumps(own)) == own
    assert json.loads(json.dumps(own.strategy)) == lora
    with pytest.raises(AttributeError):
        own.seed = 4  # frozen


def test_run_cell_in_a_fresh_process_matches_the_local_driver(fake_run, tmp_path):
    fake_run.execute(fake_run.cells())
    local = {r["strategy"]: r for r in fake_run.store.results(fake_run.id)}
    cell = fake_run.cell("few-shot", seed=7)
    job = tmp_path / "job.pkl"
    job.write_bytes(pickle.dumps((cell, str(fake_run.dir), fake_run.config_dict)))
    script = ("import pickle, sys; from tunewise.runs import run_cell; cell, run_dir, config = "
              "pickle.load(open(sys.argv[1], 'rb')); "
              "sys.stdout.buffer.write(pickle.dumps(run_cell(cell, run_dir, config)))")
    done = subprocess.run([sys.executable, "-c", script, str(job)], capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    result = pickle.loads(done.stdout)
    assert result.id == "few-shot@seed=7" and result.status == "done" and result.seed == 7
    assert len(result.predictions) == len(fake_run.task().test)  # no callback: every row comes back
    assert (result.backend_model, result.backend_kind) == ("fake", "causal")
    # another seed changes which demonstrations are drawn, not the test set or how it is scored
    assert result.metrics["n"] == local["few-shot"]["metrics"]["n"]
    assert Path(result.artifact) == fake_run.dir / "strategies" / "few-shot@seed=7"
    # the driver stores what the fresh process returned
    fake_run.cell_started(cell)
    fake_run.cell_finished(cell, result)
    stored = {r["strategy"]: r for r in fake_run.store.results(fake_run.id)}
    assert stored["few-shot@seed=7"]["seed"] == 7 and len(fake_run.stored(cell)) == len(fake_run.task().test)
    assert [r["strategy"] for r in fake_run.store.main_results(fake_run.id)] == ["zero-shot", "few-shot"]


def test_a_resumed_cell_scores_only_what_is_not_stored(fake_run, monkeypatch):
    cell = fake_run.cell("zero-shot")
    first = run_cell(cell, fake_run.dir, fake_run.config_dict, session=fake_run)
    seen: list[str] = []
    real = cell_module._predict

    def spy(predictor, task, cell_id, done, progress):
        for chunk in real(predictor, task, cell_id, done, progress):
            seen.extend(r["example_id"] for r in chunk)
            yield chunk

    monkeypatch.setattr(cell_module, "_predict", spy)
    stored = first.predictions[:4]
    again = run_cell(cell, fake_run.dir, fake_run.config_dict, stored=stored, session=fake_run)
    assert set(seen) == {r["example_id"] for r in first.predictions[4:]}
    assert len(again.predictions) == len(first.predictions) - 4
    assert again.metrics == first.metrics  # evaluated on every test example, stored ones included


def test_a_training_size_cell_caps_the_training_split_only(fake_run):
    full, capped = fake_run.task(), fake_run.task(train_size=6)
    assert len(capped.train) == 6 and set(e.id for e in capped.train) <= {e.id for e in full.train}
    assert [e.id for e in capped.test] == [e.id for e in full.test]
    assert fake_run.task(train_size=6) is capped  # loaded once per size
    cell = fake_run.cell("few-shot", train_size=6)
    fake_run.execute([cell])
    row = next(r for r in fake_run.store.results(fake_run.id) if r["strategy"] == "few-shot@n=6")
    assert row["train_size"] == 6 and row["status"] == "done"
    assert fake_run.store.main_results(fake_run.id) == []  # the leaderboard compares the run's own cells


def test_each_backend_loads_once_and_reaches_nested_fits(tmp_path, sentiment_csv, monkeypatch):
    from tunewise.backends import load_backend

    loads: list[tuple[str, str]] = []
    monkeypatch.setattr(cache, "load_backend", lambda name, kind, device: loads.append((name, kind))
                        or load_backend(name, kind, device))
    session = Session(_config(tmp_path, sentiment_csv, ["zero-shot", {"name": "few-shot", "k": 2}]), announce=False)
    for entry in ("zero-shot", "few-shot"):
        strategy = session.strategy(entry)
        session.fit(strategy, session.task(), tmp_path / entry)
    ctx = session.context(tmp_path / "outer")
    teacher, stats = ctx.nested(session.strategy("zero-shot").config, session.task(), "fake", "teacher", "x.teacher")
    assert teacher.predict(session.task().test[:2]) and "train_seconds" in stats
    assert loads == [("fake", "causal")]  # one load for two strategies and a teacher


def test_consent_and_prices_reach_strategies_through_the_context(tmp_path, sentiment_csv):
    config = _config(tmp_path, sentiment_csv, ["zero-shot"], prices={"api": {"my-model": {"input": 1, "output": 2,
                                                                                          "training": 7.5}}})
    from tunewise.prices import training_price

    ctx = Session(config, yes=True, announce=False).context(tmp_path)
    assert ctx.yes is True and training_price("openai:my-model", ctx.prices) == 7.5
    assert Session(config, announce=False).context(tmp_path).yes is False


def test_forgetting_runs_after_fit_and_is_timed_apart(tmp_path, sentiment_csv, tiny_causal, monkeypatch):
    from tunewise.runs import measure

    calls = []
    real = measure.measure_forgetting

    def after_fit(backend, model, ctx, cfg, zero_shot=None):
        calls.append(dict(ctx.stats))  # what the fit had recorded when forgetting started
        return real(backend, model, ctx, cfg, zero_shot=zero_shot)

    monkeypatch.setattr(measure, "measure_forgetting", after_fit)
    config = parse_config({"task": {"source": str(sentiment_csv), "test_size": 0.25, "max_test_examples": 4},
                           "model": tiny_causal, "strategies": [{"name": "lora", "epochs": 1, "rank": 2,
                                                                 "forgetting_max_tokens": 128}],
                           "output_dir": str(tmp_path / "runs")})
    run = Run.create(config)
    try:
        run.execute(run.cells())
        result = run.store.results(run.id)[0]
    finally:
        run.close()
    assert len(calls) == 1 and "train_seconds" in calls[0]  # the fit was over (and timed) before it began
    forgetting = result["cost"]["details"]["forgetting"]
    assert forgetting["reference_tokens"] == 128 and forgetting["seconds"] >= 0
    saved = json.loads((run.dir / "strategies" / "lora" / "fit.json").read_text())
    assert saved["forgetting"] == forgetting and saved["train_seconds"] == result["cost"]["train_seconds"]
    assert (run.dir / "strategies" / "lora" / "train_log.json").is_file()
    assert result["backend_model"] == tiny_causal and result["backend_kind"] == "causal"


def test_a_store_from_before_the_cell_columns_is_migrated(tmp_path):
    from tunewise.store.db import MIGRATIONS

    path = tmp_path / "tunewise.db"
    db = sqlite3.connect(path)
    db.executescript(MIGRATIONS[0][1])
    db.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at REAL)")
    db.execute("INSERT INTO _migrations VALUES ('001_initial', 0)")
    db.execute("INSERT INTO runs VALUES ('r', 0, '{\"seed\": 0}', '{}', 'done', NULL)")
    db.execute("INSERT INTO results (run_id, strategy, name, family, status) VALUES ('r', 'lora', 'lora', "
               "'finetuning', 'done')")
    db.commit()
    db.close()
    store = Store(path)
    (row,) = store.main_results("r")  # an old result is one of the run's own cells
    assert row["backend_model"] is None and row["train_size"] is None
    store.start_result("r", "lora@n=8", "lora", "finetuning", "m", "causal", 0, 8)
    assert [r["strategy"] for r in store.main_results("r")] == ["lora"]
    store.close()
