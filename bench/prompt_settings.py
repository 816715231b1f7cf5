"""Which zero-shot settings win on validation, per task: the measurement behind zero-shot's defaults.

    .venv/bin/python bench/prompt_settings.py --limit 200          # 200 validation examples per task
    .venv/bin/python bench/prompt_settings.py --tasks demo --limit 16

For each task (the built-in demo; SST-2 and AG News from ../shared/data, labels by name: SST-2 0/1 =
negative/positive, AG News already World/Sports/Business/Sci/Tech) it scores the candidate settings that
`zero-shot`'s validation selection can try (prompt format chat/plain x contextual calibration off/on, and with
--wordings x the built-in instruction wordings) on the same seeded sample of validation examples (demo: its
validation split plus training examples, since zero-shot sees no training data; never test), on the embedded
SmolLM2-135M-Instruct, and prints accuracy per setting and task and which setting wins most often.
Accuracy does not depend on machine load; the seconds printed do.
"""

from __future__ import annotations

import argparse
import csv
import random
import time
from pathlib import Path

from tunewise.backends.embedded import SMOLLM2
from tunewise.backends.hf_local import CausalLMBackend
from tunewise.config import TaskConfig
from tunewise.data import Example, Task, load_task
from tunewise.strategies.base import FitContext
from tunewise.strategies.prompting.zero_shot import ZeroShot, ZeroShotConfig

ROOT = Path(__file__).resolve().parents[1]
# ../shared/data beside the project (a worktree one level further down finds it one level up)
DATA = next((p for p in (ROOT.parent / "shared" / "data", ROOT.parent.parent / "shared" / "data") if p.is_dir()),
            ROOT.parent / "shared" / "data")
SST2_NAMES = {"0": "negative", "1": "positive"}


def _tsv(path: Path, header: bool, names: dict[str, str] | None = None) -> list[Example]:
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    rows = rows[1:] if header else rows
    return [Example(f"{path.stem}-{i}", text.strip(), (names or {}).get(label, label), {})
            for i, (text, label) in enumerate(rows)]


def _task(name: str, examples: list[Example], instruction: str | None = None) -> Task:
    labels = sorted({e.target for e in examples})
    instruction = instruction or "Classify the text into one of these labels: " + ", ".join(labels) + "."
    return Task(name=name, kind="classification", train=[], validation=examples, test=[], instruction=instruction,
                labels=labels)


def tasks(names: list[str], limit: int, seed: int, data: Path) -> dict[str, Task]:
    out = {}
    for name in names:
        if name == "demo":
            demo = load_task(TaskConfig(), seed=seed)
            pool = demo.validation + demo.train
            out[name] = Task(name="demo", kind="classification", train=[], validation=pool, test=[],
                             instruction=demo.instruction, labels=demo.labels)
        elif name == "sst2":
            out[name] = _task("sst2", _tsv(data / "sst2" / "validation.tsv", True, SST2_NAMES))
        elif name == "agnews":
            out[name] = _task("agnews", _tsv(data / "agnews" / "validation.tsv", False))
        task = out[name]
        pool = list(task.validation) if name == "demo" else random.Random(seed).sample(task.validation, limit)
        task.validation = pool[:limit]
    return out


def settings(task: Task, wordings: bool) -> list[dict]:
    from tunewise.strategies._select import prompting_grid

    cfg = ZeroShotConfig(name="zero-shot", prompt_format="chat", calibrate=False)
    return [u for u in prompting_grid(task, cfg) if wordings or "instruction" not in u]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default="demo,sst2,agnews")
    ap.add_argument("--limit", type=int, default=200, help="validation examples per task")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--wordings", action="store_true", help="also the built-in instruction wordings (x3 time)")
    args = ap.parse_args()
    backend = CausalLMBackend(SMOLLM2, device="cpu")
    wins: dict[str, int] = {}
    table: dict[str, dict[str, float]] = {}
    for name, task in tasks(args.tasks.split(","), args.limit, args.seed, args.data).items():
        scores = {}
        for update in settings(task, args.wordings):
            cfg = ZeroShotConfig(name="zero-shot", **update)
            t0 = time.perf_counter()
            predictor = ZeroShot(cfg).fit(backend, task, FitContext(artifact_dir=Path("/tmp"), seed=args.seed))
            preds = predictor.predict(task.validation)
            acc = sum(p.output == e.target for p, e in zip(preds, task.validation, strict=True)) / len(preds)
            key = ", ".join(f"{k}={v!r}" for k, v in update.items()) or "chat, calibrate=False"
            scores[key] = acc
            print(f"{name:7s} n={len(preds):4d}  {100 * acc:5.1f}%  ({time.perf_counter() - t0:5.1f} s)  {key}",
                  flush=True)
        table[name] = scores
        best = max(scores.values())
        for key, acc in scores.items():
            if acc == best:
                wins[key] = wins.get(key, 0) + 1
    print("\nwins (ties count for each):")
    for key, n in sorted(wins.items(), key=lambda kv: -kv[1]):
        print(f"  {n}  {key}")


if __name__ == "__main__":
    main()
