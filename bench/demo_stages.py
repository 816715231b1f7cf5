"""Time the demo's stages: model loads, then fit and scoring of each strategy, from one real run.

    .venv/bin/python bench/demo_stages.py [--limit N] [--strategies a,b]

Prints a table of seconds per stage (load, fit, score) and the share of the total, so a change that
slows one stage shows up. The run folder it creates is printed too.
"""

from __future__ import annotations

import argparse
import json
import time

from tunewise.backends import load_backend
from tunewise.config import parse_config
from tunewise.experiment import run_experiment


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=None, help="at most this many test examples")
    ap.add_argument("--strategies", default=None, help="comma-separated strategies (default: the demo's)")
    ap.add_argument("--output", default="runs/bench")
    args = ap.parse_args()
    data = {"output_dir": args.output, "task": {"source": "demo"}}
    if args.limit:
        data["task"]["max_test_examples"] = args.limit
    if args.strategies:
        data["strategies"] = args.strategies.split(",")
    config = parse_config(data, "bench")
    loads = {}
    for name, kind in ((config.model, "causal"), (config.encoder, "encoder")):
        start = time.perf_counter()
        load_backend(name, kind, "cpu")
        loads[f"load {name}"] = time.perf_counter() - start
    start = time.perf_counter()
    run_dir = run_experiment(config)
    wall = time.perf_counter() - start
    stages = dict(loads)
    for r in json.loads((run_dir / "results.json").read_text()):
        cost = r["cost"]
        n = r["metrics"].get("n", 0)
        stages[f"fit {r['strategy']}"] = cost.get("train_seconds", 0.0)
        # scoring_seconds: all of the scoring, warm-up batch included (seconds_per_example leaves it out)
        stages[f"score {r['strategy']} ({n} examples)"] = cost.get("scoring_seconds") or \
            cost.get("seconds_per_example", 0.0) * n
    total = sum(stages.values())
    print(f"\n{'stage':<45}{'seconds':>10}{'share':>8}")
    for stage, seconds in stages.items():
        print(f"{stage:<45}{seconds:>10.1f}{100 * seconds / total:>7.1f}%")
    print(f"{'sum of stages':<45}{total:>10.1f}")
    print(f"{'run_experiment wall time (s)':<45}{wall:>10.1f}")
    print(f"run folder: {run_dir}")


if __name__ == "__main__":
    main()
