"""Single-stream greedy generation of the embedded SmolLM2 on the CPU: the candidate ways to run it with
transformers, side by side in one process (issue 17, item 2), as ratios to the first.

    .venv/bin/python bench/generation_speed.py [--tokens 64] [--prompts 4] [--threads N] [--compile]

Candidates (each on the same prompts, batch 1, up to --tokens new tokens, EOS ignored so every candidate
generates the same count):
- generate() fp32: what `tunewise serve` runs today;
- generate() with bf16 weights (the CPU's bf16 matmuls; activations follow the weights);
- a plain decode loop (forward + argmax + DynamicCache), fp32 and bf16: generate()'s per-step
  overhead (logits processors, stopping criteria, bookkeeping) removed;
- with --compile: transformers' static KV cache (`cache_implementation="static"`) and torch.compile of the
  forward (compilation takes minutes on a busy CPU, and is not counted; the first calls are warm-up).
Also checks that every candidate's greedy tokens agree with fp32 generate() on the first prompt (bf16 may
differ after a few tokens: it says how many agree).

Timings on a shared machine are noisy: compare ratios from one invocation, not numbers across days.
"""

from __future__ import annotations

import argparse
import time

import torch


def load(dtype: torch.dtype):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunewise.backends.embedded import SMOLLM2, resolve

    path = resolve(SMOLLM2)
    return AutoModelForCausalLM.from_pretrained(path, dtype=dtype).eval(), AutoTokenizer.from_pretrained(path)


@torch.no_grad()
def with_generate(model, ids: torch.Tensor, tokens: int, **kw) -> list[int]:
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=tokens, min_new_tokens=tokens,
                         do_sample=False, pad_token_id=0, **kw)
    return out[0, ids.shape[1]:].tolist()


@torch.no_grad()
def decode_loop(model, ids: torch.Tensor, tokens: int) -> list[int]:
    from transformers import DynamicCache

    from tunewise.backends.scoring import cache_kwarg

    cache, out, step, name = DynamicCache(), [], ids, cache_kwarg(model)
    for _ in range(tokens):
        logits = model(input_ids=step, use_cache=True, **{name: cache}).logits
        step = logits[:, -1].argmax(-1, keepdim=True)
        out.append(int(step))
    return out


def timed(fn, prompts: list[torch.Tensor], tokens: int) -> tuple[float, list[int]]:
    fn(prompts[0], 4)  # warm-up
    start, first = time.perf_counter(), None
    for ids in prompts:
        got = fn(ids, tokens)
        first = first if first is not None else got
    return len(prompts) * tokens / (time.perf_counter() - start), first


def candidates(compile_: bool) -> dict:
    fp32, tok = load(torch.float32)
    bf16, _ = load(torch.bfloat16)
    out = {"generate() fp32 (today)": lambda i, n: with_generate(fp32, i, n),
           "generate() bf16 weights": lambda i, n: with_generate(bf16, i, n),
           "decode loop fp32": lambda i, n: decode_loop(fp32, i, n),
           "decode loop bf16": lambda i, n: decode_loop(bf16, i, n)}
    if compile_:
        for name, model in (("fp32", fp32), ("bf16", bf16)):
            compiled, _ = load(model.dtype)
            compiled.forward = torch.compile(compiled.forward, dynamic=False)
            out[f"static cache + torch.compile {name}"] = (
                lambda i, n, m=compiled: with_generate(m, i, n, cache_implementation="static"))
    return out, tok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=64, help="new tokens per prompt")
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--compile", action="store_true", help="also the static cache + torch.compile candidates")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    fns, tok = candidates(args.compile)
    prompts = [tok.apply_chat_template([{"role": "user", "content": f"Write a short note about item {i}."}],
                                       add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
               for i in range(args.prompts)]
    print(f"single-stream greedy generation, {args.prompts} prompts x {args.tokens} tokens, "
          f"{torch.get_num_threads()} threads")
    print(f"{'candidate':<40}{'tokens/s':>10}{'ratio':>8}{'agree':>8}")
    base_speed = reference = None
    for name, fn in fns.items():
        speed, tokens = timed(fn, prompts, args.tokens)
        base_speed, reference = base_speed or speed, reference or tokens
        agree = next((i for i, (a, b) in enumerate(zip(tokens, reference, strict=True)) if a != b), len(tokens))
        print(f"{name:<40}{speed:>10.1f}{speed / base_speed:>8.2f}{agree:>5}/{len(tokens)}")


if __name__ == "__main__":
    main()
