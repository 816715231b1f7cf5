"""Persistent response cache of the API backend: a re-run or `--resume` never pays for a request twice.

One SQLite file; the key is a SHA-256 of the server address, endpoint and request body (model, messages,
parameters). Only request bodies and response bodies are stored: the API key travels in a header and
never reaches this file.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any


def request_key(base_url: str, endpoint: str, body: dict[str, Any]) -> str:
    blob = json.dumps({"base_url": base_url.rstrip("/"), "endpoint": endpoint, "body": body}, sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class ResponseCache:
    """Thread-safe get/put of JSON responses by request key; `enabled=False` makes it a no-op."""

    def __init__(self, folder: str | Path | None):
        self.enabled = folder is not None
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        if not self.enabled:
            return
        path = Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        self.path = path / "responses.sqlite"
        self._db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        with self._db:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, created REAL, "
                             "endpoint TEXT, model TEXT, response TEXT NOT NULL)")

    def get(self, key: str) -> dict[str, Any] | None:
        if not self.enabled:
            return None
        with self._lock:
            row = self._db.execute("SELECT response FROM responses WHERE key=?", (key,)).fetchone()
            if row is None:
                self.misses += 1
                return None
            self.hits += 1
        return json.loads(row[0])

    def put(self, key: str, endpoint: str, model: str, response: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self._lock, self._db:
            self._db.execute("INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?)",
                             (key, time.time(), endpoint, model, json.dumps(response)))
