"""A cell's own cost figures: memory counts the weights of the loaded models the cell used plus its growth,
never a model another cell left loaded; latency is measured after a warm-up batch."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from tunewise.runs.cell import _latency
from tunewise.runs.memory import WARMUP, CellMemory, warmup_size

MIB = 2**20


def local(n_floats: int):
    """A stand-in backend with local weights: one parameter of n_floats float32 values."""
    model = torch.nn.Module()
    model.weight = torch.nn.Parameter(torch.zeros(n_floats))
    return SimpleNamespace(capabilities=SimpleNamespace(local_weights=True), model=model)


def test_memory_is_the_cells_own_not_what_other_cells_left_loaded():
    used, other = local(2 * MIB // 4), local(64 * MIB // 4)  # 2 MiB the cell uses, 64 MiB it never touches
    loaded = {("small", "encoder"): used, ("big", "causal"): other}
    with CellMemory(lambda: loaded) as mem:
        mem.use(used)
        late = mem.use(local(MIB // 4))  # loaded during the cell: its bytes are in the growth, not counted twice
        work = torch.ones(48 * MIB // 4)  # 48 MiB of work, touched, alive at the block's last sample
    del work
    figures = mem.figures()
    parts = figures["memory"]
    assert parts["weights_mb"] == pytest.approx(2.0)  # only the used backend loaded before the cell
    assert 47 <= parts["growth_mb"] < 64  # the 48 MiB of work and the 1 MiB model
    assert figures["peak_rss_mb"] == pytest.approx(parts["weights_mb"] + parts["growth_mb"])
    assert figures["peak_rss_mb"] < parts["process_peak_mb"]  # the process also holds the runtime and `other`
    assert late.model.weight.numel() == MIB // 4


def test_models_taken_from_the_run_backends_count():
    teacher = local(4 * MIB // 4)
    loaded = {("teacher", "causal"): teacher}
    with CellMemory(lambda: loaded) as mem:
        backends = mem.track(lambda name, kind: loaded[(name, kind)])
        assert backends("teacher", "causal") is teacher
    assert mem.figures()["memory"]["weights_mb"] == pytest.approx(4.0)


def test_api_backends_have_no_local_weights():
    api = SimpleNamespace(capabilities=SimpleNamespace(local_weights=False), model=None)
    with CellMemory(lambda: {("openai:x", "causal"): api}) as mem:
        mem.use(api)
    assert mem.figures()["memory"]["weights_mb"] == 0


def test_warmup_batch():
    assert [warmup_size(n) for n in (0, 3, 4, 8, 31, 32, 1000)] == [0, 0, 1, 2, 7, WARMUP, WARMUP]


def test_latency_leaves_out_the_warmup_batch():
    rows = [{"latency_s": 1.0, "warmup": True}] * 2 + [{"latency_s": 0.1, "warmup": False}] * 6
    per_example, parts = _latency(rows)
    assert per_example == pytest.approx(0.1)
    assert parts["warmup_examples"] == 2 and parts["timed_examples"] == 6
    assert parts["warmup_seconds"] == pytest.approx(2.0) and parts["scoring_seconds"] == pytest.approx(2.6)
    stored = [{"latency_s": 0.5}] * 2  # resumed rows from the store carry no warm-up mark: their mean
    assert _latency(stored)[0] == pytest.approx(0.5) and _latency(stored)[1]["timed_examples"] == 0
