"""Crashes proven harmless: a real `tunewise run` process killed with SIGKILL while LoRA trains and again while
its predictions are being scored, then `--resume`. Finished work is not redone, the results equal an
uninterrupted run with the same seed, the store passes `PRAGMA integrity_check`, and a half-done fit (a training
checkpoint without fit.json) is never taken for a finished one. Waits poll the run folder and the store, bounded;
the kills land mid-way because training and scoring take many steps, not because anything sleeps."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from conftest import make_rows, write_csv
from tunewise.strategies.base import STATS_FILE

# bf16 "auto" is decided by timing matmuls in each process: pin it, or two processes may train differently.
LORA = {"name": "lora", "epochs": 2, "batch_size": 4, "rank": 4, "forgetting": False, "early_stopping_patience": 2,
        "bf16": False}
N_TEST = 144  # three chunks of scoring (64, 64, 16): a kill can land between two committed chunks
LIMIT_S = 600  # the most any wait may take on a busy machine


def _config(root: Path, data: Path, model: str, encoder: str) -> Path:
    cfg = {"task": {"source": str(data), "test_size": 0.72, "validation_size": 0.06}, "model": model,
           "encoder": encoder, "strategies": ["zero-shot", LORA], "output_dir": str(root / "runs"), "seed": 3}
    root.mkdir(parents=True, exist_ok=True)
    path = root / "exp.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def _start(args: list[str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:  # PYTHONPATH and OMP_NUM_THREADS come from the test's own environment
        return subprocess.Popen([sys.executable, "-m", "tunewise", "run", *args], stdout=out,
                                stderr=subprocess.STDOUT, env={**os.environ, "NO_COLOR": "1"})


def _wait_until(proc: subprocess.Popen, ready: Callable[[], bool], what: str, log: Path) -> None:
    deadline = time.monotonic() + LIMIT_S
    while time.monotonic() < deadline:
        if ready():
            return
        assert proc.poll() is None, f"the run exited ({proc.returncode}) before {what}:\n{log.read_text()[-3000:]}"
        time.sleep(0.01)
    proc.kill()
    raise AssertionError(f"no {what} within {LIMIT_S} s:\n{log.read_text()[-3000:]}")


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL


def _query(db: Path, sql: str, *args) -> list[tuple]:
    if not db.is_file():
        return []
    con = sqlite3.connect(db, timeout=30)
    try:
        return con.execute(sql, args).fetchall()
    except sqlite3.OperationalError:  # the tables are not made yet
        return []
    finally:
        con.close()


def _n_predictions(db: Path, strategy: str) -> int:
    return _query(db, "SELECT count(*) FROM predictions WHERE strategy=?", strategy)[0][0] if db.is_file() else 0


def _results(db: Path) -> dict[str, tuple[str, float]]:
    return {s: (status, finished) for s, status, finished in
            _query(db, "SELECT strategy, status, finished_at FROM results")}


def _predictions(db: Path) -> dict[tuple[str, str], tuple[str, dict | None]]:
    return {(s, e): (out, json.loads(scores) if scores else None) for s, e, out, scores in
            _query(db, "SELECT strategy, example_id, output, scores FROM predictions")}


def _run_dir(root: Path) -> Path | None:
    runs = list((root / "runs").glob("*")) if (root / "runs").is_dir() else []
    return runs[0] if runs else None


def test_sigkill_while_training_and_while_scoring_then_resume(tmp_path, tiny_causal, tiny_encoder):
    data = write_csv(tmp_path / "reviews.csv", make_rows(100))  # 200 rows: 144 test, 12 validation, 44 train
    reference_log, log = tmp_path / "reference.log", tmp_path / "killed.log"
    reference = _start([str(_config(tmp_path / "reference", data, tiny_causal, tiny_encoder))], reference_log)
    killed = _start([str(_config(tmp_path / "killed", data, tiny_causal, tiny_encoder))], log)

    def run_dir() -> Path:
        found = _run_dir(tmp_path / "killed")
        assert found is not None
        return found

    def lora() -> Path:
        return run_dir() / "strategies" / "lora"

    def training() -> bool:
        # rglob: the validation selection's candidates train under lora/selection/<i>/
        return _run_dir(tmp_path / "killed") is not None and any(lora().rglob("checkpoints/checkpoint-*"))

    # 1. SIGKILL while LoRA trains: Trainer has saved an epoch's checkpoint, the fit is not finished.
    _wait_until(killed, training, "LoRA training checkpoint", log)
    _kill(killed)
    db = run_dir() / "tunewise.db"
    assert not (lora() / STATS_FILE).exists(), "the kill came too late: LoRA had finished training"
    before = _results(db)
    assert before["zero-shot"][0] == "done" and before["lora"][0] == "running"

    # 2. Resume, and SIGKILL again once LoRA's first chunks of predictions are committed.
    resumed = _start(["--resume", str(run_dir())], log)
    _wait_until(resumed, lambda: _n_predictions(db, "lora") > 0, "committed LoRA predictions", log)
    _kill(resumed)
    scored = _n_predictions(db, "lora")
    assert 0 < scored < N_TEST, f"the kill came too late: {scored} of {N_TEST} predictions were already scored"
    def fit_stats() -> dict:  # written once the fit is finished; later only measurements join it (serving)
        stats = json.loads((lora() / STATS_FILE).read_text())
        return {k: v for k, v in stats.items() if k != "serving"}

    fit = fit_stats()
    assert _results(db)["zero-shot"] == before["zero-shot"]

    # 3. Resume to the end: nothing finished is redone, and the results are the uninterrupted run's.
    final = _start(["--resume", str(run_dir())], log)
    assert final.wait(timeout=LIMIT_S) == 0, log.read_text()[-3000:]
    assert reference.wait(timeout=LIMIT_S) == 0, reference_log.read_text()[-3000:]
    after = _results(db)
    assert after["zero-shot"] == before["zero-shot"], "resume redid the finished zero-shot"
    assert after["lora"][0] == "done" and fit_stats() == fit, "resume retrained LoRA"
    assert not (lora() / "checkpoints").exists()  # the killed attempt's Trainer checkpoints are gone, never loaded
    assert not (lora() / "selection").exists()  # and so are the selection's candidate folders
    assert _query(db, "PRAGMA integrity_check") == [("ok",)]
    assert _query(db, "SELECT status FROM runs") == [("done",)]
    got, want = _predictions(db), _predictions(_run_dir(tmp_path / "reference") / "tunewise.db")
    assert len(got) == len(want) == 4 * N_TEST  # zero-shot, LoRA and the two baselines
    assert {k: v[0] for k, v in got.items()} == {k: v[0] for k, v in want.items()}
    for key, (_, scores) in want.items():  # label -> probability
        assert (got[key][1] or {}).keys() == (scores or {}).keys(), key
        assert all(abs(got[key][1][label] - p) < 1e-4 for label, p in (scores or {}).items()), key
    metrics = {r["strategy"]: r["metrics"] for r in json.loads((run_dir() / "results.json").read_text())}
    reference_metrics = {r["strategy"]: r["metrics"] for r in
                         json.loads((_run_dir(tmp_path / "reference") / "results.json").read_text())}
    assert metrics == reference_metrics
