"""Seeded, stratified splits and caps (scikit-learn's splitter, with a fallback for tiny classes)."""

from __future__ import annotations

from collections import Counter

from sklearn.model_selection import train_test_split

from tunewise.data.task import Example


def _stratify(examples: list[Example], kind: str, n_take: int) -> list[str] | None:
    """Labels to stratify on, or None when stratifying is impossible (generation, tiny classes)."""
    if kind != "classification":
        return None
    counts = Counter(e.target for e in examples)
    if min(counts.values()) < 2 or n_take < len(counts) or len(examples) - n_take < len(counts):
        return None
    return [e.target for e in examples]


def _take(examples: list[Example], size: float | int, kind: str, seed: int):
    n = round(size * len(examples)) if isinstance(size, float) else size
    n = max(1, min(n, len(examples) - 1))
    strat = _stratify(examples, kind, n)
    rest, taken = train_test_split(examples, test_size=n, random_state=seed, stratify=strat)
    return rest, taken


def split_rows(parts: dict[str, list[Example]], kind: str, test_size: float, val_size: float, seed: int):
    """Use the splits the data has; carve the missing ones from 'all' (or from train)."""
    pool = parts.get("all") or parts.get("train") or []
    test = parts.get("test")
    validation = parts.get("validation")
    if test is None:
        pool, test = _take(pool, test_size, kind, seed) if len(pool) > 1 else (pool, [])
    if validation is None:
        validation = []
        if val_size > 0 and len(pool) > 4:
            share = val_size / (1 - test_size) if "all" in parts else val_size
            pool, validation = _take(pool, share, kind, seed)
    return pool, validation, test


def cap(examples: list[Example], n: int, kind: str, seed: int) -> list[Example]:
    """A seeded (stratified when possible) subsample of at most n examples, in a stable order."""
    if len(examples) <= n:
        return examples
    _, taken = _take(examples, n, kind, seed)
    return taken
