"""Constrained JSON decoding on CPU: outlines (outlines_core) vs xgrammar vs no constraint, side by side.

    .venv/bin/python bench/constrained_decoding.py                  # tiny random model + SmolLM2, 4 prompts each
    .venv/bin/python bench/constrained_decoding.py --models smollm2 --prompts 8

Both libraries turn the same JSON schema (nested object, enums, an array of objects, bounded strings and
integers) into a transformers logits processor; the model, prompts and greedy decoding are identical. Per
library and model it prints: the schema's compile time (s), generated tokens/s and its ratio to
unconstrained generation of the same number of tokens, and how many outputs parse as JSON and validate
against the schema (jsonschema). The tiny model is a 2-layer Llama with random weights and SmolLM2's
tokenizer (as in the tests): what it writes is noise, so only a constraint makes it valid JSON.

Timings on a shared machine are noisy: compare the ratios of one invocation, not numbers across days.
"""

from __future__ import annotations

import argparse
import json
import time

import jsonschema
import torch

SCHEMA = {
    "type": "object",
    "properties": {
        "customer": {"type": "object", "properties": {
            "name": {"type": "string", "maxLength": 24},
            "tier": {"enum": ["free", "pro", "enterprise"]}}, "required": ["name", "tier"],
            "additionalProperties": False},
        "items": {"type": "array", "maxItems": 3, "items": {"type": "object", "properties": {
            "sku": {"enum": ["A-100", "B-200", "C-300"]},
            "quantity": {"type": "integer", "minimum": 1, "maximum": 99}},
            "required": ["sku", "quantity"], "additionalProperties": False}},
        "priority": {"enum": ["low", "normal", "urgent"]},
        "refund": {"type": "boolean"},
    },
    "required": ["customer", "items", "priority", "refund"],
    "additionalProperties": False,
}
PROMPTS = [
    "Dana (enterprise plan) wants 2 of A-100 and 1 of C-300 refunded today, it is urgent.",
    "Order from Li, free tier: 5 x B-200. No refund needed, normal priority.",
    "Sam on pro ordered 1 C-300; it arrived broken, please refund.",
    "Ana, enterprise: 10 of A-100, 3 of B-200, low priority, no refund.",
]


def tiny_model(tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id)
    return LlamaForCausalLM(config).eval()


def load(name: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunewise.backends.embedded import dequantised_smollm2

    path = dequantised_smollm2()
    tok = AutoTokenizer.from_pretrained(path)
    model = tiny_model(tok) if name == "tiny" else AutoModelForCausalLM.from_pretrained(path).eval()
    return model, tok


def outlines_processor(model, tok):
    import outlines
    from outlines.backends.outlines_core import OutlinesCoreBackend

    backend = OutlinesCoreBackend(outlines.from_transformers(model, tok))
    return lambda: backend.get_json_schema_logits_processor(json.dumps(SCHEMA))


def xgrammar_processor(model, tok):
    import xgrammar as xgr
    from xgrammar.contrib.hf import LogitsProcessor

    info = xgr.TokenizerInfo.from_huggingface(tok, vocab_size=model.config.vocab_size)
    compiler = xgr.GrammarCompiler(info, cache_enabled=False)  # measure a real compile each time
    return lambda: LogitsProcessor(compiler.compile_json_schema(json.dumps(SCHEMA), any_whitespace=False))


@torch.no_grad()
def run(model, tok, prompts: list[str], make, max_new_tokens: int, min_new_tokens: int = 0):
    """(compile seconds, generated tokens, generation seconds, outputs)."""
    compile_s, tokens, gen_s, outputs = 0.0, 0, 0.0, []
    for text in prompts:
        messages = [{"role": "system", "content": "Extract the order as JSON with customer, items, priority, "
                     "refund."}, {"role": "user", "content": text}]
        enc = tok(tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True),
                  return_tensors="pt", add_special_tokens=False)
        t0 = time.perf_counter()
        processors = [make()] if make else []
        t1 = time.perf_counter()
        out = model.generate(**enc, max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens, do_sample=False,
                             logits_processor=processors, pad_token_id=tok.pad_token_id)
        t2 = time.perf_counter()
        new = out[0, enc["input_ids"].shape[1]:]
        compile_s, gen_s, tokens = compile_s + t1 - t0, gen_s + t2 - t1, tokens + len(new)
        outputs.append(tok.decode(new, skip_special_tokens=True))
    return compile_s, tokens, gen_s, outputs


def valid(text: str) -> bool:
    try:
        jsonschema.validate(json.loads(text), SCHEMA)
    except (ValueError, jsonschema.ValidationError):
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="tiny,smollm2")
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=160)
    args = parser.parse_args()
    prompts = (PROMPTS * args.prompts)[:args.prompts]
    print(f"{'model':8} {'method':12} {'compile s':>9} {'tokens':>6} {'tok/s':>7} {'vs none':>7} {'valid':>6}")
    for name in args.models.split(","):
        model, tok = load(name)
        results, warmup = {}, {}
        for method, factory in (("xgrammar", xgrammar_processor), ("outlines", outlines_processor)):
            t0 = time.perf_counter()
            make = factory(model, tok)
            run(model, tok, prompts[:1], make, 4)  # first use: outlines_core torch.compiles its masking kernel
            warmup[method] = time.perf_counter() - t0
            results[method] = run(model, tok, prompts, make, args.max_new_tokens)
        # Unconstrained, forced to the same length as the longest constrained output: the same work per token.
        longest = max(r[1] for r in results.values()) // len(prompts)
        run(model, tok, prompts[:1], None, 4)
        results["none"] = run(model, tok, prompts, None, longest, longest)
        base = results["none"][1] / results["none"][2]
        for method, (compile_s, tokens, gen_s, outputs) in results.items():
            rate = tokens / gen_s
            print(f"{name:8} {method:12} {compile_s / len(prompts):9.3f} {tokens:6d} {rate:7.1f} {rate / base:7.2f} "
                  f"{sum(map(valid, outputs)):3d}/{len(outputs)}" + (f"   (setup + first call {warmup[method]:.1f} s)"
                                                                     if method in warmup else ""))
        print(f"{name} sample: {results['xgrammar'][3][0][:200]}")


if __name__ == "__main__":
    main()
