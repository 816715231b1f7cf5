"""`accelerate launch -m tunewise run CONFIG --strategies lora` with 2 CPU processes (DDP over gloo): one run
folder, one result, the training split across the processes, and gradients averaged (the trained parameters
are equal in both processes)."""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import sys

import pytest
import yaml

from tunewise.config import parse_config
from tunewise.experiment import run_experiment
from tunewise.runs import distributed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_train_one_lora_data_parallel(sentiment_csv, tiny_causal, tmp_path):
    accelerate = shutil.which("accelerate", path=os.path.dirname(sys.executable)) or shutil.which("accelerate")
    if accelerate is None:
        pytest.skip("accelerate's launcher is not on PATH")
    # `--strategies lora` runs lora with its defaults (2 epochs, batches of 8): 3 steps an epoch in one process
    experiment = {"task": {"source": str(sentiment_csv), "max_test_examples": 8}, "model": tiny_causal,
                  "device": "cpu", "output_dir": str(tmp_path / "runs"), "strategies": ["zero-shot", "lora"]}
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump(experiment), encoding="utf-8")
    sums = tmp_path / "checksums"
    sums.mkdir()
    env = {**os.environ, "TUNEWISE_PARAM_CHECKSUM_DIR": str(sums), "OMP_NUM_THREADS": "1"}
    # `--multi_gpu` is accelerate's multi-process launcher (torchrun); on a machine without GPUs each process
    # trains on the CPU and DDP talks gloo. (`--cpu --num_processes 2` starts one process unless MPI is set up.)
    cmd = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
           "-m", "tunewise", "run", str(config), "--strategies", "lora"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count("run folder:") == 1  # only the main process reports

    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1  # one run folder, made by the main process
    results = json.loads((runs[0] / "results.json").read_text())
    trained = [r for r in results if r["family"] != "baseline"]
    assert [(r["strategy"], r["status"]) for r in trained] == [("lora", "done")]  # one result

    ranks = [json.loads((sums / f"rank-{i}.json").read_text()) for i in (0, 1)]
    assert all(r["processes"] == 2 for r in ranks)
    assert ranks[0]["sha256"] == ranks[1]["sha256"]  # same parameters after training: gradients averaged
    steps = trained[0]["cost"]["details"]["train_steps"]
    assert ranks[0]["steps"] == ranks[1]["steps"] == steps > 0

    # the same training in one process: each DDP step took one batch per process, so half the steps per epoch
    single = run_experiment(parse_config({**experiment, "output_dir": str(tmp_path / "single"),
                                          "strategies": ["lora"]}, "test"))
    alone = next(r for r in json.loads((single / "results.json").read_text()) if r["strategy"] == "lora")["cost"]
    epochs = alone["epochs_run"]
    assert epochs == trained[0]["cost"]["epochs_run"] and epochs.is_integer()
    per_epoch = alone["details"]["train_steps"] // int(epochs)
    assert per_epoch >= 2 and steps == math.ceil(per_epoch / 2) * int(epochs)


def test_a_single_process_is_not_distributed(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert not distributed.launched() and distributed.is_main()
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert distributed.launched() and not distributed.is_main()
