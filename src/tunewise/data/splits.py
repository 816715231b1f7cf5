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


def _hold_out(examples: list[Example], size: float | int, kind: str, seed: int):
    """(rest, held out); for classification every label keeps at least one example in the rest, so a
    rare label never ends up only in a held-out split (where it could not be learned)."""
    rest, taken = _take(examples, size, kind, seed)
    if kind == "classification":
        rest, taken = _cover(rest, taken, grow=True)
    return rest, taken


def _cover(keep: list[Example], other: list[Example], grow: bool) -> tuple[list[Example], list[Example]]:
    """Make every label of `other` occur in `keep`: swap its example with one of a label that `keep`
    holds twice or more (sizes stay), or else, when `grow`, move it into `keep`."""
    keep, other = list(keep), list(other)
    have = Counter(e.target for e in keep)
    i = 0
    while i < len(other):
        ex = other[i]
        if have[ex.target]:
            i += 1
            continue
        j = next((j for j, k in enumerate(keep) if have[k.target] > 1), None)
        if j is not None:
            have[keep[j].target] -= 1
            keep[j], other[i] = ex, keep[j]
            i += 1
        elif grow:
            keep.append(other.pop(i))
        else:
            i += 1
            continue
        have[ex.target] += 1
    return keep, other


def split_rows(parts: dict[str, list[Example]], kind: str, test_size: float, val_size: float, seed: int):
    """Use the splits the data has; carve the missing ones from 'all' (or from train)."""
    pool = parts.get("all") or parts.get("train") or []
    test = parts.get("test")
    validation = parts.get("validation")
    if test is None:
        pool, test = _hold_out(pool, test_size, kind, seed) if len(pool) > 1 else (pool, [])
    if validation is None:
        validation = []
        if val_size > 0 and len(pool) > 4:
            share = val_size / (1 - test_size) if "all" in parts else val_size
            pool, validation = _hold_out(pool, share, kind, seed)
    return pool, validation, test


def cap(examples: list[Example], n: int, kind: str, seed: int) -> list[Example]:
    """A seeded (stratified when possible) subsample of at most n examples, in a stable order."""
    if len(examples) <= n:
        return examples
    rest, taken = _take(examples, n, kind, seed)
    if kind == "classification":  # keep every label in the sample when n allows it
        taken, _ = _cover(taken, rest, grow=False)
    return taken
