"""Benchmark: tunewise's label scoring vs lm-evaluation-harness on the same model and the same SST-2 test set.

    .venv/bin/python bench/prompt_scoring_vs_lmeval.py              # all 872 test sentences, 0- and 4-shot
    .venv/bin/python bench/prompt_scoring_vs_lmeval.py --limit 16   # a quick check that both sides run

One invocation runs both, on the embedded SmolLM2-135M-Instruct (lm-eval's `hf` model pointed at the
safetensors folder tunewise caches under ~/.cache/tunewise/models), fp32 on the CPU, batch 16 each, over
../shared/data/sst2/test.tsv (the GLUE SST-2 development set, 872 sentences; labels 0/1 named
negative/positive):

- lm-eval (0.4.13, an optional peer in its own virtual environment, built by bench/_lmeval_env.py when
  absent; skipped with a message when it cannot be installed): a task YAML written to a temporary folder,
  the plain prompt "Review: {sentence}\\nSentiment (positive or negative):" scored by the log-likelihood of
  " negative" / " positive" (multiple_choice, acc), 0-shot and 4-shot (demonstrations drawn at random from
  the first 2,000 SST-2 training phrases by lm-eval's sampler);
- tunewise: the task as a user writes it with the same information lm-eval's template carries:
  `instruction` "Classify the sentiment of the movie review.", `input_name` Review and `target_name`
  Sentiment (the template's field words; --instruction and --no-field-names change them); `zero-shot` with
  its defaults and `few-shot` with k=4, selection=random from the same 2,000 training phrases, each as
  `tunewise run` fits it: through `fit_or_load` with the run's default `selection:` (budget 2 candidate
  settings judged on 64 of 500 held-out SST-2 training phrases of at least 10 words (validation.tsv),
  sentence-like as the test set is, never on test; the chosen settings are printed), then `predict` (label
  scoring with the shared-prefix KV cache).

Printed per setting: accuracy, examples/s of the test scoring alone (model load excluded on both sides;
tunewise's fit, i.e. the validation selection and calibration, is timed apart; lm-eval's wall time including
its load is printed too), and tunewise/lm-eval ratios; then the issue's bars: tunewise's default zero-shot
accuracy at least lm-eval's minus 1 point, examples/s at least 1.5x lm-eval's. Accuracy does not depend on
machine load; examples/s do: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _lmeval_env

ROOT = Path(__file__).resolve().parents[1]
DATA = next((p for p in (ROOT.parent / "shared" / "data", ROOT.parent.parent / "shared" / "data") if p.is_dir()),
            ROOT.parent / "shared" / "data")
NAMES = ["negative", "positive"]  # SST-2's 0 and 1
TRAIN_POOL = 2000  # training phrases both sides draw 4-shot demonstrations from
VALIDATION = 500  # held-out training phrases (validation.tsv) tunewise's selection samples from
MIN_WORDS = 10  # ... of at least this many words, like the test set's whole sentences (most phrases are shorter)
# The task in words, as a user writes task.instruction: what lm-eval's template says with "Review:"/"Sentiment".
INSTRUCTION = "Classify the sentiment of the movie review."

TASK_YAML = """task: sst2_tunewise_bench
dataset_path: csv
dataset_kwargs:
  data_files:
    train: {train}
    test: {test}
training_split: train
test_split: test
fewshot_split: train
output_type: multiple_choice
doc_to_text: "Review: {{{{sentence}}}}\\nSentiment (positive or negative):"
doc_to_target: label
doc_to_choice: ["negative", "positive"]
target_delimiter: " "
metric_list:
  - metric: acc
"""

DRIVER = """import json, sys, time
from lm_eval import simple_evaluate
from lm_eval.models.huggingface import HFLM
from lm_eval.tasks import TaskManager
model, include, limit, shots = sys.argv[1], sys.argv[2], int(sys.argv[3]), [int(s) for s in sys.argv[4].split(",")]
t0 = time.perf_counter()
lm = HFLM(pretrained=model, batch_size=16, device="cpu", dtype="float32")
load = time.perf_counter() - t0
manager = TaskManager(include_path=include)
out = {"load_s": load}
for k in shots:
    t0 = time.perf_counter()
    res = simple_evaluate(model=lm, tasks=["sst2_tunewise_bench"], task_manager=manager, num_fewshot=k,
                          limit=limit or None, random_seed=0, numpy_random_seed=0, torch_random_seed=0,
                          fewshot_random_seed=0, log_samples=False, verbosity="ERROR", bootstrap_iters=0)
    out[str(k)] = {"acc": res["results"]["sst2_tunewise_bench"]["acc,none"], "seconds": time.perf_counter() - t0}
print("LMEVAL-RESULT " + json.dumps(out))
"""


def read_sst2(path: Path, limit: int | None = None) -> list[tuple[str, int]]:
    with path.open(encoding="utf-8", newline="") as f:
        rows = [(text.strip(), int(label)) for text, label in list(csv.reader(f, delimiter="\t",
                                                                                quoting=csv.QUOTE_NONE))[1:]]
    return rows[:limit] if limit else rows


def write_csv(path: Path, rows: list[tuple[str, int]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sentence", "label"])
        w.writerows(rows)
    return path


def run_lmeval(model: Path, train: list, test: list, shots: list[int], tmp: Path) -> dict | None:
    python = _lmeval_env.ensure()
    if python is None:
        return None
    (tmp / "sst2_tunewise_bench.yaml").write_text(TASK_YAML.format(
        train=write_csv(tmp / "train.csv", train), test=write_csv(tmp / "test.csv", test)), encoding="utf-8")
    (tmp / "driver.py").write_text(DRIVER, encoding="utf-8")
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    t0 = time.perf_counter()
    done = subprocess.run([str(python), str(tmp / "driver.py"), str(model), str(tmp), str(len(test)),
                           ",".join(map(str, shots))], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    line = next((x for x in done.stdout.splitlines() if x.startswith("LMEVAL-RESULT ")), None)
    if done.returncode != 0 or line is None:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        print(f"lm-eval failed ({tail}): skipping the lm-eval side", file=sys.stderr)
        return None
    out = json.loads(line.removeprefix("LMEVAL-RESULT "))
    out["wall_s"] = wall
    return out


def run_tunewise(train: list, validation: list, test: list, shots: list[int], instruction: str,
                 fields: tuple[str | None, str | None]) -> dict:
    from tunewise.backends.embedded import SMOLLM2
    from tunewise.backends.hf_local import CausalLMBackend
    from tunewise.data import Example, Task
    from tunewise.registry import strategies, strategy_config
    from tunewise.strategies.base import FitContext, SelectionConfig, chosen, fit_or_load

    backend = CausalLMBackend(SMOLLM2, device="cpu")
    def examples(rows, split):
        return [Example(f"{split}-{i}", text, NAMES[y], {}) for i, (text, y) in enumerate(rows)]
    held = examples(test, "test")
    task = Task(name="sst2", kind="classification", train=examples(train, "train"),
                validation=examples(validation, "validation"), test=held, labels=NAMES, instruction=instruction,
                input_name=fields[0], target_name=fields[1])
    out = {}
    with tempfile.TemporaryDirectory() as art:
        for k in shots:
            entry = {"name": "zero-shot"} if k == 0 else {"name": "few-shot", "k": k, "selection": "random"}
            strategy = strategies()[entry["name"]](strategy_config(entry))
            ctx = FitContext(Path(art) / f"{k}-shot", 0, selection=SelectionConfig())
            ctx.artifact_dir.mkdir()
            t0 = time.perf_counter()
            predictor, _ = fit_or_load(strategy, backend, task, ctx)
            t1 = time.perf_counter()
            preds = predictor.predict(held)
            seconds = time.perf_counter() - t1
            acc = sum(p.output == e.target for p, e in zip(preds, held, strict=True)) / len(held)
            settings = chosen(strategy, ctx.artifact_dir).config.model_dump(
                include={"prompt_format", "calibrate", "k", "selection"})
            tried = [(t["settings"], round(100 * t["score"], 1))
                     for t in ctx.stats.get("selection", {}).get("tried", [])]
            out[str(k)] = {"acc": acc, "seconds": seconds, "fit_s": t1 - t0, "settings": settings, "tried": tried}
    return out


def report(n: int, shots: list[int], tw: dict, lm: dict | None) -> None:
    print(f"\nSST-2 test, {n} sentences, SmolLM2-135M-Instruct fp32 on CPU (examples/s: scoring only, load excluded)")
    print(f"{'setting':28s} {'accuracy':>9s} {'examples/s':>11s}")
    for k in shots:
        t = tw[str(k)]
        print(f"{f'{k}-shot tunewise':28s} {100 * t['acc']:8.1f}% {n / t['seconds']:11.2f}   chosen {t['settings']}; "
              f"fit (selection, calibration) {t['fit_s']:.1f} s; validation accuracy (%) per candidate {t['tried']}")
        if lm:
            m = lm[str(k)]
            print(f"{f'{k}-shot lm-eval':28s} {100 * m['acc']:8.1f}% {n / m['seconds']:11.2f}")
            print(f"{f'{k}-shot tunewise - lm-eval':28s} {100 * (t['acc'] - m['acc']):+8.1f} pt "
                  f"{m['seconds'] / t['seconds']:10.2f}x")
    if not lm:
        print("lm-eval did not run: no ratios, no bars")
        return
    print(f"lm-eval: model load {lm['load_s']:.1f} s; wall time of its process, load included, "
          f"{lm['wall_s']:.1f} s")
    zero_t, zero_m = tw["0"], lm["0"]
    acc_ok = zero_t["acc"] >= zero_m["acc"] - 0.01
    print(f"bar: default zero-shot accuracy >= lm-eval's - 1 point: {'PASS' if acc_ok else 'FAIL'} "
          f"({100 * zero_t['acc']:.1f}% vs {100 * zero_m['acc']:.1f}%)")
    for k in shots:
        ratio = lm[str(k)]["seconds"] / tw[str(k)]["seconds"]
        print(f"bar: {k}-shot examples/s >= 1.5x lm-eval's: {'PASS' if ratio >= 1.5 else 'FAIL'} ({ratio:.2f}x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=None, help="first N test sentences (default: all 872)")
    ap.add_argument("--shots", default="0,4", help="comma-separated numbers of demonstrations")
    ap.add_argument("--data", type=Path, default=DATA, help="the shared data folder (sst2/ inside)")
    ap.add_argument("--skip-lmeval", action="store_true", help="tunewise only")
    ap.add_argument("--instruction", default=INSTRUCTION, help="tunewise's task.instruction (what lm-eval's "
                    "template says with 'Review:' and 'Sentiment')")
    ap.add_argument("--no-field-names", action="store_true", help="leave task.input_name / task.target_name "
                    "unset (the generic Input / Answer) instead of lm-eval's Review / Sentiment")
    args = ap.parse_args()
    if not (args.data / "sst2" / "test.tsv").is_file():
        sys.exit(f"{args.data}/sst2/test.tsv not found; pass --data")
    shots = [int(s) for s in args.shots.split(",")]
    test = read_sst2(args.data / "sst2" / "test.tsv", args.limit)
    train = read_sst2(args.data / "sst2" / "train.tsv", TRAIN_POOL)
    # validation.tsv holds phrases of every length; the test set whole sentences: choose on sentence-like ones
    validation = [r for r in read_sst2(args.data / "sst2" / "validation.tsv")
                  if len(r[0].split()) >= MIN_WORDS][:VALIDATION]
    from tunewise.backends.embedded import dequantised_smollm2

    model = dequantised_smollm2()
    with tempfile.TemporaryDirectory(prefix="tunewise-lmeval-") as tmp:
        lm = None if args.skip_lmeval else run_lmeval(model, train, test, shots, Path(tmp))
    fields = (None, None) if args.no_field_names else ("Review", "Sentiment")
    tw = run_tunewise(train, validation, test, shots, args.instruction, fields)
    print(f"tunewise task.instruction: {args.instruction!r}; input_name, target_name: {fields}")
    report(len(test), shots, tw, lm)


if __name__ == "__main__":
    main()
