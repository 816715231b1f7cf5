"""Durable record of runs, strategy results and per-example predictions (SQLite, named migrations)."""

from tunewise.store.db import Store

__all__ = ["Store"]
