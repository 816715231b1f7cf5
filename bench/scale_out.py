"""Scale-out of the strategy matrix on Ray: the same 4-cell matrix on 1 and on 2 single-threaded Ray workers.

    .venv/bin/python bench/scale_out.py                        # few-shot (k=4) on SmolLM2 x 4 seeds, 160 SST-2 tests
    .venv/bin/python bench/scale_out.py --limit 8              # a quick check that it works (seconds per cell)

The matrix is one deterministic strategy at 4 seeds (few-shot: each seed draws other demonstrations, so the
cells differ but each is reproducible), scored on the same SST-2 test examples (../shared/data/sst2/test.tsv,
half held out for test, at most --limit of them), so the 4 cells take about the same time and 2 workers can
split them evenly. Each configuration starts its own local Ray instance with that many CPUs; every cell
reserves 1 CPU and its worker runs torch on 1 thread (OMP_NUM_THREADS=1). The clock covers `Run.execute` with
the RayExecutor: submitting the cells, the workers importing tunewise and loading the model (once per worker),
scoring, and the driver storing each result; Ray's own start is outside it.

Prints the wall time in seconds on 1 and on 2 workers, the parallel efficiency T1 / (2 x T2) (goal: at least
85%) and whether the two runs gave the same predictions and metric values. Timings on a shared machine are
noisy: run it on a quiet machine with at least 2 free cores.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "sst2" / "test.tsv"


def matrix(args, out: Path):
    from tunewise.config import parse_config

    return parse_config({
        "task": {"source": str(args.data), "input_column": "sentence", "target_column": "label", "test_size": 0.5,
                 "validation_size": 0.05, "max_test_examples": args.limit,
                 "instruction": "Is the sentiment of this movie review positive (1) or negative (0)?"},
        "model": args.model, "device": "cpu", "seed": 0, "seeds": args.seeds, "output_dir": str(out),
        "strategies": [{"name": args.strategy, "k": args.k}] if args.strategy == "few-shot" else [args.strategy]})


def run_on(workers: int, args, out: Path) -> tuple[float, dict, list[str]]:
    """Wall seconds of the matrix on `workers` single-threaded Ray workers, each cell's (status, primary value,
    outputs), and the failure lines."""
    import ray

    from tunewise.runs import Run
    from tunewise.runs.ray_executor import SOURCE_ROOT, RayExecutor

    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": str(SOURCE_ROOT)}
    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
             runtime_env={"env_vars": env})
    run = Run.create(matrix(args, out))
    try:
        run.write_splits()
        cells = run.cells()
        start = time.perf_counter()
        failures = run.execute(cells, RayExecutor())
        seconds = time.perf_counter() - start
        outcome = {}
        for r in run.store.results(run.id):
            if r["family"] != "baseline":
                primary = r["metrics"].get("primary")
                outcome[r["strategy"]] = (r["status"], r["metrics"].get(primary, {}).get("value"),
                                          [p["output"] for p in run.store.predictions(run.id, r["strategy"])])
    finally:
        run.close()
        ray.shutdown()
    return seconds, outcome, failures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA.resolve(), help="SST-2 TSV (sentence, label)")
    ap.add_argument("--model", default="smollm2-135m-instruct", help="causal LM: embedded name or local folder")
    ap.add_argument("--strategy", default="few-shot", help="a deterministic prompting strategy")
    ap.add_argument("--k", type=int, default=4, help="few-shot demonstrations")
    ap.add_argument("--seeds", type=int, default=4, help="cells: the strategy at this many seeds")
    ap.add_argument("--limit", type=int, default=160, help="test examples each cell scores")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    times, outcomes = {}, {}
    with tempfile.TemporaryDirectory(prefix="tunewise-scale-out-") as tmp:
        for workers in (1, 2):
            seconds, outcome, failures = run_on(workers, args, Path(tmp) / f"w{workers}")
            if failures:
                raise SystemExit(f"{workers} worker(s): failed cells: {'; '.join(failures)}")
            times[workers], outcomes[workers] = seconds, outcome
            print(f"{workers} worker(s): {len(outcome)} cells in {seconds:.1f} s", flush=True)
    efficiency = times[1] / (2 * times[2])
    equal = outcomes[1] == outcomes[2]
    print(f"parallel efficiency T1 / (2 x T2): {100 * efficiency:.1f}% (goal: at least 85%)")
    print(f"results equal on 1 and 2 workers: {'yes' if equal else 'NO'} "
          f"({', '.join(f'{c} {v[1]:.3f}' for c, v in sorted(outcomes[1].items()))}; primary metric, share)")


if __name__ == "__main__":
    main()
