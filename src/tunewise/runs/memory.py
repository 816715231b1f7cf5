"""One cell's own memory and latency, when cells share a process and its loaded models.

Memory. The process's high-water mark carries over from cell to cell (a small encoder's fine-tune would show
the causal model an earlier cell loaded), so a cell's figure is its own accounting:

    peak_rss_mb = weights of the loaded models the cell used + (peak RSS during the cell - RSS at its start)

measured after freeing what earlier cells left (`gc.collect()` and glibc's `malloc_trim(0)`, so freed memory
is given back rather than silently reused), with the peak sampled every 50 ms (`evaluation.cost.PeakMemory`).
"Weights" are the parameter and buffer bytes of each backend the cell asked for (its own, and any teacher,
embedder or optimizer model it took from the run's backends) that was loaded before the cell started; a
model loaded during the cell is already in the RSS growth. On CUDA, `peak_device_mb` is the same sum over
torch's allocator: weights on the device + (max_memory_allocated during the cell - memory_allocated at its
start). Not counted: the Python, torch and library runtime every strategy shares (the process's RSS before
any model loads), nor API-side memory. `details.memory` keeps the parts and the process's own peak.

Latency. The first call to a model pays one-off costs (lazy initialisation, caches, allocator growth), so the
first `warmup_size(n)` test examples are scored as a warm-up batch: their predictions are kept, but
`seconds_per_example` is measured on the examples after it; `details.latency` keeps both times.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
from collections.abc import Callable
from typing import Any

import psutil

from tunewise.evaluation.cost import PeakMemory

WARMUP = 8  # test examples in the warm-up batch (at most a quarter of those to score)
LATENCY = f"mean seconds per example after a warm-up batch of up to {WARMUP} examples"
METHOD = ("the strategy's own: weights of the loaded models it used + its RSS growth over the RSS at its start "
          "(runtime shared by all strategies not counted)")


def warmup_size(n: int) -> int:
    """Examples of the warm-up batch when `n` are scored: WARMUP, at most a quarter of n, none for n < 4."""
    return min(WARMUP, n // 4)


def _release() -> None:
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # glibc keeps freed heap pages unless asked; else no-op
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _weights(backend, device: bool) -> int:
    """Bytes of the backend's parameters and buffers (only those on a CUDA device when `device`)."""
    if not backend.capabilities.local_weights or backend.model is None:
        return 0
    tensors = [*backend.model.parameters(), *backend.model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors if not device or t.is_cuda)


def _cuda():
    """torch.cuda once CUDA is in use in this process (never initialised just to measure), else None."""
    import torch

    return torch.cuda if torch.cuda.is_available() and torch.cuda.is_initialized() else None


class CellMemory:
    """`with CellMemory(loaded) as mem:` around one cell; `track(backends)` wraps the context's backend getter
    so models the cell takes from it count; `mem.use(backend)` counts one directly; `figures()` after the block.
    `loaded()`: the run's loaded backends by (name, kind) (`BackendCache.loaded`)."""

    def __init__(self, loaded: Callable[[], dict[tuple[str, str], Any]]):
        self._loaded, self._used, self._peak = loaded, {}, PeakMemory()

    def use(self, backend) -> Any:
        self._used[id(backend)] = backend
        return backend

    def track(self, backends: Callable[[str, str], Any]) -> Callable[[str, str], Any]:
        return lambda name, kind: self.use(backends(name, kind))

    def __enter__(self) -> CellMemory:
        _release()
        self._before = {id(b) for b in self._loaded().values()}
        self._rss0 = psutil.Process().memory_info().rss / 2**20
        cuda, self._dev0 = _cuda(), 0.0
        if cuda is not None:
            cuda.reset_peak_memory_stats()
            self._dev0 = cuda.memory_allocated() / 2**20
        self._peak.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._peak.__exit__(*exc)

    def figures(self) -> dict[str, Any]:
        """{"peak_rss_mb", "peak_device_mb" (None without CUDA), "memory": the parts} in MiB."""
        preloaded = [b for key, b in self._used.items() if key in self._before]
        weights = sum(_weights(b, False) for b in preloaded) / 2**20
        growth = max(self._peak.peak_mb - self._rss0, 0.0)
        parts = {"method": METHOD, "weights_mb": weights, "growth_mb": growth, "process_peak_mb": self._peak.peak_mb}
        device = None
        cuda = _cuda()
        if cuda is not None:
            device_weights = sum(_weights(b, True) for b in preloaded) / 2**20
            device = device_weights + max(cuda.max_memory_allocated() / 2**20 - self._dev0, 0.0)
            parts.update(device_weights_mb=device_weights, device_process_peak_mb=cuda.max_memory_allocated() / 2**20)
        return {"peak_rss_mb": weights + growth, "peak_device_mb": device, "memory": parts}
