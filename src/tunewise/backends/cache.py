"""Backends loaded lazily and once: one per (model name, kind), shared by everything in a run.

The run API holds one `BackendCache` per run and hands it to every strategy through `FitContext.backends`,
so a distillation teacher, optimize-prompt's optimizer model or few-shot's similarity encoder that names a
model the run already loaded gets that same backend instead of a second copy of the weights.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

from tunewise.backends.base import Backend, Kind
from tunewise.backends.registry import load_backend


class BackendCache:
    """`cache(name, kind)` -> the backend, loaded on first use with `load_backend(name, kind, device)`.

    `announce(name, kind)` is a context manager around each real load (the run shows a spinner and the
    load time). Thread-safe: a server's threads may ask at once, and a model is never loaded twice.
    """

    def __init__(self, device: str = "auto",
                 announce: Callable[[str, str], AbstractContextManager] | None = None):
        self.device, self.announce = device, announce
        self._loaded: dict[tuple[str, str], Backend] = {}
        self._lock = threading.Lock()

    def __call__(self, name: str, kind: Kind) -> Backend:
        with self._lock:
            key = (name, kind)
            if key not in self._loaded:
                with self.announce(name, kind) if self.announce else nullcontext():
                    self._loaded[key] = load_backend(name, kind, self.device)
            return self._loaded[key]

    def loaded(self) -> dict[tuple[str, str], Backend]:
        """What has been loaded so far, by (name, kind)."""
        return dict(self._loaded)
