"""Every PEFT type of a run served over one copy of the base weights (serve/adapters.py, serve/hub.py).

One run on the tiny causal model trains LoRA (two of them), DoRA, IA3, prefix, prompt and P-tuning, and sft
with LoRA, for a few steps; the hub serves them all in this process. Each must answer as the strategy's own
predictor did when the run scored it, and attaching an adapter may add only the adapter's own tensors to
what the server holds (tensor bytes by storage pointer: deterministic, unlike the process's RSS).
"""

from __future__ import annotations

import json
import threading

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from _serving import run_folder, stored, write_config
from tunewise.cli import app
from tunewise.serve import lm
from tunewise.serve.hub import ModelHub
from tunewise.serve.worker import ModelWorker

# a few steps at a high rate with no warm-up, so that every adapter moves the model away from the base
STEP = {"epochs": 1, "batch_size": 2, "warmup_ratio": 0, "learning_rate": 5e-2, "forgetting": False,
        "early_stopping_patience": None}
PEFT = [{"name": "lora", "rank": 4, **STEP}, {"name": "lora", "id": "lora-b", "rank": 2, **STEP},
        {"name": "lora", "id": "dora", "rank": 4, "use_dora": True, **STEP}, {"name": "ia3", **STEP},
        {"name": "prefix-tuning", "num_virtual_tokens": 4, **STEP},
        {"name": "prompt-tuning", "num_virtual_tokens": 4, "init": "random", **STEP},
        {"name": "p-tuning", "num_virtual_tokens": 4, **STEP},
        {"name": "sft", "system": "none", "rank": 4, **STEP}]  # LoRA under its own prompt (no system message)
IDS = ["lora", "lora-b", "dora", "ia3", "prefix-tuning", "prompt-tuning", "p-tuning", "sft"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_causal):
    from conftest import make_rows, write_csv

    root = tmp_path_factory.mktemp("one-base")
    data = write_csv(root / "sentiment.csv", make_rows(6))
    cfg = write_config(root / "exp.yaml", task={"source": str(data), "test_size": 0.3, "validation_size": 0.1},
                       model=tiny_causal, strategies=["zero-shot", *PEFT], output_dir=str(root / "runs"), seed=1)
    result = CliRunner().invoke(app, ["run", str(cfg)])
    assert result.exit_code == 0, result.output
    return run_folder(result.output)


@pytest.fixture(scope="module")
def hub(run_dir):
    return ModelHub(run_dir, device="cpu", log=lambda *a: None)


def adapter_bytes(run_dir, strategy: str) -> int:
    tensors = load_file(run_dir / "strategies" / strategy / "adapter" / "adapter_model.safetensors")
    return sum(t.numel() * t.element_size() for t in tensors.values())


@pytest.mark.parametrize("strategy", IDS)
def test_each_peft_type_answers_as_its_own_predictor(hub, run_dir, strategy):
    rows = stored(run_dir, strategy)
    entry = hub.entry(strategy)
    got = hub.predict(entry, [r["input"] for r in rows]).result(timeout=120)
    assert [p.output for p in got] == [r["output"] for r in rows]
    for p, r in zip(got, rows, strict=True):  # label probabilities too, not only the argmax
        assert p.scores == pytest.approx(r["scores"], abs=1e-4)


def test_peft_types_are_told_apart_and_run_in_any_order(hub, run_dir):
    """Switching between adapters (and back) leaves no adapter's layers switched on for another."""
    text = [stored(run_dir, "lora")[0]["input"]]
    first = {s: hub.predict(hub.entry(s), text).result(timeout=60)[0].scores for s in IDS}
    again = {s: hub.predict(hub.entry(s), text).result(timeout=60)[0].scores for s in reversed(IDS)}
    for s in IDS:
        assert first[s] == pytest.approx(again[s], abs=1e-6)
    assert len({round(s["positive"], 6) for s in first.values()}) == len(IDS)  # each adapter changes the scores
    assert {hub.entry(s).card()["tunewise"]["peft_type"] for s in IDS} == {
        "LORA", "IA3", "PREFIX_TUNING", "PROMPT_TUNING", "P_TUNING"}


def test_every_adapter_runs_on_the_same_base_tensors(hub):
    base = {p.data_ptr() for p in hub.causal.model.parameters()}
    for strategy in IDS:
        model = hub.entry(strategy).adapter.model
        assert model.get_base_model() is hub.causal.model
        assert base <= {p.data_ptr() for p in model.parameters()}


def test_a_second_adapter_adds_only_its_own_size(run_dir):
    one = ModelHub(run_dir, strategies=["lora"], device="cpu", log=lambda *a: None)
    two = ModelHub(run_dir, strategies=["lora", "ia3"], device="cpu", log=lambda *a: None)
    six = ModelHub(run_dir, strategies=IDS, device="cpu", log=lambda *a: None)
    base = sum(p.numel() * p.element_size() for p in one.causal.model.parameters())
    slack = 4096  # bytes: peft's per-layer bookkeeping buffers, if any
    assert two.memory_bytes() - one.memory_bytes() <= adapter_bytes(run_dir, "ia3") + slack
    assert six.memory_bytes() - one.memory_bytes() <= sum(adapter_bytes(run_dir, s) for s in IDS[1:]) + slack
    assert six.memory_bytes() < 1.5 * base  # not a second copy of the base


def test_lora_fine_tunes_share_one_generation_batch(hub, run_dir, tiny_causal):
    for name in ("lora", "lora-b"):
        hub.add_finetuned(f"ft:{name}", run_dir / "strategies" / name / "adapter")
    a, b = hub.entry("ft:lora"), hub.entry("ft:lora-b")
    prompt = hub.causal.render([{"role": "user", "content": "great product"}], add_generation_prompt=True)
    params = lm.Params(max_tokens=4, temperature=0, logprobs=0)

    def answer(choice):  # the greedy tokens and their log-probabilities, which each adapter changes
        return [(t["token"], round(t["logprob"], 4)) for t in choice.logprobs]

    alone = [answer(hub.generate(e, prompt, params).result(timeout=60)[0]) for e in (a, b, hub.entry(tiny_causal))]
    gate = threading.Event()
    hub.worker.call(gate.wait)  # hold the model thread so the three requests queue up together
    before = hub.worker.batches
    futures = [hub.generate(e, prompt, params) for e in (a, b, a)]
    gate.set()
    together = [answer(f.result(timeout=60)[0]) for f in futures]
    assert together == [alone[0], alone[1], alone[0]]
    assert hub.worker.batches - before == 2  # the gate's round, then one mixed batch
    assert alone[0] != alone[1] and alone[0] != alone[2]  # the adapters change the answer


class Recorder:
    """A streamer that notes which stream each token came from (`order`) and keeps the stream's token ids;
    like transformers' TextStreamer(skip_prompt=True) it drops the prompt, generate()'s first put."""

    def __init__(self, name: str, order: list[str]):
        self.name, self.order, self.ids, self.ended, self.prompt = name, order, [], 0, True

    def put(self, value) -> None:
        if self.prompt:
            self.prompt = False
            return
        self.order.append(self.name)
        self.ids += [int(t) for t in value.reshape(-1)]

    def end(self) -> None:
        self.ended += 1


def _prompt(hub, text: str) -> str:
    return hub.causal.render([{"role": "user", "content": text}], add_generation_prompt=True)


def test_concurrent_streams_take_turns_a_slice_at_a_time_with_the_same_tokens(hub, tiny_causal):
    base, order = hub.entry(tiny_causal), []
    params = lm.Params(max_tokens=3 * lm.STREAM_SLICE, temperature=0)
    prompts = {"a": _prompt(hub, "great product"), "b": _prompt(hub, "the battery died")}
    alone = {k: hub.generate(base, p, params).result(timeout=60)[0] for k, p in prompts.items()}
    gate = threading.Event()
    hub.worker.call(gate.wait)  # both streams queue before either starts
    streams = {k: Recorder(k, order) for k in prompts}
    futures = {k: hub.stream(base, p, params, streams[k]) for k, p in prompts.items()}
    gate.set()
    for k, f in futures.items():
        assert f.result(timeout=60) == alone[k].tokens
        assert hub.causal.tokenizer.decode(streams[k].ids[:alone[k].tokens], skip_special_tokens=True) == \
            alone[k].text
        assert streams[k].ended == 1
    assert alone["a"].tokens > lm.STREAM_SLICE  # long enough to take more than one turn
    assert order.index("b") < len(order) - order[::-1].index("a") - 1  # b started before a finished
    assert order[:lm.STREAM_SLICE] == ["a"] * lm.STREAM_SLICE and order[lm.STREAM_SLICE] == "b"


def test_adapter_streams_resume_and_prompt_learning_streams_run_whole(hub, run_dir):
    params = lm.Params(max_tokens=2 * lm.STREAM_SLICE + 3, temperature=0)
    prompt = _prompt(hub, "great product")
    for name in ("ia3", "prefix-tuning"):
        hub.add_finetuned(f"ft:{name}", run_dir / "strategies" / name / "adapter")
        entry, order = hub.entry(f"ft:{name}"), []
        alone = hub.generate(entry, prompt, params).result(timeout=60)[0]
        rec = Recorder(name, order)
        before = hub.worker.batches
        assert hub.stream(entry, prompt, params, rec).result(timeout=60) == alone.tokens
        assert hub.causal.tokenizer.decode(rec.ids[:alone.tokens], skip_special_tokens=True) == alone.text
        turns = hub.worker.batches - before
        assert alone.tokens > 2 * lm.STREAM_SLICE  # three slices' worth
        assert turns == (1 if name == "prefix-tuning" else 3)


def test_a_seeded_sampled_stream_is_the_same_sliced_or_whole(hub, tiny_causal):
    base = hub.entry(tiny_causal)
    params = lm.Params(max_tokens=2 * lm.STREAM_SLICE + 5, temperature=1.0, seed=7)
    prompt = _prompt(hub, "tell me more")
    got = []
    for size in (None, 5):
        rec = Recorder("s", [])
        job = lm.Stream(base.backend, prompt, params, rec, slice=size)
        while not job.step():
            torch.rand(3)  # other requests use the global RNG between slices
        got.append(rec.ids[:job.tokens])
    assert got[0] == got[1] and len(got[0]) > 5


def test_worker_serves_models_round_robin():
    worker, order, gate = ModelWorker(), [], threading.Event()

    def job(items):
        if items[0] == "a1":
            gate.wait(10)
        order.append(list(items))
        return items

    first = worker.submit("a", job, "a1")
    while not first.running():
        threading.Event().wait(0.01)
    futures = [worker.submit(k, job, i) for k, i in (("a", "a2"), ("a", "a3"), ("b", "b1"))]
    gate.set()
    for f in futures:
        f.result(timeout=10)
    assert order == [["a1"], ["b1"], ["a2", "a3"]]  # b does not wait behind a's queue


def test_tensor_bytes_counts_shared_storage_once():
    from tunewise.serve.adapters import tensor_bytes

    shared = torch.nn.Linear(4, 4)
    other = torch.nn.Sequential(shared, torch.nn.Linear(4, 2, bias=False))
    assert tensor_bytes([shared, other]) == (16 + 4 + 8) * 4


def test_the_run_measured_each_strategys_serving_path(run_dir):
    from tunewise.runs.measure import SERVING_ENGINE

    results = {r["strategy"]: r for r in json.loads((run_dir / "results.json").read_text(encoding="utf-8"))}
    for strategy in ["zero-shot", *IDS]:
        serving = results[strategy]["cost"]["details"]["serving"]
        assert serving["engine"] == SERVING_ENGINE and serving["queries"] >= 1 and serving["seconds_per_query"] > 0
