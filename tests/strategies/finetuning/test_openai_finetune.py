"""Fine-tuning through the OpenAI files and jobs API: the official SDK against `tunewise serve` (local LoRA
training behind /v1/fine_tuning/jobs), and the `openai-finetune` strategy end to end: data check, cost
confirmation, upload, job, polling, resume after an interrupt, evaluation; state survives a restart."""

from __future__ import annotations

import io
import json
import time

import openai
import pytest
from typer.testing import CliRunner

from _serving import THREADS, run_folder, tiny_run, write_config
from conftest import CASES
from tunewise.cli import app
from tunewise.data.chat_format import check_chat
from tunewise.serve.process import ServerProcess

WINDOWS = CASES / "finetune_jsonl" / "library_chat_windows.jsonl"
EMPTY = CASES / "finetune_jsonl" / "library_chat_empty_answers.jsonl"
ROWS = [("the app was great", "positive"), ("awful and broken", "negative"), ("i love it", "positive"),
        ("terrible service", "negative")]


def chat_jsonl(rows=ROWS) -> bytes:
    lines = [json.dumps({"messages": [{"role": "system", "content": "Sentiment?"}, {"role": "user", "content": x},
                                      {"role": "assistant", "content": y}]}) for x, y in rows]
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_causal, tiny_encoder):
    return tiny_run(tmp_path_factory.mktemp("served"), tiny_causal, tiny_encoder)


@pytest.fixture(scope="module")
def state(tmp_path_factory):
    return tmp_path_factory.mktemp("jobs-state")


@pytest.fixture(scope="module")
def server(run_dir, state):
    proc = ServerProcess(run_dir, [*THREADS, "--state-dir", str(state)]).start()
    yield proc
    proc.stop()


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=60)


def base(tiny_causal: str) -> str:
    return tiny_causal.rstrip("/").rsplit("/", 1)[-1]


def wait_for(client, job_id: str, limit: float = 300):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        job = client.fine_tuning.jobs.retrieve(job_id)
        if job.status in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish")


def test_the_data_check_names_every_kind_of_problem():
    lines = chat_jsonl().decode().splitlines() + [
        "{not json", json.dumps({"rows": []}), json.dumps({"messages": [{"role": "robot", "content": "x"}]}),
        json.dumps({"messages": [{"role": "user", "content": "x"}]}),
        json.dumps({"messages": [{"role": "user", "content": "x", "mood": 1}, {"role": "assistant", "content": "y"}]})]
    report = check_chat("\n".join(lines), lambda text: len(text.split()))
    assert report.examples == 4 and len(report.tokens) == 4 and min(report.tokens) > 0
    assert [(p.line, p.field) for p in report.problems] == [
        (5, ""), (6, "messages"), (7, "messages[0].role"), (8, "messages"), (9, "messages[0].mood")]
    assert report.describe("f.jsonl").startswith("f.jsonl: line 5: not valid JSON")


def test_the_case_files_through_v1_files(client):
    """The shared cases: a BOM + CRLF file is accepted with its 8 examples; empty and blank answers are refused
    naming lines 3 and 5; an unknown role is named with the allowed ones."""
    uploaded = client.files.create(file=(WINDOWS.name, WINDOWS.read_bytes()), purpose="fine-tune")
    assert uploaded.status == "processed" and uploaded.model_extra["examples"] == 8
    assert client.files.content(uploaded.id).content == WINDOWS.read_bytes()  # stored as sent
    with pytest.raises(openai.BadRequestError) as info:
        client.files.create(file=(EMPTY.name, EMPTY.read_bytes()), purpose="fine-tune")
    message = info.value.body["message"]
    assert message.startswith(f"{EMPTY.name}: line 3: messages[2].content: the assistant's answer is empty")
    assert "line 5: messages[2].content: the assistant's answer is blank" in message
    robot = json.dumps({"messages": [{"role": "robot", "content": "x"}, {"role": "assistant", "content": "y"}]})
    with pytest.raises(openai.BadRequestError, match=r"line 1: messages\[0\].role: 'robot' is not a known role "
                                                     r"\(use one of: system, developer, user, assistant, tool"):
        client.files.create(file=("robot.jsonl", robot.encode()), purpose="fine-tune")


def test_the_case_files_through_openai_finetunes_data_check(tmp_path, tiny_causal):
    """openai-finetune on a local model reads the chat file as its task: the BOM + CRLF file trains on all its
    examples; the empty answers stop the run (exit 2) before any model loads, naming both lines."""
    strategy = {"name": "openai-finetune", "epochs": 1, "batch_size": 4, "poll_seconds": 0.05, "validation": False}
    bad = write_config(tmp_path / "bad.yaml", task={"source": str(EMPTY), "kind": "generation"}, model=tiny_causal,
                       strategies=[strategy], output_dir=str(tmp_path / "runs"))
    result = CliRunner().invoke(app, ["run", str(bad)])
    assert result.exit_code == 2, result.output
    assert "line 3: messages[2].content" in result.output and "line 5: messages[2].content" in result.output
    assert not (tmp_path / "runs").exists()
    good = write_config(tmp_path / "good.yaml", task={"source": str(WINDOWS), "kind": "generation",
                                                      "test_size": 0.25, "validation_size": 0.0},
                        model=tiny_causal, strategies=[strategy], output_dir=str(tmp_path / "runs"), seed=1)
    result = CliRunner().invoke(app, ["run", str(good)])
    assert result.exit_code == 0, result.output
    folder = run_folder(result.output)
    check = json.loads((folder / "strategies" / "openai-finetune" / "data_check.json").read_text())
    assert check["train"]["examples"] == 6 and check["train"]["problems"] == []  # 8 examples, 2 held out


def test_the_sdk_fine_tunes_a_model_on_tunewise_serve(client, tiny_causal):
    uploaded = client.files.create(file=("train.jsonl", io.BytesIO(chat_jsonl())), purpose="fine-tune")
    assert uploaded.status == "processed" and client.files.retrieve(uploaded.id).bytes == len(chat_jsonl())
    job = client.fine_tuning.jobs.create(model=base(tiny_causal), training_file=uploaded.id, suffix="sdk",
                                         hyperparameters={"n_epochs": 1, "batch_size": 2})
    assert job.status == "queued"
    job = wait_for(client, job.id)
    assert job.status == "succeeded", job.error
    assert job.fine_tuned_model.startswith(f"ft:{base(tiny_causal)}:sdk:") and job.trained_tokens > 0
    assert job.hyperparameters.n_epochs == 1 and job.hyperparameters.batch_size == 2
    events = list(client.fine_tuning.jobs.list_events(job.id))
    assert any(e.type == "metrics" and e.data["train_loss"] > 0 for e in events)
    assert events[0].message == "The job has successfully completed"
    assert job.fine_tuned_model in {m.id for m in client.models.list()}
    reply = client.chat.completions.create(model=job.fine_tuned_model, max_tokens=3, temperature=0,
                                           messages=[{"role": "user", "content": "great app"}])
    assert reply.choices[0].finish_reason in ("stop", "length")
    with pytest.raises(openai.BadRequestError, match="already succeeded"):
        client.fine_tuning.jobs.cancel(job.id)
    with pytest.raises(openai.BadRequestError, match="line 1: not valid JSON"):
        client.files.create(file=("bad.jsonl", io.BytesIO(b"{oops\n")), purpose="fine-tune")
    with pytest.raises(openai.BadRequestError, match="not available for fine-tuning"):
        client.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=uploaded.id)
    with pytest.raises(openai.BadRequestError, match="n_epochs"):
        client.fine_tuning.jobs.create(model=base(tiny_causal), training_file=uploaded.id,
                                       hyperparameters={"n_epochs": 0})
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.retrieve("ftjob-" + "0" * 24)


def _strategy_config(tmp_path, run_dir, tiny_causal, server, **options):
    strategy = {"name": "openai-finetune", "epochs": 1, "batch_size": 4, "poll_seconds": 0.2, **options}
    return write_config(tmp_path / "ft.yaml", task={"source": str(run_dir.parent.parent / "sentiment.csv"),
                                                     "test_size": 0.3, "validation_size": 0.1},
                        model=f"openai:{base(tiny_causal)}?base_url={server.url}", strategies=[strategy],
                        output_dir=str(tmp_path / "runs"), seed=1)


def test_without_yes_a_non_interactive_run_stops_before_uploading(tmp_path, run_dir, tiny_causal, server,
                                                                  client, monkeypatch):
    monkeypatch.setenv("TUNEWISE_OPENAI_CACHE_DIR", str(tmp_path / "cache"))
    files_before = len(client.files.list().data)
    result = CliRunner().invoke(app, ["run", str(_strategy_config(tmp_path, run_dir, tiny_causal, server))])
    assert result.exit_code == 2 and "yes: true" in result.output and "training tokens" in result.output
    assert len(client.files.list().data) == files_before


def test_the_strategy_resumes_its_job_and_evaluates_the_model(tmp_path, run_dir, tiny_causal, server, client,
                                                              monkeypatch, state):
    from tunewise.strategies.finetuning.openai_finetune import OpenAIFinetune

    monkeypatch.setenv("TUNEWISE_OPENAI_CACHE_DIR", str(tmp_path / "cache"))
    config = _strategy_config(tmp_path, run_dir, tiny_causal, server, yes=True, training_price=3.0)
    jobs_before = len(client.fine_tuning.jobs.list().data)
    real_poll = OpenAIFinetune._poll

    def interrupted(self, provider, job_id, ctx):  # Ctrl-C while the job trains at the provider
        raise KeyboardInterrupt

    monkeypatch.setattr(OpenAIFinetune, "_poll", interrupted)
    first = CliRunner().invoke(app, ["run", str(config)])
    assert first.exit_code == 130
    folder = next((tmp_path / "runs").iterdir())
    stored_job = json.loads((folder / "strategies" / "openai-finetune" / "job.json").read_text())
    assert stored_job["request"]["hyperparameters"]["n_epochs"] == 1
    check = json.loads((folder / "strategies" / "openai-finetune" / "data_check.json").read_text())
    assert check["train"]["examples"] > 0 and check["estimate"]["estimated_training_cost_usd"] > 0
    monkeypatch.setattr(OpenAIFinetune, "_poll", real_poll)
    second = CliRunner().invoke(app, ["run", "--resume", str(folder)])
    assert second.exit_code == 0, second.output
    assert len(client.fine_tuning.jobs.list().data) == jobs_before + 1  # the same job, not a second one
    result = json.loads((folder / "results.json").read_text())[0]
    assert result["status"] == "done"
    details = result["cost"]["details"]
    assert details["job_id"] == stored_job["job_id"] and details["fine_tuned_model"].startswith("ft:")
    assert result["cost"]["train_tokens"] > 0 and result["cost"]["trainable_params"] > 0
    assert run_folder(second.output) == folder


def test_a_restarted_server_keeps_files_jobs_and_models(run_dir, state, server, tiny_causal):
    server.stop()  # the last test of the module: the fixture's server is not needed after this
    with ServerProcess(run_dir, [*THREADS, "--state-dir", str(state)]) as again:
        client = openai.OpenAI(base_url=again.url, api_key="unused", max_retries=0, timeout=60)
        jobs = [j for j in client.fine_tuning.jobs.list() if j.status == "succeeded"]
        assert jobs and client.files.list().data
        model = jobs[0].fine_tuned_model
        assert model in {m.id for m in client.models.list()}
        reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}],
                                               max_tokens=2, temperature=0)
        assert reply.usage.completion_tokens >= 1
