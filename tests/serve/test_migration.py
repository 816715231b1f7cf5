"""The way off hosted fine-tuning (recipes/openai-migration.yaml): an OpenAI chat-format JSONL and the unchanged
openai SDK calls (files.create, fine_tuning.jobs.create with hyper-parameters, retrieve, list_events,
checkpoints.list, cancel, then chat.completions.create on the `ft:` model) run against `tunewise serve` and
train locally; then the recipe's run scores that fine-tune against the prompted base model on the held-out
examples and `tunewise report` compares them. The hosted comparison runs only with an OpenAI key and a hosted
job id (TUNEWISE_HOSTED_FT_JOB)."""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path

import openai
import pytest
import yaml
from typer.testing import CliRunner

from _serving import THREADS, run_folder, tiny_run
from conftest import ROOT, make_rows
from tunewise.cli import app
from tunewise.serve.process import ServerProcess

RECIPE = ROOT / "recipes" / "openai-migration.yaml"
SYSTEM = "Classify the sentiment of the review: positive or negative."


def chat_jsonl(path: Path, rows: list[dict[str, str]]) -> Path:
    lines = [json.dumps({"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": r["text"]},
                                      {"role": "assistant", "content": r["label"]}]}) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> tuple[Path, Path]:
    root, rows = tmp_path_factory.mktemp("migration"), make_rows(8, seed=3)
    return chat_jsonl(root / "train.jsonl", rows[:12]), chat_jsonl(root / "heldout.jsonl", rows[12:])


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_causal, tiny_encoder):
    run_dir = tiny_run(tmp_path_factory.mktemp("served"), tiny_causal, tiny_encoder)
    with ServerProcess(run_dir, [*THREADS, "--state-dir", str(tmp_path_factory.mktemp("state"))]) as proc:
        yield proc


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=120)


def wait_for(client, job_id: str, limit: float = 600):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        job = client.fine_tuning.jobs.retrieve(job_id)
        if job.status in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not finish")


@pytest.fixture(scope="module")
def job(client, files, tiny_causal):
    """What a user's fine-tuning script does at OpenAI, pointed at tunewise serve."""
    base = tiny_causal.rstrip("/").rsplit("/", 1)[-1]
    with open(files[0], "rb") as f:
        uploaded = client.files.create(file=f, purpose="fine-tune")
    created = client.fine_tuning.jobs.create(model=base, training_file=uploaded.id, suffix="migrated", hyperparameters={
        "n_epochs": 2, "batch_size": 4, "learning_rate_multiplier": 2.0})
    return wait_for(client, created.id)


def test_the_unchanged_sdk_calls_fine_tune_locally(client, job, files, tiny_causal):
    assert job.status == "succeeded", job.error
    assert job.fine_tuned_model.startswith("ft:") and ":migrated:" in job.fine_tuned_model
    assert (job.hyperparameters.n_epochs, job.hyperparameters.batch_size) == (2, 4)
    assert job.hyperparameters.learning_rate_multiplier == 2.0 and job.trained_tokens > 0
    events = list(client.fine_tuning.jobs.list_events(job.id))
    assert events[0].message == "The job has successfully completed"
    assert any(e.type == "metrics" and e.data["train_loss"] > 0 for e in events)
    checkpoints = list(client.fine_tuning.jobs.checkpoints.list(job.id))
    steps = [c.step_number for c in checkpoints]
    assert len(checkpoints) == 2 and steps == sorted(steps, reverse=True)  # one per epoch, newest first
    assert all(c.fine_tuned_model_checkpoint == f"{job.fine_tuned_model}:ckpt-step-{c.step_number}"
               and c.fine_tuning_job_id == job.id and c.metrics.step == c.step_number for c in checkpoints)
    served = {m.id for m in client.models.list()}
    assert job.fine_tuned_model in served and {c.fine_tuned_model_checkpoint for c in checkpoints} <= served
    for model in (job.fine_tuned_model, checkpoints[-1].fine_tuned_model_checkpoint):
        reply = client.chat.completions.create(model=model, max_tokens=3, temperature=0, messages=[
            {"role": "system", "content": SYSTEM}, {"role": "user", "content": "great app"}])
        assert reply.choices[0].finish_reason in ("stop", "length")
    with open(files[0], "rb") as f:
        second = client.fine_tuning.jobs.create(model=job.model, training_file=client.files.create(
            file=f, purpose="fine-tune").id, hyperparameters={"n_epochs": 50})
    assert client.fine_tuning.jobs.cancel(second.id).status in ("cancelled", "running")
    assert wait_for(client, second.id).status == "cancelled"


def test_the_recipe_compares_the_fine_tune_with_the_prompted_base_model(server, job, files, tiny_causal, tmp_path):
    base = tiny_causal.rstrip("/").rsplit("/", 1)[-1]
    recipe = yaml.safe_load(RECIPE.read_text(encoding="utf-8"))
    recipe["task"].update(train=str(files[0]), test=str(files[1]))
    recipe["model"] = f"openai:{base}?base_url={server.url}"
    recipe["strategies"][-1]["job"] = job.id
    recipe["output_dir"] = str(tmp_path / "runs")
    config = tmp_path / "migration.yaml"
    config.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    env = {"TUNEWISE_OPENAI_CACHE_DIR": str(tmp_path / "cache")}
    result = CliRunner().invoke(app, ["run", str(config)], env=env)
    assert result.exit_code == 0, result.output
    run_dir = run_folder(result.output)
    results = {r["strategy"]: r for r in json.loads((run_dir / "results.json").read_text(encoding="utf-8"))}
    assert {s for s, r in results.items() if r["family"] != "baseline"} == {"zero-shot", "few-shot", "local-finetune"}
    assert all(r["status"] == "done" for r in results.values())
    assert results["local-finetune"]["cost"]["details"]["fine_tuned_model"] == job.fine_tuned_model
    heldout = len(files[1].read_text(encoding="utf-8").splitlines())
    predictions = (run_dir / "predictions" / "local-finetune.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(predictions) == heldout
    assert json.loads(predictions[0])["prompt_tokens"] > 0
    reported = CliRunner().invoke(app, ["report", str(run_dir)])
    assert reported.exit_code == 0, reported.output
    with open(run_dir / "results.csv", encoding="utf-8") as f:
        assert {row["strategy"] for row in csv.DictReader(f)} == set(results)
    assert "local-finetune" in (run_dir / "report.html").read_text(encoding="utf-8")


@pytest.mark.skipif(not (os.environ.get("OPENAI_API_KEY") and os.environ.get("TUNEWISE_HOSTED_FT_JOB")),
                    reason="needs OPENAI_API_KEY and TUNEWISE_HOSTED_FT_JOB (a succeeded job at OpenAI): offline here")
def test_the_hosted_fine_tune_joins_the_comparison(server, files, tiny_causal, tmp_path):  # pragma: no cover
    base = tiny_causal.rstrip("/").rsplit("/", 1)[-1]
    recipe = yaml.safe_load(RECIPE.read_text(encoding="utf-8"))
    recipe["task"].update(train=str(files[0]), test=str(files[1]))
    recipe["model"] = f"openai:{base}?base_url={server.url}"
    recipe["strategies"] = ["zero-shot", {"name": "openai-finetune", "id": "hosted-finetune", "provider":
                                          "openai:gpt-4o-mini-2024-07-18", "job": os.environ["TUNEWISE_HOSTED_FT_JOB"]}]
    recipe["output_dir"] = str(tmp_path / "runs")
    config = tmp_path / "hosted.yaml"
    config.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    result = CliRunner().invoke(app, ["run", str(config)])
    assert result.exit_code == 0, result.output
    results = json.loads((run_folder(result.output) / "results.json").read_text(encoding="utf-8"))
    assert {r["strategy"]: r["status"] for r in results} == {"zero-shot": "done", "hosted-finetune": "done"}
