"""Serving throughput and latency of `tunewise serve` on the embedded SmolLM2, side by side with a
llama.cpp server (llama-cpp-python) on the same model's GGUF, in one invocation.

    .venv/bin/python bench/serve_throughput.py [--limit N] [--run RUN_FOLDER] [--levels 1,8,32] [--threads N]
                                               [--no-peer] [--engines transformers,int8,llamacpp]
                                               [--single-stream-only]

1. Builds a small run (zero-shot and few-shot on the demo task; skipped with --run), starts `tunewise serve`
   on it as a real process, and at each level of concurrent clients sends `--limit` requests per level of
   two kinds through the openai SDK: `classify` (chat on the zero-shot strategy: label scoring, batched by the
   server) and `generate` (chat on the base model, 16 greedy tokens). Prints requests/s and latency
   percentiles (p50/p95/p99), and how many requests the server's model thread ran per batch.
2. The peer: llama-cpp-python's OpenAI-compatible server (`bench/llamacpp_peer.py`). When absent it is
   built into its own environment under the bench cache first; that build takes minutes, once. The same
   `generate` workload runs against it at each level (`classify` has no peer: it is a tunewise strategy).
3. Single-stream generation: tokens/s of one client asking for up to 64 greedy tokens, through each server,
   and llama.cpp's library in-process (`llama_cpp.Llama`, no HTTP: on some machines its own server is several
   times slower than it), and the ratio tunewise / the faster llama.cpp (the goal of issue 17: >= 0.5) for
   each `tunewise serve --engine` in --engines (serve/engines.py; `llamacpp` runs the peer's build in tunewise's
   own llama.cpp worker); also the local backend in-process. --single-stream-only skips 1. and 2.

Timings on a shared machine are noisy: compare ratios from one invocation, not numbers across days.
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np


def build_run(limit: int, output: str) -> Path:
    from tunewise.config import parse_config
    from tunewise.experiment import run_experiment

    config = parse_config({"output_dir": output, "task": {"source": "demo", "max_test_examples": limit},
                           "strategies": ["zero-shot", {"name": "few-shot", "k": 4}]}, "bench")
    return run_experiment(config)


def health(url: str) -> dict:
    with urllib.request.urlopen(url.removesuffix("/v1") + "/health", timeout=30) as r:
        return json.loads(r.read())


def load_level(client, kind: str, inputs: list[str], clients: int, n: int, base: str) -> dict:
    def one(i: int) -> float:
        start = time.perf_counter()
        messages = [{"role": "user", "content": inputs[i % len(inputs)]}]
        if kind == "classify":
            client.chat.completions.create(model="zero-shot", messages=messages)
        else:
            client.chat.completions.create(model=base, messages=messages, max_tokens=16, temperature=0)
        return time.perf_counter() - start

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = list(pool.map(one, range(n)))
    wall = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    return {"kind": kind, "clients": clients, "requests": n, "rps": n / wall,
            "p50": np.percentile(ms, 50), "p95": np.percentile(ms, 95), "p99": np.percentile(ms, 99)}


def serving(run_dir: Path, limit: int, levels: list[int], threads: int | None) -> None:
    import openai

    from tunewise.serve.process import ServerProcess

    inputs = [json.loads(line)["input"] for line in (run_dir / "predictions" / "zero-shot.jsonl").read_text()
              .splitlines()]
    with ServerProcess(run_dir, ["--threads", str(threads)] if threads else []) as server:
        client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=600)
        base = next(m.id for m in client.models.list() if m.model_extra["tunewise"]["kind"] == "base")
        client.chat.completions.create(model="zero-shot", messages=[{"role": "user", "content": "warm up"}])
        print(f"\n{'workload':<10}{'clients':>8}{'requests':>9}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}"
              f"{'p99 ms':>9}{'per batch':>10}")
        for kind in ("classify", "generate"):
            for clients in levels:
                before = health(server.url)
                r = load_level(client, kind, inputs, clients, max(limit, clients), base)
                after = health(server.url)
                batches = max(after["model_batches"] - before["model_batches"], 1)
                per_batch = (after["model_items"] - before["model_items"]) / batches
                print(f"{r['kind']:<10}{r['clients']:>8}{r['requests']:>9}{r['rps']:>9.2f}{r['p50']:>9.0f}"
                      f"{r['p95']:>9.0f}{r['p99']:>9.0f}{per_batch:>10.1f}")


def single_stream(url: str, model: str, prompts: list[str], max_tokens: int = 64) -> float:
    """Completion tokens per second of one client asking for greedy answers, one at a time (tokens/s)."""
    import openai

    client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=600)
    client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=4)
    start, tokens = time.perf_counter(), 0
    for p in prompts:
        out = client.chat.completions.create(model=model, messages=[{"role": "user", "content": p}],
                                             max_tokens=max_tokens, temperature=0)
        tokens += out.usage.completion_tokens
    return tokens / (time.perf_counter() - start)


def local_speed(prompts: list[str]) -> float:
    """Greedy tokens/s of tunewise's local backend in this process (no server), batch 1."""
    from tunewise.backends import load_backend
    from tunewise.backends.embedded import SMOLLM2

    backend = load_backend(SMOLLM2, "causal", "cpu")
    rendered = [backend.render([{"role": "user", "content": p}], add_generation_prompt=True) for p in prompts]
    backend.generate(rendered[:1], max_new_tokens=4)  # warm-up
    start = time.perf_counter()
    tokens = sum(n for _, n in backend.generate(rendered, max_new_tokens=64, batch_size=1))
    return tokens / (time.perf_counter() - start)


def generation_speed(run_dir: Path, limit: int, threads: int | None, peer: bool, engines: list[str]) -> None:
    import os

    import openai

    from tunewise.serve.process import ServerProcess

    prompts = [f"Write a short note about item {i}." for i in range(max(2, min(limit, 4)))]
    if "llamacpp" in engines and not os.environ.get("TUNEWISE_LLAMACPP_PYTHON"):
        from llamacpp_peer import ensure_peer

        os.environ["TUNEWISE_LLAMACPP_PYTHON"] = str(ensure_peer())  # the engine runs the peer's build
    served = {}
    for engine in engines:
        with ServerProcess(run_dir, [*(["--threads", str(threads)] if threads else []), "--engine", engine]) as server:
            client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0)
            base = next(m.id for m in client.models.list() if m.model_extra["tunewise"]["kind"] == "base")
            served[engine] = single_stream(server.url, base, prompts)
    local = local_speed(prompts)
    print(f"\nsingle-stream generation, greedy, {len(prompts)} prompts x up to 64 tokens (tokens/s)")
    for engine, speed in served.items():
        print(f"{f'tunewise serve --engine {engine}':<48}{speed:>8.1f}")
    print(f"{'tunewise local backend, in-process':<48}{local:>8.1f}")
    if not peer:
        return
    from llamacpp_peer import PeerServer, in_process_speed, smollm2_gguf

    with PeerServer(smollm2_gguf(), threads) as peer_server:
        server_speed = single_stream(peer_server.url, peer_server.model, prompts)
    library_speed = in_process_speed(smollm2_gguf(), prompts, threads)
    theirs = max(server_speed, library_speed)  # the peer at its best
    print(f"{'llama.cpp server (llama-cpp-python, Q4_1 GGUF)':<48}{server_speed:>8.1f}")
    print(f"{'llama.cpp in-process (llama_cpp.Llama, same GGUF)':<48}{library_speed:>8.1f}")
    for engine, speed in served.items():
        print(f"{f'ratio tunewise serve --engine {engine} / llama.cpp':<48}{speed / theirs:>8.2f}   (goal >= 0.5; "
              f"against the faster llama.cpp, {theirs:.1f})")


def peer_serving(limit: int, levels: list[int], threads: int | None) -> None:
    """The `generate` workload against the llama.cpp server at each level of concurrent clients."""
    import openai

    from llamacpp_peer import PeerServer, smollm2_gguf

    inputs = [f"Summarise review {i} in one line." for i in range(8)]
    with PeerServer(smollm2_gguf(), threads) as engine:
        client = openai.OpenAI(base_url=engine.url, api_key="unused", max_retries=0, timeout=600)
        print(f"\nllama.cpp server (peer)\n{'workload':<10}{'clients':>8}{'requests':>9}{'req/s':>9}"
              f"{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}")
        for clients in levels:
            r = load_level(client, "generate", inputs, clients, max(limit, clients), engine.model)
            print(f"{r['kind']:<10}{r['clients']:>8}{r['requests']:>9}{r['rps']:>9.2f}{r['p50']:>9.0f}"
                  f"{r['p95']:>9.0f}{r['p99']:>9.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=32, help="requests per concurrency level (and test examples "
                    "of the run it builds)")
    ap.add_argument("--levels", default="1,8,32", help="comma-separated numbers of concurrent clients")
    ap.add_argument("--run", default=None, help="serve this run folder instead of building one")
    ap.add_argument("--output", default="runs/bench")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads for the server and the local "
                    "backend (default: torch's; 1 is faster on a busy shared machine)")
    ap.add_argument("--no-peer", action="store_true", help="skip the llama.cpp peer (and its first build)")
    ap.add_argument("--engines", default="transformers,int8,llamacpp",
                    help="comma-separated `tunewise serve --engine` values timed single-stream")
    ap.add_argument("--single-stream-only", action="store_true", help="only the single-stream comparison (3.)")
    args = ap.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    run_dir = Path(args.run) if args.run else build_run(min(args.limit, 16), args.output)
    levels = [int(x) for x in args.levels.split(",")]
    if not args.no_peer:
        from llamacpp_peer import ensure_peer

        ensure_peer()  # before anything is timed: the first build takes minutes
    if not args.single_stream_only:
        serving(run_dir, args.limit, levels, args.threads)
        if not args.no_peer:
            peer_serving(args.limit, levels, args.threads)
    generation_speed(run_dir, args.limit, args.threads, not args.no_peer, args.engines.split(","))


if __name__ == "__main__":
    main()
