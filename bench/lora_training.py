"""LoRA training throughput: tunewise's training path vs the plain recipe users copy, side by side.

    python bench/lora_training.py --limit 32        # quick; drop --limit for the whole demo train split

Same model (embedded SmolLM2-135M), same data (demo task train split), same LoRA and optimiser settings.
- tunewise: `_causal.encode_examples` + `_train.train()`: length-grouped batches with dynamic padding,
  loss on the answer only, bf16 autocast when this machine runs bf16 matmuls faster than fp32.
- plain: `Trainer` on the same token sequences padded to max_length, fp32, loss on every real token.
Each recipe runs in its own subprocess so its peak memory is its own. Printed per recipe: real (non-pad)
tokens/s, peak RSS and its growth over the loaded model, the answer-only validation loss (computed the same
way for both, fp32, so they compare), and achieved FLOP/s (4*N per real token for LoRA: forward 2N plus
backward through activations 2N, no weight gradients for the frozen N) against this machine's measured
fp32 matmul rate. Numbers are noisy on a shared machine: compare the ratio, not the absolute values.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def matmul_gflops(n: int = 1024, reps: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - start) / 1e9


def _setup(args):
    from peft import LoraConfig, get_peft_model

    from tunewise.backends.hf_local import CausalLMBackend
    from tunewise.config import TaskConfig
    from tunewise.data import load_task
    from tunewise.strategies.finetuning import _causal

    torch.manual_seed(0)
    backend = CausalLMBackend(args.model, device="cpu")
    task = load_task(TaskConfig(source="demo"), seed=0)
    train_rows = _causal.encode_examples(backend, task, task.train[:args.limit], args.max_length)
    val_rows = _causal.encode_examples(backend, task, task.validation[:args.val_limit], args.max_length)
    model = get_peft_model(backend.fresh_model(), LoraConfig(
        task_type="CAUSAL_LM", r=args.rank, lora_alpha=2 * args.rank, lora_dropout=0.05,
        target_modules="all-linear"))
    return backend, model, train_rows, val_rows


@torch.no_grad()
def answer_loss(model, backend, rows, batch_size: int = 8) -> float:
    """Token-weighted mean cross-entropy over answer tokens only, fp32: the same yardstick for both."""
    from tunewise.strategies.finetuning import _causal

    collate = _causal.collator(backend)
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(rows), batch_size):
        batch = collate([dict(r) for r in rows[start:start + batch_size]])
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
        labels = batch["labels"][:, 1:]
        total += torch.nn.functional.cross_entropy(logits.float().transpose(1, 2), labels, ignore_index=-100,
                                                   reduction="sum").item()
        count += int((labels != -100).sum())
    return total / count


def _train_tunewise(model, backend, rows, args, work: Path) -> dict:
    from tunewise.strategies.base import FitContext
    from tunewise.strategies.finetuning import _causal
    from tunewise.strategies.finetuning._train import train

    cfg = _causal.CausalTrainConfig(name="bench", learning_rate=args.lr, epochs=args.epochs,
                                    batch_size=args.batch_size, max_length=args.max_length,
                                    early_stopping_patience=None, bf16="auto", forgetting=False)
    ctx = FitContext(artifact_dir=work, seed=0)
    train(model, rows, [], _causal.collator(backend), cfg, ctx, label="bench")
    return {"bf16": ctx.stats["bf16"]}


def _train_plain(model, backend, rows, args, work: Path) -> dict:
    from transformers import Trainer, TrainingArguments, default_data_collator

    from tunewise.strategies.finetuning._train import ListDataset

    pad = backend.tokenizer.pad_token_id
    padded = []
    for r in rows:  # the copied recipe: pad everything to max_length, learn every real token
        n = len(r["input_ids"])
        fill = args.max_length - n
        padded.append({"input_ids": r["input_ids"] + [pad] * fill, "attention_mask": [1] * n + [0] * fill,
                       "labels": r["input_ids"] + [-100] * fill})
    targs = TrainingArguments(
        output_dir=str(work), learning_rate=args.lr, num_train_epochs=args.epochs,
        per_device_train_batch_size=args.batch_size, warmup_steps=0.06, lr_scheduler_type="linear",
        save_strategy="no", report_to="none", disable_tqdm=True, seed=0, use_cpu=True, bf16=False,
        logging_steps=10**6, remove_unused_columns=False)
    Trainer(model=model, args=targs, train_dataset=ListDataset(padded), data_collator=default_data_collator).train()
    return {"bf16": False}


def worker(args) -> None:
    import psutil

    from tunewise.evaluation.cost import PeakMemory

    backend, model, train_rows, val_rows = _setup(args)
    base_rss = psutil.Process().memory_info().rss / 2**20
    fit = _train_tunewise if args.worker == "tunewise" else _train_plain
    with tempfile.TemporaryDirectory() as tmp, PeakMemory() as mem:
        start = time.perf_counter()
        extra = fit(model, backend, train_rows, args, Path(tmp))
        seconds = time.perf_counter() - start
    real_tokens = sum(len(r["input_ids"]) for r in train_rows) * args.epochs
    n_params = sum(p.numel() for p in model.parameters())
    print(json.dumps({"recipe": args.worker, "seconds": seconds, "real_tokens": real_tokens,
                      "tokens_per_s": real_tokens / seconds, "peak_rss_mb": mem.peak_mb,
                      "rss_growth_mb": mem.peak_mb - base_rss, "val_answer_loss": answer_loss(model, backend, val_rows),
                      "gflops": 4 * n_params * real_tokens / seconds / 1e9, "examples": len(train_rows), **extra}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="Train on at most this many examples.")
    parser.add_argument("--val-limit", type=int, default=32, help="Validation examples for the loss.")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--worker", choices=["tunewise", "plain"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    peak = matmul_gflops()
    print(f"fp32 matmul (1024x1024) on this machine: {peak:.1f} GFLOP/s; torch threads {torch.get_num_threads()}")
    results = {}
    for recipe in ("tunewise", "plain"):
        cmd = [sys.executable, __file__, "--worker", recipe] + sys.argv[1:]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode:
            sys.exit(f"{recipe} failed:\n{proc.stderr[-3000:]}")
        results[recipe] = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"{'recipe':<10}{'examples':>9}{'real tok':>10}{'train s':>9}{'tok/s':>9}{'peak RSS MiB':>14}"
          f"{'RSS growth':>12}{'val loss':>10}{'GFLOP/s':>9}{'% matmul':>10}{'bf16':>6}")
    for r in results.values():
        print(f"{r['recipe']:<10}{r['examples']:>9}{r['real_tokens']:>10}{r['seconds']:>9.1f}{r['tokens_per_s']:>9.1f}"
              f"{r['peak_rss_mb']:>14.0f}{r['rss_growth_mb']:>12.0f}{r['val_answer_loss']:>10.3f}"
              f"{r['gflops']:>9.1f}{100 * r['gflops'] / peak:>9.1f}%{str(r['bf16']):>6}")
    t, p = results["tunewise"], results["plain"]
    print(f"tunewise / plain: {t['tokens_per_s'] / p['tokens_per_s']:.2f}x real tokens/s, "
          f"{t['rss_growth_mb'] / max(p['rss_growth_mb'], 1):.2f}x RSS growth")


if __name__ == "__main__":
    main()
