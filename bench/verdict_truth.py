"""Does the pilot's verdict hold at full size? A pilot run and a full-size run on SST-2 and AG News.

    .venv/bin/python bench/verdict_truth.py [--datasets sst2,agnews] [--full 2000] [--pilot 0.2] [--test 400]
                                            [--validation 200] [--strategies zero-shot,few-shot,...]

For each dataset (read from ../shared/data, never copied into the project): one `tunewise run --pilot`
(fine-tuning at 4 sizes up to PILOT x FULL training examples, learning curves, predictions at FULL; prompting
measured once) and one full-size run of the fine-tuning strategies on the same FULL training examples, test
and validation examples and seed. Prints the pilot's recommended strategy, the full-size winner (prompting as
measured in the pilot, fine-tuning as measured at full size), whether they agree or are tied (McNemar on the
same test examples, p >= 0.05), and per strategy the predicted score with its 95% interval against the
observed one (inside: yes/no). Labels are shown to the models by name: SST-2's 0/1 become negative/positive in
named copies under ~/.cache/tunewise/bench/verdict_truth (AG News's files already name World, Sports,
Business, Sci/Tech); AG News has no training file, so its validation file is the training pool (VALIDATION
examples of it held out for early stopping) and its test file the test set.

A check on a tiny setting (minutes): --datasets sst2 --full 64 --pilot 0.5 --test 32 --validation 16
--strategies zero-shot,head-only
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import time
from pathlib import Path

from tunewise.config import parse_config
from tunewise.evaluation.compare import Paired
from tunewise.experiment import run_experiment
from tunewise.report.analysis import analyze
from tunewise.store import open_run

ROOT = Path(__file__).resolve().parents[1]
STRATEGIES = {  # the bench's settings: small enough for 2 CPU cores (stated in the output)
    "zero-shot": {"name": "zero-shot", "calibrate": True},
    "few-shot": {"name": "few-shot", "k": 4, "selection": "balanced", "calibrate": True},
    "head-only": {"name": "head-only", "epochs": 5},
    "setfit": {"name": "setfit", "num_iterations": 2},
    "full-finetune": {"name": "full-finetune", "epochs": 3},
    "lora": {"name": "lora", "epochs": 1, "rank": 8, "forgetting": False},
}
DEFAULT = "zero-shot,few-shot,head-only,setfit,full-finetune"
DATASETS = {
    "sst2": {"labels": {"0": "negative", "1": "positive"}, "header": True, "fields": ("Review", "Sentiment"),
             "instruction": "Is the sentiment of this movie review positive or negative?"},
    "agnews": {"labels": None, "header": False, "fields": ("Article", "Topic"),
               "instruction": "Which topic is this news article about: World, Sports, Business or Sci/Tech?"},
}


def _read(path: Path, header: bool, names: dict[str, str] | None) -> list[tuple[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    rows = rows[1:] if header else rows
    return [(text, names[label] if names else label) for text, label in (r[:2] for r in rows if len(r) >= 2)]


def _write(path: Path, rows: list[tuple[str, str]]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_MINIMAL)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return str(path)


def named_copies(name: str, data: Path, cache: Path, n_test: int, n_val: int, seed: int) -> dict[str, str]:
    """train/validation/test TSVs with named labels under `cache` (the bench's own copies, never the project)."""
    spec, rng = DATASETS[name], random.Random(seed)
    if name == "sst2":
        train = _read(data / "sst2" / "train.tsv", True, spec["labels"])
        validation = rng.sample(_read(data / "sst2" / "validation.tsv", True, spec["labels"]), n_val)
        test = _read(data / "sst2" / "test.tsv", True, spec["labels"])
    else:  # AG News: validation.tsv is the training pool, n_val of it held out for early stopping
        pool = _read(data / "agnews" / "validation.tsv", False, None)
        rng.shuffle(pool)
        validation, train = pool[:n_val], pool[n_val:]
        test = _read(data / "agnews" / "test.tsv", False, None)
    test = rng.sample(test, min(n_test, len(test)))
    folder = cache / name
    return {split: _write(folder / f"{split}.tsv", rows)
            for split, rows in (("train", train), ("validation", validation), ("test", test))}


def config(name: str, files: dict[str, str], strategies: list[dict], full: int, seed: int, out: str,
           pilot: float | None):
    task = {"source": files["train"], "validation": files["validation"], "test": files["test"],
            "input_column": "text", "target_column": "label", "kind": "classification", "name": name,
            "max_train_examples": full, "instruction": DATASETS[name]["instruction"],
            "input_name": DATASETS[name]["fields"][0], "target_name": DATASETS[name]["fields"][1]}
    return parse_config({"task": task, "strategies": strategies, "seed": seed, "output_dir": out, "pilot": pilot},
                        "bench/verdict_truth.py")


def compare(name: str, pilot_dir: Path, full_dir: Path | None) -> dict:
    """The pilot's pick, the full-size winner, agreement, and predicted vs observed per strategy."""
    a = analyze(pilot_dir)
    pilot = json.loads((pilot_dir / "pilot.json").read_text(encoding="utf-8"))
    metric = pilot["metric"]
    pick = a.recommendation.choice
    observed, rows = {}, {}
    for run_dir, family in ((pilot_dir, "prompting"), (full_dir, "finetuning")):
        if run_dir is None:
            continue
        store, run = open_run(run_dir)
        for r in store.main_results(run["id"]):
            if r["status"] == "done" and r["family"] == family:
                observed[r["strategy"]] = r["metrics"][metric]
                rows[r["strategy"]] = store.predictions(run["id"], r["strategy"])
        store.close()
    winner = max(observed, key=lambda s: observed[s]["value"]) if observed else None
    tied = None
    if pick and winner and pick != winner and pick in rows:
        paired = Paired({pick: rows[pick], winner: rows[winner]}, "classification", metric, a.labels)
        tied = paired.test(pick, winner)["pvalue"] >= 0.05
    table = []
    for s, q in observed.items():
        p = pilot["strategies"].get(s)
        inside = None if p is None else p["low"] <= q["value"] <= p["high"]
        table.append({"strategy": s, "predicted": p and {k: p[k] for k in ("value", "low", "high")},
                      "observed": q["value"], "inside": inside})
    return {"dataset": name, "metric": metric, "pilot_pick": pick, "headline": a.recommendation.headline,
            "full_winner": winner, "agree": pick == winner, "tied": tied, "pilot_seconds": pilot["seconds"],
            "full_size": pilot["full_size"], "sizes": pilot["sizes"], "strategies": table}


def show(r: dict, full_seconds: float | None) -> None:
    print(f"\n== {r['dataset']}: {r['metric']} on the same test examples; pilot at {r['sizes']} of "
          f"{r['full_size']:,} training examples ({r['pilot_seconds']:.0f} s), full run "
          + (f"{full_seconds:.0f} s" if full_seconds is not None else "skipped"))
    print(f"pilot's pick: {r['pilot_pick']}  ({r['headline']})")
    verdict = "agree" if r["agree"] else ("tied (McNemar p >= 0.05)" if r["tied"] else "disagree")
    print(f"full-size winner: {r['full_winner']}  -> {verdict}")
    print(f"{'strategy':<16}{'predicted (95% interval)':>30}{'observed':>10}{'inside':>8}")
    for s in r["strategies"]:
        p = s["predicted"]
        pred = f"{100 * p['value']:.1f}% [{100 * p['low']:.1f}, {100 * p['high']:.1f}]" if p else "measured once"
        inside = "-" if s["inside"] is None else ("yes" if s["inside"] else "no")
        print(f"{s['strategy']:<16}{pred:>30}{100 * s['observed']:>9.1f}%{inside:>8}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="sst2,agnews")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data", help="the shared data folder")
    ap.add_argument("--full", type=int, default=2000, help="training examples of the full-size run (the cap)")
    ap.add_argument("--pilot", type=float, default=0.2, help="share of --full the pilot trains on (at most 0.2)")
    ap.add_argument("--test", type=int, default=400, help="test examples (seeded sample of the test file)")
    ap.add_argument("--validation", type=int, default=200, help="validation examples (early stopping)")
    ap.add_argument("--strategies", default=DEFAULT, help=f"comma-separated, from {', '.join(STRATEGIES)}")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--output", default="runs/bench-verdict-truth")
    ap.add_argument("--skip-full", action="store_true", help="the pilot only")
    ap.add_argument("--pilot-run", type=Path, default=None, help="one dataset: reuse this finished pilot run folder "
                    "(same settings) instead of running the pilot again")
    args = ap.parse_args()
    if args.pilot_run and "," in args.datasets:
        raise SystemExit("--pilot-run reuses one dataset's pilot: give one --datasets name")
    if not (args.data / "sst2").is_dir():
        raise SystemExit(f"{args.data}: the shared data folder is missing (give --data)")
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tunewise" / "bench" / "verdict_truth"
    chosen = [STRATEGIES[s] for s in args.strategies.split(",")]
    tuned = [s for s in chosen if s["name"] in ("head-only", "setfit", "full-finetune", "lora")]
    print(f"settings: full {args.full:,} training examples, pilot {args.pilot:g} of it, {args.test} test and "
          f"{args.validation} validation examples, seed {args.seed}; strategies {json.dumps(chosen)}")
    report = []
    for name in args.datasets.split(","):
        files = named_copies(name, args.data, cache, args.test, args.validation, args.seed)
        pilot_dir = args.pilot_run or run_experiment(config(name, files, chosen, args.full, args.seed, args.output,
                                                            args.pilot))
        full_dir, seconds = None, None
        if tuned and not args.skip_full:
            start = time.perf_counter()
            full_dir = run_experiment(config(name, files, tuned, args.full, args.seed, args.output, None))
            seconds = time.perf_counter() - start
        result = compare(name, pilot_dir, full_dir)
        show(result, seconds)
        report.append({**result, "pilot_run": str(pilot_dir), "full_run": str(full_dir), "full_seconds": seconds})
    out = Path(args.output) / "verdict_truth.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1), encoding="utf-8")
    print(f"\nresults: {out}")


if __name__ == "__main__":
    main()
