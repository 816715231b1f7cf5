"""Load test of `tunewise serve`: many concurrent clients for a fixed time against a real server process on a
loopback port, mixing short and long inputs, streaming and not. Nothing may fail; memory must stay bounded.

    .venv/bin/python bench/serve_load.py [--duration 60] [--clients 32] [--run RUN_FOLDER] [--model tiny|NAME]

Without --run it builds a small run itself (zero-shot on a synthetic sentiment task) on `--model`: `tiny` (the
default: a 2-layer Llama with SmolLM2's tokenizer and a 1,024-token context, built from a config in seconds,
no download) or a model name such as `smollm2-135m-instruct`. Each client (a thread with the openai SDK) loops
until the time is up over this mix of requests:

- `classify`: a short review to the zero-shot strategy (label scoring, batched by the server's model thread);
- `generate` / `stream`: a short chat to the base model, 8 tokens, whole and streamed (SSE);
- `long-cut`: an input several times the model's context to the base model with `"truncation": "auto"` (the
  server's policy cuts it to fit: 200), and `long-strategy` the same to the zero-shot strategy;
- `long-400`: the same long input without truncation: it must get a clean 400 `context_length_exceeded`
  (OpenAI's answer), counted apart as intended, not as a failure.

Prints the number of requests, failed requests (anything else than the intended answer: must be 0), the
intended 400s, p50/p99 latency in ms (per kind and overall, successful requests), and the server's resident
memory (MiB, psutil, sampled every 0.2 s: at the start and its peak). Exits 1 when a request failed.

Timings on a shared machine are noisy: compare within one invocation; quiet re-run with the defaults.
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

KINDS = ["classify", "long-400", "stream", "long-cut", "generate", "long-strategy", "classify", "stream"]
WORDS = {"positive": ["great", "love", "excellent", "happy", "superb"], "negative": ["awful", "broken", "poor",
                                                                                    "angry", "refund"]}


def tiny_model(folder: Path) -> str:
    """A 2-layer Llama with SmolLM2's tokenizer (from the embedded GGUF; no network), saved to `folder`."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from tunewise.backends.embedded import EMBEDDED, SMOLLM2, cache_root, package_dir

    if (folder / "config.json").is_file():
        return str(folder)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no library bars on the bench's output
    cached = cache_root() / "models" / SMOLLM2
    if (cached / "tokenizer_config.json").is_file():
        tok = AutoTokenizer.from_pretrained(cached)
    else:
        module, gguf_file, pip_name = EMBEDDED[SMOLLM2]
        tok = AutoTokenizer.from_pretrained(package_dir(module, pip_name), gguf_file=gguf_file)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         tie_word_embeddings=True, pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


def build_run(output: Path, model: str) -> Path:
    from tunewise.config import parse_config
    from tunewise.experiment import run_experiment

    output.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    data = output / "reviews.csv"
    with open(data, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for i in range(40):
            label = ["positive", "negative"][i % 2]
            writer.writerow([f"the app was {rng.choice(WORDS[label])} and {rng.choice(WORDS[label])}", label])
    model = tiny_model(output / "tiny-llama") if model == "tiny" else model
    config = parse_config({"output_dir": str(output / "runs"), "model": model, "seed": 0,
                           "task": {"source": str(data), "test_size": 0.3}, "strategies": ["zero-shot"]}, "bench")
    return run_experiment(config)


def one_request(client, kind: str, base: str, long_text: str, i: int):
    """Send one request of `kind`; returns 'ok' or 'intended-400'; raises on anything else."""
    import openai

    short = f"the screen was {'great' if i % 2 else 'broken'} and {'happy' if i % 3 else 'poor'}"
    if kind == "classify":
        reply = client.chat.completions.create(model="zero-shot", messages=[{"role": "user", "content": short}])
        assert reply.choices[0].message.content, "empty classification"
    elif kind in ("generate", "long-cut"):
        text = short if kind == "generate" else long_text
        reply = client.chat.completions.create(model=base, messages=[{"role": "user", "content": text}], max_tokens=8,
                                               temperature=0, extra_body={"truncation": "auto"})
        assert reply.choices[0].finish_reason in ("stop", "length"), reply
    elif kind == "stream":
        chunks = list(client.chat.completions.create(model=base, messages=[{"role": "user", "content": short}],
                                                     max_tokens=8, stream=True))
        assert chunks and chunks[-1].choices[0].finish_reason in ("stop", "length"), "stream did not finish"
    elif kind == "long-strategy":
        reply = client.chat.completions.create(model="zero-shot", messages=[{"role": "user", "content": long_text}],
                                               extra_body={"truncation": "auto"})
        assert reply.choices[0].message.content, "empty classification"
    elif kind == "long-400":
        try:
            client.chat.completions.create(model=base, messages=[{"role": "user", "content": long_text}], max_tokens=8)
        except openai.BadRequestError as err:
            assert (err.body or {}).get("code") == "context_length_exceeded", err
            return "intended-400"
        raise AssertionError("an input over the context was answered without truncation: expected a 400")
    return "ok"


class Sampler(threading.Thread):
    """The server's resident memory (MiB, with its child processes), every 0.2 s until stopped."""

    def __init__(self, pid: int):
        import psutil

        super().__init__(daemon=True)
        self.proc, self.stop = psutil.Process(pid), threading.Event()
        self.start_mb = self.peak_mb = self.rss()

    def rss(self) -> float:
        procs = [self.proc, *self.proc.children(recursive=True)]
        return sum(p.memory_info().rss for p in procs) / 2**20

    def run(self) -> None:
        while not self.stop.wait(0.2):
            self.peak_mb = max(self.peak_mb, self.rss())


def load(url: str, base: str, clients: int, duration: float, long_text: str) -> dict:
    import openai

    client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=600)
    lat: dict[str, list[float]] = defaultdict(list)
    outcomes: dict[str, int] = defaultdict(int)
    failures: list[str] = []
    lock, deadline = threading.Lock(), time.monotonic() + duration

    def worker(c: int) -> None:
        i = 0
        while time.monotonic() < deadline:
            kind = KINDS[(c + i) % len(KINDS)]
            start = time.perf_counter()
            try:
                outcome = one_request(client, kind, base, long_text, c * 100_000 + i)
            except Exception as err:  # noqa: BLE001 (every failure is counted and shown)
                outcome = "failed"
                with lock:
                    failures.append(f"{kind}: {type(err).__name__}: {str(err)[:200]}")
            with lock:
                outcomes[outcome] += 1
                if outcome == "ok":
                    lat[kind].append((time.perf_counter() - start) * 1000)
            i += 1

    threads = [threading.Thread(target=worker, args=(c,)) for c in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start  # the duration plus the requests still in flight at its end
    return {"latency_ms": lat, "outcomes": outcomes, "failures": failures, "wall_s": wall}


def report(result: dict, sampler: Sampler, clients: int, duration: float) -> int:
    lat, outcomes, failures = result["latency_ms"], result["outcomes"], result["failures"]
    total = sum(outcomes.values())
    print(f"\n{clients} clients for {duration:.0f} s (all answered after {result['wall_s']:.1f} s): {total} requests "
          f"({total / result['wall_s']:.1f} req/s), "
          f"{outcomes['failed']} failed, {outcomes['intended-400']} intended 400s (context_length_exceeded)")
    print(f"{'kind':<15}{'requests':>9}{'p50 ms':>10}{'p99 ms':>10}")
    everything = [ms for values in lat.values() for ms in values]
    for kind, values in [*sorted(lat.items()), ("all (ok)", everything)]:
        if values:
            print(f"{kind:<15}{len(values):>9}{np.percentile(values, 50):>10.1f}{np.percentile(values, 99):>10.1f}")
    print(f"server RSS (MiB): start {sampler.start_mb:.0f}, peak {sampler.peak_mb:.0f} "
          f"({sampler.peak_mb / sampler.start_mb:.2f}x)")
    for line in failures[:10]:
        print(f"  failed: {line}")
    return 1 if outcomes["failed"] else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of load (default 60)")
    ap.add_argument("--clients", type=int, default=32, help="concurrent clients (default 32)")
    ap.add_argument("--run", default=None, help="serve this run folder (it needs a zero-shot strategy) instead "
                    "of building one")
    ap.add_argument("--model", default="tiny", help="the built run's model: tiny (default) or a model name")
    ap.add_argument("--output", default="runs/bench-serve-load", help="where the built run goes")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads of the server")
    args = ap.parse_args()

    from tunewise.serve.process import ServerProcess

    run_dir = Path(args.run) if args.run else build_run(Path(args.output), args.model)
    long_text = " ".join(f"word{i % 97} is long" for i in range(3000))  # ~12,000 tokens: over any small context
    server_args = ["--threads", str(args.threads)] if args.threads else []
    with ServerProcess(run_dir, server_args) as server:
        import openai

        client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=600)
        base = next(m.id for m in client.models.list() if m.model_extra["tunewise"]["kind"] == "base")
        one_request(client, "classify", base, long_text, 0)  # warm up
        sampler = Sampler(server.proc.pid)
        sampler.start()
        result = load(server.url, base, args.clients, args.duration, long_text)
        sampler.stop.set()
        alive = server.alive()
    code = report(result, sampler, args.clients, args.duration)
    if not alive:
        print("the server died under load")
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    main()
