"""Single-stream greedy generation of the embedded SmolLM2 on the CPU: the candidate ways to run it with
transformers, side by side in one process (issue 17, item 2), as ratios to the first.

    .venv/bin/python bench/generation_speed.py [--tokens 64] [--prompts 4] [--threads N] [--compile] [--only ...]

Candidates (each on the same prompts, batch 1, up to --tokens new tokens, EOS ignored so every candidate
generates the same count):
- generate() fp32: what `tunewise serve` runs today;
- generate() with bf16 weights (the CPU's bf16 matmuls; activations follow the weights);
- a plain decode loop (forward + argmax + DynamicCache), fp32 and bf16: generate()'s per-step
  overhead (logits processors, stopping criteria, bookkeeping) removed;
- generate() and the decode loop over int8 weights: `tunewise serve --engine int8` (serve/engines.py: every
  nn.Linear dynamically quantised, per-channel weight scales; 1 byte read per weight instead of 4);
- with --compile: transformers' static KV cache (`cache_implementation="static"`) and torch.compile of the
  forward (compilation takes minutes on a busy CPU, and is not counted; the first calls are warm-up).
Also checks how far every candidate's greedy tokens agree with fp32 generate(): `agree` is the mean length of
the common prefix over the prompts, `same` the share of positions with the same token (bf16 and int8 change
the logits, so they drift after a few tokens; a fp32-exact candidate agrees on every token).

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


def timed(fn, prompts: list[torch.Tensor], tokens: int) -> tuple[float, list[list[int]]]:
    """(tokens/s over all prompts, the greedy tokens of each prompt)."""
    fn(prompts[0], 4)  # warm-up
    start = time.perf_counter()
    got = [fn(ids, tokens) for ids in prompts]
    return len(prompts) * tokens / (time.perf_counter() - start), got


def agreement(got: list[list[int]], reference: list[list[int]]) -> tuple[float, float]:
    """(mean common-prefix length in tokens, share of equal positions) against the reference tokens."""
    prefix = [next((i for i, (a, b) in enumerate(zip(g, r, strict=True)) if a != b), len(g))
              for g, r in zip(got, reference, strict=True)]
    same = [a == b for g, r in zip(got, reference, strict=True) for a, b in zip(g, r, strict=True)]
    return sum(prefix) / len(prefix), sum(same) / len(same)


def candidates(compile_: bool) -> dict:
    from tunewise.serve.engines import int8_model

    fp32, tok = load(torch.float32)
    bf16, _ = load(torch.bfloat16)
    int8 = int8_model(fp32)
    out = {"generate() fp32 (today)": lambda i, n: with_generate(fp32, i, n),
           "generate() bf16 weights": lambda i, n: with_generate(bf16, i, n),
           "decode loop fp32": lambda i, n: decode_loop(fp32, i, n),
           "decode loop bf16": lambda i, n: decode_loop(bf16, i, n),
           "generate() int8 (--engine int8)": lambda i, n: with_generate(int8, i, n),
           "decode loop int8": lambda i, n: decode_loop(int8, i, n)}
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
    ap.add_argument("--only", nargs="*", default=None,
                    help="run only candidates whose name contains one of these words (fp32 generate() always runs)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    fns, tok = candidates(args.compile)
    if args.only:
        first = next(iter(fns))
        fns = {k: v for k, v in fns.items() if k == first or any(w in k for w in args.only)}
    prompts = [tok.apply_chat_template([{"role": "user", "content": f"Write a short note about item {i}."}],
                                       add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
               for i in range(args.prompts)]
    print(f"single-stream greedy generation, {args.prompts} prompts x {args.tokens} tokens, "
          f"{torch.get_num_threads()} threads")
    print(f"{'candidate':<40}{'tokens/s':>10}{'ratio':>8}{'agree (tokens)':>16}{'same':>7}")
    base_speed = reference = None
    for name, fn in fns.items():
        speed, tokens = timed(fn, prompts, args.tokens)
        base_speed, reference = base_speed or speed, reference or tokens
        prefix, same = agreement(tokens, reference)
        print(f"{name:<40}{speed:>10.1f}{speed / base_speed:>8.2f}{prefix:>10.1f}/{args.tokens:<5}{same:>7.0%}")


if __name__ == "__main__":
    main()
