"""SQLite store, one database per run folder, with named migrations (as simonw/llm does).

Every prediction is committed as soon as its batch is scored, so a Ctrl-C loses at most one batch;
a strategy's result row is written only when it is complete, which is what `--resume` checks.

A result is one cell of the run: a strategy at a seed and a training-set size. The run's own cells (the
config's seed, the full training split) are keyed by the strategy id; other cells by ids such as
`lora@seed=1` or `lora@n=256`. Each result records the backend model and kind it ran on, so the report
and the server describe it without rebuilding strategy objects.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from tunewise.foundation import UserError

MIGRATIONS: list[tuple[str, str]] = [
    ("001_initial", """
        CREATE TABLE runs (
            id TEXT PRIMARY KEY, created_at REAL NOT NULL, config TEXT NOT NULL,
            environment TEXT, status TEXT NOT NULL, finished_at REAL);
        CREATE TABLE results (
            run_id TEXT NOT NULL, strategy TEXT NOT NULL, name TEXT NOT NULL, family TEXT NOT NULL,
            status TEXT NOT NULL, metrics TEXT, cost TEXT, artifact TEXT, error TEXT,
            started_at REAL, finished_at REAL, PRIMARY KEY (run_id, strategy));
        CREATE TABLE predictions (
            run_id TEXT NOT NULL, strategy TEXT NOT NULL, example_id TEXT NOT NULL, position INTEGER NOT NULL,
            input TEXT NOT NULL, target TEXT NOT NULL, output TEXT NOT NULL, score REAL NOT NULL,
            scores TEXT, prompt_tokens INTEGER, completion_tokens INTEGER, latency_s REAL, trace TEXT,
            PRIMARY KEY (run_id, strategy, example_id));
        CREATE TABLE train_log (
            run_id TEXT NOT NULL, strategy TEXT NOT NULL, step INTEGER NOT NULL, record TEXT NOT NULL);
    """),
    ("002_result_backend_and_cell", """
        ALTER TABLE results ADD COLUMN backend_model TEXT;
        ALTER TABLE results ADD COLUMN backend_kind TEXT;
        ALTER TABLE results ADD COLUMN seed INTEGER;
        ALTER TABLE results ADD COLUMN train_size INTEGER;
    """),
]
DB_NAME = "tunewise.db"  # in every run folder


def open_run(run_dir: str | Path) -> tuple[Store, dict[str, Any]]:
    """The store of a run folder and its run row; a one-line UserError when the folder is not a run."""
    path = Path(run_dir)
    if not (path / DB_NAME).is_file():
        raise UserError(f"{path}: not a tunewise run folder (no {DB_NAME}); give the folder `tunewise run` "
                        "printed")
    store = Store(path / DB_NAME)
    run = store.run()
    if run is None:
        store.close()
        raise UserError(f"{path}: the run database holds no run")
    return store, run


class Store:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.db = sqlite3.connect(self.path, timeout=30)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self._migrate()

    def _migrate(self) -> None:
        with self.db:
            self.db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at REAL)")
            done = {r[0] for r in self.db.execute("SELECT name FROM _migrations")}
            for name, sql in MIGRATIONS:
                if name not in done:
                    self.db.executescript(sql)
                    self.db.execute("INSERT INTO _migrations VALUES (?, ?)", (name, time.time()))

    def close(self) -> None:
        self.db.close()

    # --- runs ---------------------------------------------------------------------------------
    def create_run(self, run_id: str, config: dict[str, Any], environment: dict[str, Any]) -> None:
        with self.db:
            self.db.execute("INSERT OR IGNORE INTO runs VALUES (?, ?, ?, ?, 'running', NULL)",
                            (run_id, time.time(), json.dumps(config), json.dumps(environment)))

    def set_run_status(self, run_id: str, status: str) -> None:
        with self.db:
            self.db.execute("UPDATE runs SET status=?, finished_at=? WHERE id=?", (status, time.time(), run_id))

    def run(self, run_id: str | None = None) -> dict[str, Any] | None:
        sql = "SELECT * FROM runs" + (" WHERE id=?" if run_id else " ORDER BY created_at DESC LIMIT 1")
        row = self.db.execute(sql, (run_id,) if run_id else ()).fetchone()
        if row is None:
            return None
        out = dict(row)
        out["config"] = json.loads(out["config"])
        out["environment"] = json.loads(out["environment"] or "{}")
        return out

    # --- results --------------------------------------------------------------------------------
    def start_result(self, run_id: str, strategy: str, name: str, family: str, backend_model: str | None = None,
                     backend_kind: str | None = None, seed: int | None = None, train_size: int | None = None
                     ) -> None:
        """Mark a result running; `strategy` is its result id, `train_size` None for the full training split."""
        with self.db:
            self.db.execute(
                "INSERT INTO results (run_id, strategy, name, family, status, started_at, backend_model, "
                "backend_kind, seed, train_size) VALUES (?, ?, ?, ?, 'running', ?, ?, ?, ?, ?) "
                "ON CONFLICT(run_id, strategy) DO UPDATE SET status='running', error=NULL, "
                "started_at=excluded.started_at, backend_model=excluded.backend_model, "
                "backend_kind=excluded.backend_kind, seed=excluded.seed, train_size=excluded.train_size",
                (run_id, strategy, name, family, time.time(), backend_model, backend_kind, seed, train_size))

    def finish_result(self, run_id: str, strategy: str, metrics: dict, cost: dict, artifact: str | None,
                      status: str = "done", error: str | None = None) -> None:
        with self.db:
            self.db.execute(
                "UPDATE results SET status=?, metrics=?, cost=?, artifact=?, error=?, finished_at=? "
                "WHERE run_id=? AND strategy=?",
                (status, json.dumps(metrics), json.dumps(cost), artifact, error, time.time(), run_id, strategy))

    def fail_result(self, run_id: str, strategy: str, error: str, status: str = "failed") -> None:
        with self.db:
            self.db.execute("UPDATE results SET status=?, error=?, finished_at=? "
                            "WHERE run_id=? AND strategy=?", (status, error, time.time(), run_id, strategy))

    def results(self, run_id: str) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT * FROM results WHERE run_id=? ORDER BY started_at", (run_id,))
        out = []
        for r in rows:
            d = dict(r)
            d["metrics"] = json.loads(d["metrics"] or "{}")
            d["cost"] = json.loads(d["cost"] or "{}")
            out.append(d)
        return out

    def main_results(self, run_id: str) -> list[dict[str, Any]]:
        """The run's own cells (its seed, the full training split): what the leaderboard and report compare."""
        run = self.run(run_id)
        seed = (run or {}).get("config", {}).get("seed", 0)
        return [r for r in self.results(run_id) if r.get("train_size") is None and r.get("seed") in (None, seed)]

    def result_status(self, run_id: str, strategy: str) -> str | None:
        row = self.db.execute("SELECT status FROM results WHERE run_id=? AND strategy=?",
                              (run_id, strategy)).fetchone()
        return row[0] if row else None

    # --- predictions ------------------------------------------------------------------------------
    def add_predictions(self, run_id: str, strategy: str, rows: list[dict[str, Any]]) -> None:
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO predictions VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [(run_id, strategy, r["example_id"], r["position"], r["input"], r["target"], r["output"],
                  r["score"], json.dumps(r.get("scores")), r.get("prompt_tokens"), r.get("completion_tokens"),
                  r.get("latency_s"), json.dumps(r.get("trace"))) for r in rows])

    def predictions(self, run_id: str, strategy: str) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT * FROM predictions WHERE run_id=? AND strategy=? ORDER BY position",
                               (run_id, strategy))
        out = []
        for r in rows:
            d = dict(r)
            d["scores"] = json.loads(d["scores"]) if d["scores"] else None
            d["trace"] = json.loads(d["trace"]) if d["trace"] else None
            out.append(d)
        return out

    # --- training curves ---------------------------------------------------------------------------
    def log_train(self, run_id: str, strategy: str, record: dict[str, Any]) -> None:
        with self.db:
            self.db.execute("INSERT INTO train_log VALUES (?, ?, ?, ?)",
                            (run_id, strategy, int(record.get("step", 0)), json.dumps(record)))

    def train_log(self, run_id: str, strategy: str) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT record FROM train_log WHERE run_id=? AND strategy=? ORDER BY rowid",
                               (run_id, strategy))
        return [json.loads(r[0]) for r in rows]

    def clear_train_log(self, run_id: str, strategy: str) -> None:
        with self.db:
            self.db.execute("DELETE FROM train_log WHERE run_id=? AND strategy=?", (run_id, strategy))
