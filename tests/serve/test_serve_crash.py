"""`tunewise serve` killed with SIGKILL while a local fine-tuning job trains: after a restart on the same state
folder the job trains again and succeeds, visibly (an event says it was re-queued), and never stays "running";
a server that keeps dying under one job fails that job with the reason (serve/recovery.py). Also: event and
checkpoint records cut mid-line by a crash are skipped, not fatal."""

from __future__ import annotations

import io
import json
import signal
import time
from types import SimpleNamespace

import openai

from _serving import THREADS, tiny_run
from conftest import make_rows
from tunewise.serve.process import ServerProcess
from tunewise.strategies.finetuning._job_recovery import MAX_RESTARTS, append_record, read_records
from tunewise.strategies.finetuning._jobs import JobService

LIMIT_S = 600  # the most any wait may take on a busy machine


def chat_jsonl(n: int) -> bytes:
    rows = make_rows(n // 2, seed=5)
    lines = [json.dumps({"messages": [{"role": "user", "content": r["text"]},
                                      {"role": "assistant", "content": r["label"]}]}) for r in rows]
    return ("\n".join(lines) + "\n").encode()


def _poll(fetch, done, what: str):
    deadline = time.monotonic() + LIMIT_S
    while time.monotonic() < deadline:
        value = fetch()
        if done(value):
            return value
        time.sleep(0.1)
    raise AssertionError(f"no {what} within {LIMIT_S} s")


def _client(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=60)


def test_a_job_killed_with_its_server_trains_again_after_a_restart(tmp_path, tmp_path_factory, tiny_causal,
                                                                  tiny_encoder):
    run_dir = tiny_run(tmp_path_factory.mktemp("served"), tiny_causal, tiny_encoder)  # shared with other serve tests
    state = tmp_path / "state"
    args = [*THREADS, "--state-dir", str(state)]
    server = ServerProcess(run_dir, args, log_path=tmp_path / "serve-1.log").start()
    try:
        client = _client(server)
        uploaded = client.files.create(file=("train.jsonl", io.BytesIO(chat_jsonl(8))), purpose="fine-tune")
        base = tiny_causal.rstrip("/").rsplit("/", 1)[-1]
        job = client.fine_tuning.jobs.create(model=base, training_file=uploaded.id,
                                             hyperparameters={"n_epochs": 3, "batch_size": 1})
        _poll(lambda: [e.message for e in client.fine_tuning.jobs.list_events(job.id)],
              lambda messages: any(m.startswith("Checkpoint created") for m in messages), "first epoch's checkpoint")
        server.proc.send_signal(signal.SIGKILL)
        assert server.proc.wait(timeout=60) == -signal.SIGKILL
        assert json.loads((state / "jobs" / f"{job.id}.json").read_text())["status"] == "running"  # died mid-way
    finally:
        server.stop()
    with ServerProcess(run_dir, args, log_path=tmp_path / "serve-2.log") as restarted:
        client = _client(restarted)
        final = _poll(lambda: client.fine_tuning.jobs.retrieve(job.id),
                      lambda j: j.status not in ("queued", "running"), "finished job")
        assert final.status == "succeeded", final.error
        events = [e.message for e in client.fine_tuning.jobs.list_events(job.id)]
        assert any(m.startswith("Re-queued after a server restart: training starts over") for m in events)
        steps = [c.step_number for c in client.fine_tuning.jobs.checkpoints.list(job.id)]
        assert steps == sorted(set(steps), reverse=True) and len(steps) == 3  # this attempt's epochs, once each
        assert final.fine_tuned_model in {m.id for m in client.models.list()}
        reply = client.chat.completions.create(model=final.fine_tuned_model, max_tokens=2,
                                               messages=[{"role": "user", "content": "great app"}])
        assert reply.choices[0].finish_reason in ("stop", "length")


def _service(state) -> JobService:
    """A JobService as a restarted server builds it (no model: only the records matter here)."""
    return JobService(state, SimpleNamespace(capabilities=SimpleNamespace(local_weights=False)), "base", worker=False)


def test_a_server_that_keeps_dying_under_a_job_fails_it_with_the_reason(tmp_path):
    service = _service(tmp_path)
    job = {"id": "ftjob-" + "a" * 24, "object": "fine_tuning.job", "created_at": 1, "status": "running",
           "error": None, "finished_at": None}
    service._save("jobs", job)
    (tmp_path / "models" / job["id"] / "checkpoint-step-4").mkdir(parents=True)
    append_record(tmp_path / "jobs" / f"{job['id']}.checkpoints.jsonl", {"step_number": 4})
    for restart in range(1, MAX_RESTARTS + 1):
        service = _service(tmp_path)
        restored = service.get_job(job["id"])
        assert restored["status"] == "queued" and restored["tunewise"]["restarts"] == restart
        assert not (tmp_path / "models" / job["id"]).exists()  # the lost attempt's adapters are gone
        assert service.ckpts.list(job["id"]) == []
        service._save("jobs", {**restored, "status": "running"})  # ...and the server dies again while it trains
    failed = _service(tmp_path)
    record = failed.get_job(job["id"])
    assert record["status"] == "failed" and record["error"]["code"] == "server_stopped"
    assert f"stopped {MAX_RESTARTS + 1} times" in record["error"]["message"]
    assert failed.events(job["id"])[0]["level"] == "error"


def test_records_cut_mid_line_by_a_crash_are_skipped(tmp_path):
    path = tmp_path / "events.jsonl"
    append_record(path, {"n": 1})
    with open(path, "ab") as f:
        f.write(b'{"n": 2, "mess')  # the process died mid-write
    append_record(path, {"n": 3})
    assert read_records(path) == [{"n": 1}, {"n": 3}]
