"""The Ray executor on a Ray instance started in the test (2 CPUs): three cells on the tiny models give the local
executor's predictions; a worker killed during a cell is retried (up to executor.max_retries, then the cell alone
fails) and nothing is lost; a run interrupted on Ray resumes with the local executor; per-strategy resources;
without Ray, `--executor ray` names the extra."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from tunewise.config import parse_config
from tunewise.experiment import run_experiment
from tunewise.runs import Run, executor_for
from tunewise.runs.ray_executor import SOURCE_ROOT, resources_for
from tunewise.store import open_run

ray = pytest.importorskip("ray")
HERE = Path(__file__).resolve().parent  # _ray_hooks.py: the test-only worker setup hook
sys.path.insert(0, str(HERE))
from _ray_hooks import CRASH_FILE, MARKER  # noqa: E402


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray instance for the module: workers import tunewise from this source tree and run the
    test-only hook that can kill a worker mid-cell."""
    import logging

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([str(SOURCE_ROOT), str(HERE)]),
                                       "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"},
                          "worker_process_setup_hook": "_ray_hooks.crash_once"})
    yield
    ray.shutdown()


def _config(tmp_path: Path, data: Path, causal: str, encoder: str, **kw):
    return parse_config({"task": {"source": str(data), "test_size": 0.25}, "model": causal, "encoder": encoder,
                         "device": "cpu", "seed": 3, "output_dir": str(tmp_path / "runs"),
                         "strategies": ["zero-shot", {"name": "few-shot", "k": 2},
                                        {"name": "head-only", "epochs": 1}], **kw})


def _outcome(run_dir: Path) -> dict[str, tuple]:
    """Per strategy: status, primary value, and per test example (in test order) its id, output and label
    probabilities: what must not depend on where the cell ran (random tiny models answer one label for every
    example, so the probabilities are what tells two runs apart)."""
    store, row = open_run(run_dir)
    try:
        return {r["strategy"]: (r["status"], r["metrics"].get(r["metrics"].get("primary"), {}).get("value"),
                                [(p["example_id"], p["output"], p["scores"])
                                 for p in store.predictions(row["id"], r["strategy"])])
                for r in store.results(row["id"]) if r["family"] != "baseline"}
    finally:
        store.close()


@pytest.fixture(scope="module")
def local_reference(tmp_path_factory, tiny_causal, tiny_encoder):
    from conftest import make_rows, write_csv

    tmp = tmp_path_factory.mktemp("ray-ref")
    data = write_csv(tmp / "sentiment.csv", make_rows())
    cfg = _config(tmp, data, tiny_causal, tiny_encoder)
    return data, _outcome(run_experiment(cfg, executor="local"))


def test_cells_on_ray_give_the_local_executors_results(ray_local, local_reference, tmp_path, tiny_causal,
                                                        tiny_encoder):
    data, local = local_reference
    run_dir = run_experiment(_config(tmp_path, data, tiny_causal, tiny_encoder), executor="ray")
    on_ray = _outcome(run_dir)
    assert set(on_ray) == {"zero-shot", "few-shot", "head-only"}
    assert all(status == "done" for status, _, _ in on_ray.values())
    assert on_ray == local  # same predictions and label probabilities, same metric values
    assert len({str(scores) for _, _, scores in local["zero-shot"][2]}) > 1  # the comparison can tell examples apart
    assert json.loads((run_dir / "results.json").read_text())  # the driver exported the machine-readable copy


def test_a_killed_worker_is_retried_a_bounded_number_of_times_and_the_other_cells_are_unaffected(
        ray_local, local_reference, tmp_path, tiny_causal, tiny_encoder, capfd):
    data, local = local_reference
    run = Run.create(_config(tmp_path, data, tiny_causal, tiny_encoder, executor={"max_retries": 1}))
    try:
        (run.dir / CRASH_FILE).write_text("few-shot 1\nzero-shot 2\n")  # few-shot's worker dies once, zero-shot's twice
        run.write_splits()
        failures = run.execute(run.cells(), executor_for(run.config, "ray"))
        run.finish()
    finally:
        run.close()
    assert (run.dir / "strategies" / "few-shot" / MARKER).read_text() == "1"  # its first worker did die mid-cell
    assert failures == ["zero-shot: the Ray worker died on all 2 attempts (WorkerCrashedError)"]
    outcome = _outcome(run.dir)
    assert outcome["zero-shot"][0] == "failed"
    assert outcome["few-shot"] == local["few-shot"]  # retried: nothing lost
    assert outcome["head-only"] == local["head-only"]  # unaffected
    assert "Traceback" not in capfd.readouterr().err  # Ray's own logs stay out of the terminal


def test_resources_default_per_family_and_are_overridden_by_family_then_strategy_id():
    cfg = parse_config({"model": "fake", "encoder": "fake", "strategies": ["zero-shot", "lora"],
                        "executor": {"resources": {"finetuning": {"num_cpus": 2, "memory_mb": 512},
                                                   "lora": {"num_gpus": 0.5}}}})
    res = cfg.executor.resources
    assert resources_for("prompting", "zero-shot", res, gpus=True) == {"num_cpus": 1, "num_gpus": 0}
    assert resources_for("finetuning", "full-finetune", {}, gpus=True) == {"num_cpus": 1, "num_gpus": 1}
    assert resources_for("finetuning", "full-finetune", {}, gpus=False) == {"num_cpus": 1, "num_gpus": 0}
    assert resources_for("finetuning", "lora", res, gpus=True) == {"num_cpus": 2, "num_gpus": 0.5,
                                                                   "memory": 512 * 2**20}


def test_resources_name_a_strategy_or_a_family_and_a_typo_names_the_key():
    from tunewise.errors import UserError

    with pytest.raises(UserError, match=r"executor\.resources\.lroa: not a strategy id of this config nor a family"):
        parse_config({"model": "fake", "strategies": ["lora"], "executor": {"resources": {"lroa": {"num_cpus": 2}}}})
    with pytest.raises(UserError, match=r"executor\.resources\.lora\.num_cpus: Input should be greater than 0"):
        parse_config({"model": "fake", "strategies": ["lora"], "executor": {"resources": {"lora": {"num_cpus": 0}}}})


def test_without_ray_the_cli_names_the_extra_and_exits_2(tmp_path, sentiment_csv, monkeypatch):
    from typer.testing import CliRunner

    from tunewise.cli import app

    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed: find_spec("ray") is None
    result = CliRunner().invoke(app, ["run", "--task", str(sentiment_csv), "--model", "fake", "--strategies",
                                      "zero-shot", "--output", str(tmp_path / "runs"), "--executor", "ray"])
    assert result.exit_code == 2
    assert "pip install 'tunewise[ray]'" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "runs").exists()  # failed before any run folder was made



def test_a_run_interrupted_on_ray_resumes_locally(ray_local, local_reference, tmp_path, tiny_causal, tiny_encoder,
                                                  monkeypatch):
    data, local = local_reference
    finished = Run.cell_finished

    def stop_after_first(self, cell, result):  # Ctrl-C in the driver once one cell is stored
        finished(self, cell, result)
        raise KeyboardInterrupt

    monkeypatch.setattr(Run, "cell_finished", stop_after_first)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(_config(tmp_path, data, tiny_causal, tiny_encoder), executor="ray")
    monkeypatch.setattr(Run, "cell_finished", finished)
    (run_dir,) = (tmp_path / "runs").iterdir()
    store, row = open_run(run_dir)
    statuses = sorted(r["status"] for r in store.results(row["id"]) if r["family"] != "baseline")
    store.close()
    assert row["status"] == "interrupted" and statuses == ["done", "interrupted", "interrupted"]
    run_experiment(resume=run_dir, executor="local")
    assert _outcome(run_dir) == local
