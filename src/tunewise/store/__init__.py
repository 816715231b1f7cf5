"""Durable record of runs, strategy results and per-example predictions (SQLite, named migrations)."""

from tunewise.store.db import DB_NAME, Store, open_run

__all__ = ["DB_NAME", "Store", "open_run"]
