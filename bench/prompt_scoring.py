"""Benchmark: the naive way to classify with a prompted LM vs tunewise's `ScoringPredictor`.

    .venv/bin/python bench/prompt_scoring.py            # 500 examples (minutes on a laptop CPU)
    .venv/bin/python bench/prompt_scoring.py --limit 50 # a quick look

Both run SmolLM2-135M-Instruct (embedded, fp32) with the same 8-shot prompt (system instruction with the
label set, then 8 balanced demonstrations from the training split as chat turns) in one process:

- naive (what most tutorials do): one `model.generate` per example over the full prompt, greedy, then
  parse the label out of the generated text (exact, else the first label named, else a failure);
- tunewise: `ScoringPredictor`, which runs the shared prefix once, reuses its KV cache, batches the
  examples' suffixes and scores every label's log-likelihood (no parsing, no failures).

The two differ in accuracy as well as speed, because the naive way's answers often cannot be parsed.
Two further checks make the comparison fair: a McNemar test on the paired outcomes says whether the
accuracy difference is beyond noise, and on the first --exact-check examples the obvious way to score
labels (one full forward per example and label, no cache, no packing) runs too: its predictions must
agree with tunewise's (the speed-up is not bought with different answers) and its speed is printed.

Examples: the whole demo set (all splits, 480 rows) minus the 8 demonstrations = 472, shuffled (seeded)
and repeated from the start to reach --n (500: 28 examples appear twice). --limit keeps the first N.
Throughput is printed as examples/s, tokens actually run through the model per second, and the FLOP/s
that implies (~2 x parameters per token, attention ignored) against this machine's measured fp32 matmul
peak (best of repeated 1024x1024 matmuls). Other processes on the machine make absolute numbers noisy;
the ratio between the two methods is what this measures.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch

from tunewise.backends.embedded import SMOLLM2
from tunewise.backends.hf_local import CausalLMBackend
from tunewise.config import TaskConfig
from tunewise.data import load_task
from tunewise.evaluation.stats import mcnemar
from tunewise.strategies.prompting._common import ScoringPredictor, demo_messages, system_prompt
from tunewise.strategies.prompting.few_shot import select_demos


def matmul_flops(size: int = 1024, repeats: int = 20) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * size**3 / min(times)


def parse_label(text: str, labels: list[str]) -> str | None:
    low = text.strip().lower().strip(" .\"'")
    for label in labels:
        if low == label.lower():
            return label
    found = [(low.find(label.lower()), label) for label in labels if label.lower() in low]
    return min(found)[1] if found else None


@torch.no_grad()
def naive(backend: CausalLMBackend, shared, examples, labels, max_new_tokens: int):
    tok, model = backend.tokenizer, backend.model
    outputs, processed = [], 0
    for e in examples:
        text = tok.apply_chat_template(shared + [{"role": "user", "content": e.input}], tokenize=False,
                                       add_generation_prompt=True)
        enc = tok(text, return_tensors="pt", add_special_tokens=False)
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tok.pad_token_id)
        new = out[0, enc["input_ids"].shape[1]:]
        processed += enc["input_ids"].shape[1] + len(new)
        outputs.append(parse_label(tok.decode(new, skip_special_tokens=True), labels))
    return outputs, processed


@torch.no_grad()
def naive_scoring(backend: CausalLMBackend, shared, examples, labels, continuations):
    """Label log-likelihood the obvious way: for each example, every label's full prompt+label in one padded
    batch, no KV cache reuse. Token ids are built exactly as tunewise builds them (prefix, suffix, label)."""
    model, pad = backend.model, backend.tokenizer.pad_token_id or 0
    outputs, processed = [], 0
    conts = [backend.encode(c) for c in continuations]
    for e in examples:
        prefix, suffix = backend.split_prompt(shared, [{"role": "user", "content": e.input}])
        head = backend.encode(prefix) + backend.encode(suffix)
        rows = [head + c for c in conts]
        width = max(map(len, rows))
        ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
        logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), -1)
        totals = [sum(float(logp[i, len(head) + j - 1, t]) for j, t in enumerate(c)) for i, c in enumerate(conts)]
        outputs.append(labels[max(range(len(labels)), key=totals.__getitem__)])
        processed += sum(map(len, rows))
    return outputs, processed


def scoring(backend: CausalLMBackend, task, shared, examples, batch_size: int):
    predictor = ScoringPredictor(backend, task, shared, batch_size=batch_size)
    preds = predictor.predict(examples)
    prefix, _ = backend.split_prompt(shared, [{"role": "user", "content": "x"}])
    suffix_tokens = sum(len(backend.encode(backend.split_prompt(shared, [{"role": "user", "content": e.input}])[1]))
                        for e in examples)
    packed = sum(len(backend.encode(c)) - 1 for c in predictor.continuations)  # label tokens after the first
    processed = len(backend.encode(prefix)) + suffix_tokens + len(examples) * packed
    return [p.output for p in preds], processed, predictor.continuations


def examples_for(task, demos, n: int, seed: int):
    demo_ids = {d.id for d in demos}
    pool = [e for e in task.train + task.validation + task.test if e.id not in demo_ids]
    random.Random(seed).shuffle(pool)
    return [pool[i % len(pool)] for i in range(n)], len(pool)


def report(name: str, seconds: float, outputs, examples, processed: int, params: int, peak: float) -> float:
    n = len(examples)
    acc = sum(o == e.target for o, e in zip(outputs, examples, strict=True)) / n
    failures = sum(o is None for o in outputs)
    tps = processed / seconds
    print(f"{name:9s} {n / seconds:8.2f} ex/s  accuracy {acc:.3f}  parse failures {failures:3d}  "
          f"{tps:8.0f} tok/s run ({processed / n:.0f} tok/ex)  {tps * 2 * params / 1e9:6.1f} GFLOP/s "
          f"= {100 * tps * 2 * params / peak:4.1f}% of matmul peak  [{seconds:.1f} s]")
    return n / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=500, help="examples (the 472 non-demo rows, repeated to n)")
    ap.add_argument("--limit", type=int, default=None, help="run only the first N examples (e.g. 50)")
    ap.add_argument("--k", type=int, default=8, help="demonstrations in the prompt")
    ap.add_argument("--batch-size", type=int, default=16, help="ScoringPredictor batch size")
    ap.add_argument("--max-new-tokens", type=int, default=16, help="naive generation budget per example")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice; "
                    "1 can be faster on a machine busy with other work)")
    ap.add_argument("--exact-check", type=int, default=40, help="also score the first N examples the obvious "
                    "per-label way (no cache) and check its predictions equal tunewise's; 0 skips it")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    task = load_task(TaskConfig(source="demo"), seed=args.seed)
    demos = select_demos(task.train, args.k, "balanced", args.seed, True)
    examples, pool = examples_for(task, demos, args.n, args.seed)
    examples = examples[:args.limit] if args.limit else examples
    backend = CausalLMBackend(SMOLLM2, device="cpu")
    params = backend.count_parameters()
    shared = [{"role": "system", "content": system_prompt(task)}] + demo_messages(demos)
    prompt_tokens = backend.count_tokens(backend.render(shared + [{"role": "user", "content": examples[0].input}],
                                                        True))
    peak = statistics.median(matmul_flops() for _ in range(3))
    repeat = f" ({len(examples) - pool} repeated)" if len(examples) > pool else ""
    print(f"model {SMOLLM2} ({params / 1e6:.1f} M params, fp32, {torch.get_num_threads()} threads) · "
          f"{len(examples)} examples from {pool} demo rows{repeat} · {args.k}-shot prompt of "
          f"~{prompt_tokens} tokens · {len(task.labels)} labels")
    print(f"fp32 matmul 1024x1024: {peak / 1e9:.1f} GFLOP/s (median of 3 bests of 20)")

    naive(backend, shared, examples[:1], task.labels, args.max_new_tokens)  # warm-up, untimed
    scoring(backend, task, shared, examples[:2], args.batch_size)
    t0 = time.perf_counter()
    naive_out, naive_tokens = naive(backend, shared, examples, task.labels, args.max_new_tokens)
    naive_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    score_out, score_tokens, continuations = scoring(backend, task, shared, examples, args.batch_size)
    score_s = time.perf_counter() - t0
    slow = report("naive", naive_s, naive_out, examples, naive_tokens, params, peak)
    fast = report("tunewise", score_s, score_out, examples, score_tokens, params, peak)
    print(f"ratio: tunewise ScoringPredictor is {fast / slow:.1f}x the naive examples/s")
    right_naive = [o == e.target for o, e in zip(naive_out, examples, strict=True)]
    right_fast = [o == e.target for o, e in zip(score_out, examples, strict=True)]
    b = sum(x and not y for x, y in zip(right_fast, right_naive, strict=True))
    c = sum(y and not x for x, y in zip(right_fast, right_naive, strict=True))
    test = mcnemar(b, c)
    verdict = "beyond noise" if test["pvalue"] < 0.05 else "within noise"
    print(f"accuracy difference {100 * (sum(right_fast) - sum(right_naive)) / len(examples):+.1f} points "
          f"(tunewise right/naive wrong {b}, the reverse {c}; {test['method']} p={test['pvalue']:.2g}: {verdict})")
    if args.exact_check:
        subset = examples[:args.exact_check]
        t0 = time.perf_counter()
        exact_out, exact_tokens = naive_scoring(backend, shared, subset, task.labels, continuations)
        exact_s = time.perf_counter() - t0
        exact = report("per-label", exact_s, exact_out, subset, exact_tokens, params, peak)
        same = sum(a == b for a, b in zip(exact_out, score_out, strict=False))
        print(f"per-label scoring without cache (first {len(subset)}): same prediction as tunewise on "
              f"{same}/{len(subset)} examples; tunewise is {fast / exact:.1f}x its examples/s")


if __name__ == "__main__":
    main()
