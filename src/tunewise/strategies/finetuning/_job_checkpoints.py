"""Checkpoints of local fine-tuning jobs, as OpenAI's `fine_tuning.job.checkpoint` objects.

After each epoch the job's LoRA adapter is saved as `models/<job>/checkpoint-step-N`; like OpenAI, only the
checkpoints of the last three epochs are kept (older folders are deleted). Each has a model name,
`<fine-tuned model>:ckpt-step-N`, that the server serves once the job has succeeded, so a client can compare an
earlier epoch with the final model. Records live in `jobs/<job>.checkpoints.jsonl`, rewritten whole (small).
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunewise.foundation import write_atomic
from tunewise.strategies.finetuning._job_recovery import read_records

KEEP = 3


def model_name(base_id: str, job: dict[str, Any]) -> str:
    """The name of a job's fine-tuned model: ft:BASE:SUFFIX:JOB (OpenAI: ft:BASE:ORG:SUFFIX:ID)."""
    return f"ft:{base_id}:{job['suffix'] or 'tunewise'}:{job['id'][-8:]}"


class Checkpoints:
    """The checkpoints of a JobService's jobs; `on_model(name, folder)` serves one."""

    def __init__(self, root: Path, lock, on_model: Callable[[str, Path], None]):
        self.root, self._lock, self.on_model = root, lock, on_model

    def _file(self, job_id: str) -> Path:
        return self.root / "jobs" / f"{job_id}.checkpoints.jsonl"

    def _folder(self, job_id: str, step: int) -> Path:
        return self.root / "models" / job_id / f"checkpoint-step-{step}"

    def list(self, job_id: str) -> list[dict[str, Any]]:
        """Newest first, as OpenAI lists them."""
        return list(reversed(read_records(self._file(job_id))))

    def save(self, job_id: str, model_name: str, step: int, model, metrics: dict[str, Any]) -> dict[str, Any]:
        """Save the adapter after an epoch and record it; returns the checkpoint object."""
        model.save_pretrained(self._folder(job_id, step))
        item = {"id": f"ftckpt_{uuid.uuid4().hex[:24]}", "object": "fine_tuning.job.checkpoint",
                "created_at": int(time.time()), "fine_tuned_model_checkpoint": f"{model_name}:ckpt-step-{step}",
                "fine_tuning_job_id": job_id, "metrics": {"step": step, **metrics}, "step_number": step}
        with self._lock:
            kept = list(reversed(self.list(job_id))) + [item]
            for old in kept[:-KEEP]:
                shutil.rmtree(self._folder(job_id, old["step_number"]), ignore_errors=True)
            write_atomic(self._file(job_id), "".join(json.dumps(c) + "\n" for c in kept[-KEEP:]))
        return item

    def clear(self, job_id: str) -> None:
        """Forget a job's checkpoint records (its training starts over after a server restart)."""
        with self._lock:
            self._file(job_id).unlink(missing_ok=True)

    def serve(self, job_id: str) -> None:
        """Serve each kept checkpoint under its model name (after the job succeeded)."""
        for c in self.list(job_id):
            self.on_model(c["fine_tuned_model_checkpoint"], self._folder(job_id, c["step_number"]))

    def hook(self, job: dict[str, Any], base_id: str, event: Callable[..., None],
             events: Callable[[str], list[dict[str, Any]]]) -> Callable[[int, int, Any], None]:
        """The `on_epoch(epoch, step, model)` of a job's training: a checkpoint with the latest training loss
        (from the job's metrics events), and an event saying so."""
        def on_epoch(epoch: int, step: int, model) -> None:
            loss = next((e["data"]["train_loss"] for e in events(job["id"])
                         if isinstance(e.get("data"), dict) and "train_loss" in e["data"]), None)
            self.save(job["id"], model_name(base_id, job), step, model, {"train_loss": loss} if loss else {})
            event(job["id"], f"Checkpoint created at step {step} (epoch {epoch})")
        return on_epoch
