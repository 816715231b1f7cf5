"""`tunewise run` as a user runs it (a separate process through the console entry point, tiny models): the terminal
shows no library warnings, the run ends with the verdict and the path of the report.html it wrote; labels
stored as codes and named in the config are shown by name and stored as codes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from conftest import ROOT, make_rows, write_csv

LIBRARY_NOISE = re.compile(r"warn|deprecat|FutureWarning|UserWarning|it/s\]|Loading weights", re.IGNORECASE)


def test_run_prints_verdict_and_report_and_no_library_warnings(tmp_path, tiny_causal, tiny_encoder):
    code = {"negative": "0", "positive": "1"}
    data = write_csv(tmp_path / "coded.csv", [{**r, "label": code[r["label"]]} for r in make_rows(16)])
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump({
        "task": {"source": str(data), "test_size": 0.25, "label_names": ["negative", "positive"]},
        "model": tiny_causal, "encoder": tiny_encoder, "output_dir": str(tmp_path / "runs"), "seed": 1,
        "strategies": ["zero-shot", {"name": "lora", "epochs": 1, "batch_size": 8, "rank": 4,
                                     "forgetting": False}, {"name": "head-only", "epochs": 1}]}), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHONWARNINGS", "TRANSFORMERS_", "HF_HUB_"))}
    env.update(PYTHONPATH=str(ROOT / "src"), COLUMNS="200", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "tunewise", "run", str(config)], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    noisy = [line for line in (proc.stdout + proc.stderr).splitlines() if LIBRARY_NOISE.search(line)]
    assert not noisy, noisy
    lines = [line for line in proc.stdout.strip().splitlines() if line.strip()]
    run_dir = Path(lines[-1].split("run folder: ")[1])
    report = next(line for line in lines if line.startswith("report: "))
    assert Path(report.removeprefix("report: ")) == run_dir / "report.html"
    assert (run_dir / "report.html").is_file() and "<html" in (run_dir / "report.html").read_text()[:500]
    verdict = next(i for i, line in enumerate(lines) if line.startswith("verdict "))
    assert lines[verdict].startswith(("verdict Use ", "verdict No strategy"))
    assert verdict > next(i for i, line in enumerate(lines) if "majority-baseline" in line)  # after the leaderboard
    assert lines.index(report) > verdict
    assert "always answering 'negative' (0)" in proc.stdout or "always answering 'positive' (1)" in proc.stdout
    rows = [json.loads(x) for x in (run_dir / "predictions" / "zero-shot.jsonl").read_text().splitlines()]
    assert {r["target"] for r in rows} <= {"0", "1"} and {r["output"] for r in rows} <= {"0", "1"}
    assert "warning:" not in proc.stderr  # the labels are named: no code-like-labels warning
    assert "How costs are measured" in (run_dir / "report.html").read_text()
    costs = {r["strategy"]: r["cost"] for r in json.loads((run_dir / "results.json").read_text())
             if r["family"] != "baseline"}
    for cost in costs.values():  # 8 test examples: 2 warm up, 6 timed; memory is the cell's own
        assert cost["details"]["latency"]["warmup_examples"] == 2 and cost["details"]["latency"]["timed_examples"] == 6
        memory = cost["details"]["memory"]
        assert cost["peak_rss_mb"] == memory["weights_mb"] + memory["growth_mb"] < memory["process_peak_mb"]
    assert costs["head-only"]["details"]["memory"]["weights_mb"] < 10  # the tiny encoder only, not the causal model
