"""Is a strategy's memory figure its own? The in-process accounting (runs/memory.py) against the strategy alone in a
fresh process.

    .venv/bin/python bench/cell_memory.py [--limit 32] [--strategy head-only] [--model M] [--encoder E]

Run 1, in this process, as `tunewise run` does: zero-shot on the causal model first (so its weights stay loaded),
then STRATEGY; it prints STRATEGY's `peak_rss_mb` (its own accounting) and the process's high-water mark during
its cell (what the leaderboard showed before issue 13). Run 2, in a fresh process: only STRATEGY's model loaded,
the same cell; its figure is that process's peak RSS less the process's RSS just before the model loaded (the
runtime every strategy shares). The ratio own / isolated should be close to 1; the old figure's ratio is what
the carried high-water mark overstated. Memory in MiB.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile

import psutil

from tunewise.config import parse_config
from tunewise.evaluation.cost import PeakMemory
from tunewise.runs import Run


def config(args, strategies: list, output: str):
    data = {"output_dir": output, "task": {"source": "demo", "max_test_examples": args.limit}, "device": "cpu",
            "strategies": strategies, **({"model": args.model} if args.model else {}),
            **({"encoder": args.encoder} if args.encoder else {})}
    return parse_config(data, "bench")


def run_cells(cfg) -> dict:
    run = Run.create(cfg)
    try:
        run.write_splits()
        cells = run.cells()
        before = psutil.Process().memory_info().rss / 2**20
        # sampled, not ru_maxrss: a child process inherits its parent's high-water mark across fork and exec
        with PeakMemory() as peak:
            run.prepare(run.strategy(c.strategy) for c in cells)  # models load here
            run.execute(cells)
        run.finish()
        return {"results": {r["strategy"]: r["cost"] for r in run.store.results(run.id)}, "rss_before_mb": before,
                "peak_mb": peak.peak_mb}
    finally:
        run.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=32, help="test examples")
    ap.add_argument("--strategy", default="head-only", help="the strategy measured (run after zero-shot)")
    ap.add_argument("--model", default=None, help="causal model (default: the embedded SmolLM2)")
    ap.add_argument("--encoder", default=None, help="encoder (default: the embedded MiniLM)")
    ap.add_argument("--isolated", action="store_true", help=argparse.SUPPRESS)  # run 2's child process
    args = ap.parse_args()
    entry = {"name": args.strategy, "epochs": 1}
    with tempfile.TemporaryDirectory(prefix="tunewise-bench-") as tmp:
        if args.isolated:
            print(json.dumps(run_cells(config(args, [entry], tmp))))
            return
        shared = run_cells(config(args, ["zero-shot", entry], tmp))["results"][args.strategy]
        cmd = [sys.executable, __file__, "--isolated", "--limit", str(args.limit), "--strategy", args.strategy,
               *(["--model", args.model] if args.model else []), *(["--encoder", args.encoder] if args.encoder else [])]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        child = json.loads(out.strip().splitlines()[-1])
    isolated = child["peak_mb"] - child["rss_before_mb"]
    own, old = shared["peak_rss_mb"], shared["details"]["memory"]["process_peak_mb"]
    print(f"{args.strategy}, {args.limit} test examples (MiB)")
    print(f"{'alone in a fresh process (peak RSS - runtime)':<52}{isolated:>10.0f}")
    print(f"{'own accounting, after zero-shot in the same process':<52}{own:>10.0f}{own / isolated:>8.2f}x")
    print(f"{'process high-water mark during its cell (old figure)':<52}{old:>10.0f}{old / isolated:>8.2f}x")
    print(f"{'own accounting in the fresh process':<52}{child['results'][args.strategy]['peak_rss_mb']:>10.0f}")


if __name__ == "__main__":
    main()
