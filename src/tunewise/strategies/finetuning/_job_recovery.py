"""What a restarted `tunewise serve` does with the fine-tuning jobs it finds unfinished, and the append-only
record files (events, checkpoints) that a crash may have cut mid-line.

A job that was queued is queued again. A job that was running when the server died (SIGKILL, out of memory, a
power cut) starts its training over, visibly (an event says so, and why), after the checkpoints of the lost
attempt are removed; once the server has died MAX_RESTARTS times under the same job, the job is marked failed
with the reason, so a job that kills its server cannot keep it in a crash loop, and no job stays "running".
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

MAX_RESTARTS = 2  # restarts of training after a server death; the next death fails the job


def recover(job: dict[str, Any], clear_checkpoints: Callable[[str], None], models: Path,
            event: Callable[..., None]) -> bool:
    """Update an unfinished job (status queued, validating_files or running) found at start-up; True when it
    is to be queued again, False when it is now failed. `clear_checkpoints(job_id)` forgets the lost attempt's
    checkpoint records; `models` is the job's folder of adapters and checkpoints; `event(job_id, message, level)`
    records what happened on the job's events."""
    if job["status"] != "running":
        job["status"] = "queued"
        event(job["id"], "Re-queued after a server restart")
        return True
    notes = job.setdefault("tunewise", {})
    notes["restarts"] = restarts = int(notes.get("restarts", 0)) + 1
    clear_checkpoints(job["id"])
    shutil.rmtree(models, ignore_errors=True)  # a lost attempt's adapters must never be served as this job's
    if restarts > MAX_RESTARTS:
        message = (f"the server stopped {restarts} times while this job was training (killed, or out of memory?); "
                   "lower batch_size or n_epochs, or give the server more memory, and create the job again")
        job.update(status="failed", finished_at=int(time.time()),
                   error={"code": "server_stopped", "message": message, "param": None})
        event(job["id"], f"Fine-tuning job failed: {message}", "error")
        return False
    job["status"] = "queued"
    event(job["id"], f"Re-queued after a server restart: training starts over (restart {restarts} of at most "
                     f"{MAX_RESTARTS})", "warn")
    return True


def append_record(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line; a line cut short by a crash before it is ended first, so it cannot swallow this one."""
    with open(path, "a+b") as f:
        if f.tell() and (f.seek(f.tell() - 1), f.read(1))[1] != b"\n":
            f.write(b"\n")
        f.write((json.dumps(record) + "\n").encode("utf-8"))


def read_records(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of `path` in file order (none when it is missing), without a line a crash cut short."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:  # blank, or torn by a crash mid-write: it was never a whole record
            continue
    return [r for r in records if isinstance(r, dict)]
