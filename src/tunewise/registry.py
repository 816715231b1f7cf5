"""Registries of strategies: built-in files register themselves on import; plugins via entry points."""

from __future__ import annotations

import importlib
import pkgutil
from importlib.metadata import entry_points
from typing import Any

from tunewise.errors import UserError

_STRATEGIES: dict[str, type] = {}
_loaded = False


def register(cls: type) -> type:
    """Class decorator: `@register` makes a Strategy subclass available by its `name`."""
    if cls.name in _STRATEGIES and _STRATEGIES[cls.name] is not cls:
        raise ValueError(f"strategy name '{cls.name}' is registered twice")
    _STRATEGIES[cls.name] = cls
    return cls


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    # Discovery is dynamic, as for entry-point plugins: strategies import the registry, never the reverse.
    pkg = importlib.import_module("tunewise.strategies")
    for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        if not info.name.rsplit(".", 1)[-1].startswith("_"):
            importlib.import_module(info.name)
    for ep in entry_points(group="tunewise.strategies"):
        ep.load()


def strategies() -> dict[str, type]:
    _load_all()
    return dict(sorted(_STRATEGIES.items(), key=lambda kv: (kv[1].family, kv[0])))


def get_strategy(name: str) -> type:
    known = strategies()
    if name not in known:
        raise UserError(f"unknown strategy '{name}' (known: {', '.join(known)})")
    return known[name]


def strategy_config(item: Any, index: int = 0):
    """Validate one entry of `strategies:` (a name or a mapping) against its strategy's typed config."""
    if isinstance(item, str):
        item = {"name": item}
    elif hasattr(item, "model_dump"):
        item = item.model_dump()
    if not isinstance(item, dict) or "name" not in item:
        raise ValueError(f"[{index}]: give a strategy name or a mapping with 'name'")
    try:
        cls = get_strategy(str(item["name"]))
    except UserError as err:
        raise ValueError(f"[{index}]: {err}") from None
    return cls.Config.model_validate(item)
