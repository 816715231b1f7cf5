"""Serving every PEFT adapter of a run on one base vs serving one adapter: memory and throughput.

    .venv/bin/python bench/serve_adapters.py [--limit N] [--run RUN_FOLDER] [--model MODEL] [--clients 32]
                                             [--threads N]

1. Builds a run with 8 PEFT adapters on the model (LoRA x3 of different shapes, DoRA, IA3, prefix, prompt,
   P-tuning; each trained briefly on `--limit` examples of the demo task; skipped with --run).
2. Memory: tensor bytes held by the hub (distinct weight tensors, by storage pointer; deterministic) when it
   serves one adapter vs all of them, and the resident memory (RSS, MiB; noisy) of a `tunewise serve`
   process of each. Goal (issue 17): all <= 1.2x one.
3. Throughput: `--clients` concurrent clients send `--requests` classification chats through the openai SDK,
   all to one adapter on a server of that adapter alone, then spread over the 8 adapters on a server of
   all of them. Prints requests/s and p50/p95 latency (ms). Goal: 8 adapters >= 0.8x one.
   With --each, every adapter is also served alone (a server of its own, the same load): prompt-learning
   adapters cost more per request than LoRA (virtual tokens, no shared-prefix cache), so the mix is also
   compared with the harmonic mean of the adapters' own requests/s, what serving the same requests one
   adapter at a time would reach: all / that mean is what sharing one base costs.

Timings on a shared machine are noisy: compare ratios from one invocation, not numbers across days.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

STEP = {"epochs": 1, "batch_size": 4, "forgetting": False, "early_stopping_patience": None}
ADAPTERS = [{"name": "lora", **STEP}, {"name": "lora", "id": "lora-r4", "rank": 4, **STEP},
            {"name": "lora", "id": "lora-qv", "target_modules": ["q_proj", "v_proj"], **STEP},
            {"name": "lora", "id": "dora", "use_dora": True, **STEP}, {"name": "ia3", **STEP},
            {"name": "prefix-tuning", "num_virtual_tokens": 8, **STEP},
            {"name": "prompt-tuning", "num_virtual_tokens": 8, **STEP},
            {"name": "p-tuning", "num_virtual_tokens": 8, **STEP}]


def build_run(model: str | None, limit: int, output: str) -> Path:
    from tunewise.config import parse_config
    from tunewise.experiment import run_experiment

    strategies = [{**a, "max_train_examples": limit} for a in ADAPTERS]
    config = {"output_dir": output, "task": {"source": "demo", "max_test_examples": limit},
              "strategies": strategies, **({"model": model} if model else {})}
    return run_experiment(parse_config(config, "bench"))


def ids(run_dir: Path) -> list[str]:
    from tunewise.runs import Run

    run = Run.open(run_dir, announce=False)
    try:
        return [c.id for c in run.cells()]
    finally:
        run.close()


def hub_bytes(run_dir: Path, served: list[str]) -> int:
    from tunewise.serve.hub import ModelHub

    return ModelHub(run_dir, strategies=served, device="cpu", log=lambda *a: None).memory_bytes()


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024


def load(url: str, models: list[str], inputs: list[str], clients: int, n: int) -> dict:
    import openai

    client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=600)
    for m in models:  # warm-up: one request per model
        client.chat.completions.create(model=m, messages=[{"role": "user", "content": inputs[0]}])

    def one(i: int) -> float:
        start = time.perf_counter()
        client.chat.completions.create(model=models[i % len(models)],
                                       messages=[{"role": "user", "content": inputs[i % len(inputs)]}])
        return time.perf_counter() - start

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        ms = np.array(list(pool.map(one, range(n)))) * 1000
    return {"rps": n / (time.perf_counter() - start), "p50": np.percentile(ms, 50), "p95": np.percentile(ms, 95)}


def serve_and_load(run_dir: Path, served: list[str], inputs: list[str], clients: int, n: int,
                   threads: list[str]) -> dict:
    from tunewise.serve.process import ServerProcess

    args = [a for s in served for a in ("--strategy", s)] + threads
    with ServerProcess(run_dir, args) as server:
        result = load(server.url, served, inputs, clients, n)
        result["rss"] = rss_mib(server.proc.pid)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=32, help="training and test examples of the run it builds")
    ap.add_argument("--requests", type=int, default=128, help="requests per measurement")
    ap.add_argument("--clients", type=int, default=32, help="concurrent clients")
    ap.add_argument("--run", default=None, help="serve this run folder (its PEFT cells) instead of building one")
    ap.add_argument("--model", default=None, help="causal model of the run it builds (default: the config's)")
    ap.add_argument("--output", default="runs/bench-adapters")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads of each server")
    ap.add_argument("--each", action="store_true", help="also serve every adapter alone (see 3.)")
    args = ap.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    run_dir = Path(args.run) if args.run else build_run(args.model, args.limit, args.output)
    served = ids(run_dir)
    one, threads = served[:1], ["--threads", str(args.threads)] if args.threads else []
    inputs = [json.loads(line)["input"] for line in (run_dir / "predictions" / f"{one[0]}.jsonl").read_text()
              .splitlines()]
    b1, ball = hub_bytes(run_dir, one), hub_bytes(run_dir, served)
    r1 = serve_and_load(run_dir, one, inputs, args.clients, args.requests, threads)
    rall = serve_and_load(run_dir, served, inputs, args.clients, args.requests, threads)
    print(f"\nadapters of {run_dir}: {', '.join(served)}")
    print(f"{'served':<16}{'tensors MiB':>12}{'RSS MiB':>9}{'req/s':>8}{'p50 ms':>8}{'p95 ms':>8}")
    for label, b, r in ((f"1 ({one[0]})", b1, r1), (f"all {len(served)}", ball, rall)):
        print(f"{label:<16}{b / 2**20:>12.1f}{r['rss']:>9.0f}{r['rps']:>8.2f}{r['p50']:>8.0f}{r['p95']:>8.0f}")
    print(f"memory all / one: tensors {ball / b1:.3f}x, RSS {rall['rss'] / r1['rss']:.3f}x (goal <= 1.2x)")
    print(f"throughput all / one at {args.clients} clients: {rall['rps'] / r1['rps']:.3f}x (goal >= 0.8x)")
    if args.each:
        alone = {s: serve_and_load(run_dir, [s], inputs, args.clients, args.requests, threads)["rps"]
                 for s in served}
        mean = len(alone) / sum(1 / r for r in alone.values())
        print("each alone, requests/s: " + ", ".join(f"{s} {r:.2f}" for s, r in alone.items()))
        print(f"throughput all / harmonic mean of each alone ({mean:.2f} requests/s): {rall['rps'] / mean:.3f}x")


if __name__ == "__main__":
    main()
