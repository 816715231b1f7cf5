"""Benchmark: peak memory of label scoring when one input is far longer than the model's context.

    .venv/bin/python bench/long_input_memory.py          # SmolLM2-135M-Instruct (embedded; minutes on a CPU)
    .venv/bin/python bench/long_input_memory.py --tiny   # a 2-layer model with SmolLM2's tokenizer (seconds)

Two variants, each in a FRESH Python process so that neither inherits the other's allocations:

- with: 100 inputs of the built-in demo task, one of them ~20,000 tokens (demo inputs repeated);
- without: the same inputs without the long one (99).

Each process loads the model, fits zero-shot (tunewise's `ScoringPredictor`: shared-prefix KV cache,
batches bounded by tokens, long rows prefilled in chunks) and predicts every input with the default
policy (`task.long_inputs: truncate`: the long input is cut to the model's 8,192-token context). Memory is
the process's resident-set high-water mark (`getrusage(RUSAGE_SELF).ru_maxrss`, MiB): model weights,
tokenizer, activations, KV cache and allocator slack all count. The goal (tunewise issue 14) is a ratio
with/without of at most 1.5. Before the policy existed, the long input went through whole: past 20 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL = 1.5


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def examples(tokenizer, n: int, long_tokens: int, with_long: bool):
    from tunewise.config import TaskConfig
    from tunewise.data import Example, load_task

    task = load_task(TaskConfig(source="demo"), seed=0)
    pool = task.test + task.validation + task.train
    short = pool[:n - 1]
    if not with_long:
        return task, short
    words, text = [e.input for e in pool], ""
    while len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]) < long_tokens:
        text += " " + " ".join(words)
    ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"][:long_tokens]
    long = Example(id="long", input=tokenizer.decode(ids), target=task.labels[0], meta={"source": "bench:long"})
    return task, short[:n // 2] + [long] + short[n // 2:]


def child(args) -> None:
    import torch

    from tunewise.backends.hf_local import CausalLMBackend
    from tunewise.strategies.base import FitContext
    from tunewise.strategies.prompting.zero_shot import ZeroShot, ZeroShotConfig

    torch.set_num_threads(args.threads)
    backend = CausalLMBackend(args.model, device="cpu")
    task, batch = examples(backend.tokenizer, args.n, args.long_tokens, args.child == "with")
    loaded = rss_mib()
    predictor = ZeroShot(ZeroShotConfig(name="zero-shot")).fit(backend, task, FitContext(Path("."), seed=0))
    start = time.perf_counter()
    preds = predictor.predict(batch)
    seconds = time.perf_counter() - start
    cut = [s for p in preds for s in p.trace or () if s.get("step") == "truncated"]
    print(json.dumps({"variant": args.child, "inputs": len(batch), "peak_mib": rss_mib(), "loaded_mib": loaded,
                      "seconds": seconds, "longest_input_tokens": max(len(backend.encode(e.input)) for e in batch),
                      "truncated": [(s["prompt_tokens"], s["kept_tokens"]) for s in cut]}))


def tiny_model(folder: Path) -> str:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from tunewise.backends.embedded import resolve

    tokenizer = AutoTokenizer.from_pretrained(resolve("smollm2-135m-instruct"))
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=8192,
                         tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def run_variant(variant: str, model: str, args) -> dict:
    cmd = [sys.executable, __file__, "--child", variant, "--model", model, "--n", str(args.n),
           "--long-tokens", str(args.long_tokens), "--threads", str(args.threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    if out.returncode != 0:
        sys.exit(f"{variant} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a 2-layer model instead of SmolLM2-135M")
    parser.add_argument("--n", type=int, default=100, help="inputs in the 'with' variant (one of them long)")
    parser.add_argument("--long-tokens", type=int, default=20_000, help="tokens of the long input")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "0")) or
                        max(1, (os.cpu_count() or 2) // 2), help="torch threads per process")
    parser.add_argument("--child", choices=["with", "without"], help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    with tempfile.TemporaryDirectory() as tmp:
        model = tiny_model(Path(tmp)) if args.tiny else "smollm2-135m-instruct"
        name = "tiny 2-layer Llama (context 8,192)" if args.tiny else "SmolLM2-135M-Instruct (context 8,192)"
        print(f"label scoring (zero-shot), {name}, {args.threads} thread(s); peak = RSS high-water of a fresh "
              "process per variant")
        rows = {v: run_variant(v, model, args) for v in ("without", "with")}
    for v, r in rows.items():
        cut = ", ".join(f"{a:,} -> {b:,} tokens" for a, b in r["truncated"]) or "none"
        print(f"  {v:<8} {r['inputs']:>4} inputs  longest {r['longest_input_tokens']:>6,} tokens  peak "
              f"{r['peak_mib']:>7,.0f} MiB (after loading {r['loaded_mib']:,.0f} MiB)  {r['seconds']:6.1f} s  "
              f"truncated: {cut}")
    ratio = rows["with"]["peak_mib"] / rows["without"]["peak_mib"]
    print(f"peak memory with / without the long input: {ratio:.2f}x (goal <= {GOAL}x: "
          f"{'met' if ratio <= GOAL else 'NOT met'})")


if __name__ == "__main__":
    main()
