"""The OpenAI files and fine-tuning jobs API, backed by local LoRA training: what `tunewise serve` serves at
/v1/files and /v1/fine_tuning/jobs (`serve/routes_jobs.py`) and what `openai-finetune` runs in-process on a
local model (`_ft_providers.LocalProvider`), so it lives here, below both. Uploads are checked by
`tunewise.data.chat_format`, the same check `openai-finetune` makes.

State lives in a folder of JSON files (files/, jobs/, models/), written atomically, so a restarted
server still lists every file and job, serves every model it trained, and re-queues jobs that were
running when it stopped (training starts over; `recovery.py`). Jobs run one at a time in a background thread (or, for
`openai-finetune` on a local model, in the caller's thread through `run`).
"""

from __future__ import annotations

import copy
import json
import math
import os
import queue
import re
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunewise.data.chat_format import check_chat, decode
from tunewise.endpoint import ApiError
from tunewise.strategies.finetuning._chat_data import auto_epochs
from tunewise.strategies.finetuning._job_checkpoints import Checkpoints, model_name
from tunewise.strategies.finetuning._job_recovery import append_record, read_records, recover

MAX_FILE_BYTES = 200 * 2**20
TERMINAL = {"succeeded", "failed", "cancelled"}
HYPER = {"n_epochs": (int, 1, 50), "batch_size": (int, 1, 256), "learning_rate_multiplier": (float, 1e-3, 10.0)}


def _now() -> int:
    return int(time.time())


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


class JobService:
    def __init__(self, state_dir: str | Path, backend, base_id: str, aliases: set[str] | None = None,
                 on_model: Callable[[str, Path], None] = lambda name, path: None,
                 base_learning_rate: float = 1e-3, worker: bool = True):
        self.root = Path(state_dir)
        for sub in ("files", "jobs", "models"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.backend, self.base_id, self.on_model = backend, base_id, on_model
        self.aliases = {base_id} | set(aliases or ())
        self.base_learning_rate = base_learning_rate
        # In-process use (openai-finetune on a local model): per job, a hook that sees the model before
        # training, and the strategy's other training options (warmup, weight decay, ...).
        self.train_hooks: dict[str, Callable[[Any], None]] = {}
        self.train_options: dict[str, dict[str, Any]] = {}
        self._lock = threading.RLock()
        self.ckpts = Checkpoints(self.root, self._lock, lambda name, path: self.on_model(name, path))
        # Uploads are checked on request threads while a job may tokenize on the jobs thread: HF fast
        # tokenizers are not safe across threads, so uploads count with their own copy, one at a time.
        self._counter = copy.deepcopy(backend.tokenizer) if backend.capabilities.local_weights else None
        self._count_lock = threading.Lock()
        self._queue: queue.Queue[str] = queue.Queue()
        self._cancelled: set[str] = set()
        self._restore()
        if worker:
            threading.Thread(target=self._loop, name="tunewise-jobs", daemon=True).start()

    # --- storage ----------------------------------------------------------------------------------
    def _path(self, kind: str, item_id: str, suffix: str = ".json") -> Path:
        if not re.fullmatch(r"(file|ftjob)-[0-9a-f]{24}", item_id):
            raise ApiError(404, f"No such {kind[:-1]}: '{item_id}'.", "id", "not_found")
        return self.root / kind / f"{item_id}{suffix}"

    def _save(self, kind: str, item: dict[str, Any]) -> None:
        path = self._path(kind, item["id"])
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(item, indent=1), encoding="utf-8")
        os.replace(tmp, path)  # atomic: a crash never leaves half a record

    def _load(self, kind: str, item_id: str) -> dict[str, Any]:
        path = self._path(kind, item_id)
        if not path.is_file():
            raise ApiError(404, f"No such {kind[:-1]}: '{item_id}'.", "id", "not_found")
        return json.loads(path.read_text(encoding="utf-8"))

    def _all(self, kind: str) -> list[dict[str, Any]]:
        items = [json.loads(p.read_text(encoding="utf-8")) for p in (self.root / kind).glob("*.json")]
        return sorted(items, key=lambda x: (x["created_at"], x["id"]), reverse=True)

    def _event(self, job_id: str, message: str, level: str = "info", data: dict | None = None) -> None:
        event = {"id": _id("ftevent"), "object": "fine_tuning.job.event", "created_at": _now(), "level": level,
                 "message": message, "type": "metrics" if data else "message", "data": data}
        with self._lock:
            append_record(self._path("jobs", job_id, ".events.jsonl"), event)

    # --- files --------------------------------------------------------------------------------------
    def create_file(self, filename: str, data: bytes, purpose: str) -> dict[str, Any]:
        if purpose != "fine-tune":
            raise ApiError(400, f"purpose '{purpose}' is not supported here; upload with purpose 'fine-tune'",
                           "purpose", "invalid_purpose")
        if len(data) > MAX_FILE_BYTES:
            raise ApiError(413, f"file too large ({len(data)} bytes; at most {MAX_FILE_BYTES})", "file")
        text, problem = decode(data)
        report = check_chat(text or "", self.count_tokens, self.backend.context_window)
        if problem or not report.ok:
            raise ApiError(400, f"{filename}: {problem}" if problem else report.describe(filename), "file",
                           "invalid_file")
        item = {"id": _id("file"), "object": "file", "bytes": len(data), "created_at": _now(),
                "filename": Path(filename).name or "upload.jsonl", "purpose": purpose, "status": "processed",
                "status_details": None, "expires_at": None, "examples": report.examples,
                "tokens": sum(report.tokens), "warnings": [str(w) for w in report.warnings]}
        with self._lock:
            self._path("files", item["id"], ".jsonl").write_bytes(data)
            self._save("files", item)
        return item

    def get_file(self, file_id: str) -> dict[str, Any]:
        return self._load("files", file_id)

    def list_files(self) -> list[dict[str, Any]]:
        return self._all("files")

    def file_content(self, file_id: str) -> bytes:
        self.get_file(file_id)
        return self._path("files", file_id, ".jsonl").read_bytes()

    def count_tokens(self, text: str) -> int:
        if self._counter is None:
            return max(1, len(text) // 4)
        with self._count_lock:
            return len(self._counter(text, add_special_tokens=False)["input_ids"])

    # --- jobs -----------------------------------------------------------------------------------------
    def create_job(self, body: dict[str, Any]) -> dict[str, Any]:
        model = body.get("model")
        if self.backend is None or model not in self.aliases:
            raise ApiError(400, f"Model '{model}' is not available for fine-tuning on this server (base model: "
                           f"{self.base_id if self.backend is not None else 'none'}).", "model", "model_not_available")
        for key in ("training_file", "validation_file"):
            if body.get(key) is not None:
                try:
                    self.get_file(str(body[key]))
                except ApiError:
                    raise ApiError(400, f"invalid {key}: no such file '{body[key]}'", key, "invalid_file") from None
        if not body.get("training_file"):
            raise ApiError(400, "training_file is required", "training_file")
        method = body.get("method") or {"type": "supervised"}
        if not isinstance(method, dict) or method.get("type", "supervised") != "supervised":
            raise ApiError(400, "only method type 'supervised' is supported here", "method")
        hyper = body.get("hyperparameters") or ((method.get("supervised") or {}).get("hyperparameters")) or {}
        suffix = body.get("suffix")
        if suffix is not None and not (isinstance(suffix, str) and re.fullmatch(r"[A-Za-z0-9_-]{1,64}", suffix)):
            raise ApiError(400, "suffix: up to 64 letters, digits, '-' or '_'", "suffix")
        seed = body.get("seed", 0)
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ApiError(400, "seed must be an integer", "seed")
        job = {"id": _id("ftjob"), "object": "fine_tuning.job", "created_at": _now(), "finished_at": None,
               "model": self.base_id, "fine_tuned_model": None, "organization_id": "org-local", "result_files": [],
               "status": "queued", "training_file": body["training_file"],
               "validation_file": body.get("validation_file"), "hyperparameters": _check_hyper(hyper),
               "trained_tokens": None, "error": None, "seed": seed, "suffix": suffix, "estimated_finish": None,
               "method": {"type": "supervised"}, "metadata": body.get("metadata"), "integrations": []}
        with self._lock:
            self._save("jobs", job)
            self._event(job["id"], f"Created fine-tuning job: {job['id']}")
        self._queue.put(job["id"])
        return job

    def get_job(self, job_id: str) -> dict[str, Any]:
        return self._load("jobs", job_id)

    def list_jobs(self) -> list[dict[str, Any]]:
        return self._all("jobs")

    def events(self, job_id: str) -> list[dict[str, Any]]:
        """Newest first, as OpenAI lists them."""
        self.get_job(job_id)
        return list(reversed(read_records(self._path("jobs", job_id, ".events.jsonl"))))

    def cancel(self, job_id: str) -> dict[str, Any]:
        with self._lock:
            job = self.get_job(job_id)
            if job["status"] in TERMINAL:
                raise ApiError(400, f"Job {job_id} has already {job['status']}; it cannot be cancelled.", "id",
                               "job_not_cancellable")
            self._cancelled.add(job_id)
            if job["status"] == "queued":
                self._finish(job, "cancelled", "Job cancelled")
        return self.get_job(job_id)

    def _finish(self, job: dict[str, Any], status: str, message: str, level: str = "info") -> None:
        job.update(status=status, finished_at=_now())
        self._save("jobs", job)
        self._event(job["id"], message, level)

    # --- running ----------------------------------------------------------------------------------
    def _restore(self) -> None:
        for job in reversed(self._all("jobs")):
            if job["status"] in ("validating_files", "queued", "running"):  # see recovery.py
                if recover(job, self.ckpts.clear, self.root / "models" / job["id"], self._event):
                    self._queue.put(job["id"])
                self._save("jobs", job)
            elif job["status"] == "succeeded" and job.get("fine_tuned_model"):
                self.on_model(job["fine_tuned_model"], self.root / "models" / job["id"] / "adapter")
                self.ckpts.serve(job["id"])

    def _loop(self) -> None:
        while True:
            self.run(self._queue.get())

    def run(self, job_id: str) -> dict[str, Any]:
        """Train one queued job to its end (succeeded, failed or cancelled) and return it."""
        with self._lock:
            job = self.get_job(job_id)
            if job["status"] != "queued":
                return job
            job.update(status="running")
            self._save("jobs", job)
            self._event(job_id, "Fine-tuning job started")
        try:
            self._train(job)
        except Exception as err:  # a failed job is recorded on the job; the server goes on
            job["error"] = {"code": "training_failed", "message": f"{type(err).__name__}: {err}".splitlines()[0],
                            "param": None}
            self._finish(job, "failed", f"Fine-tuning job failed: {job['error']['message']}", "error")
        return self.get_job(job_id)

    def _conversations(self, file_id: str | None) -> list[list[dict]]:
        if not file_id:
            return []
        return check_chat(self.file_content(file_id).decode("utf-8-sig")).conversations

    def _train(self, job: dict[str, Any]) -> None:
        from tunewise.strategies.finetuning._chat_sft import train_lora_on_chats

        job_id = job["id"]
        train_set, valid_set = self._conversations(job["training_file"]), self._conversations(job["validation_file"])
        hyper = _resolve(job["hyperparameters"], len(train_set))
        job["hyperparameters"] = hyper
        total = math.ceil(len(train_set) / hyper["batch_size"]) * hyper["n_epochs"]
        self._save("jobs", job)

        def log(record: dict[str, Any]) -> None:
            if "loss" in record:
                self._event(job_id, f"Step {record['step']}/{total}: training loss={record['loss']:.4f}",
                            data={"step": record["step"], "train_loss": record["loss"], "total_steps": total})

        out = self.root / "models" / job_id
        _, stats = train_lora_on_chats(
            self.backend, train_set, valid_set,
            {**self.train_options.pop(job_id, {}), "epochs": hyper["n_epochs"], "batch_size": hyper["batch_size"],
             "learning_rate": self.base_learning_rate * hyper["learning_rate_multiplier"]},
            out, seed=job["seed"], log=log, should_stop=lambda: job_id in self._cancelled,
            on_train_start=self.train_hooks.pop(job_id, None),
            on_epoch=self.ckpts.hook(job, self.base_id, self._event, self.events))
        if job_id in self._cancelled:
            self._finish(job, "cancelled", "Job cancelled")
            return
        job["fine_tuned_model"] = model_name(self.base_id, job)
        job["trained_tokens"] = int(stats.get("train_tokens", 0))
        job["tunewise"] = {k: stats.get(k) for k in ("trainable_params", "total_params", "train_steps", "epochs_run",
                                                      "final_train_loss", "valid_loss", "train_examples")}
        self._event(job_id, f"New fine-tuned model created: {job['fine_tuned_model']}")
        self.on_model(job["fine_tuned_model"], out / "adapter")
        self.ckpts.serve(job_id)
        self._finish(job, "succeeded", "The job has successfully completed")


def _check_hyper(hyper: Any) -> dict[str, Any]:
    if not isinstance(hyper, dict):
        raise ApiError(400, "hyperparameters must be an object", "hyperparameters")
    unknown = set(hyper) - set(HYPER)
    if unknown:
        raise ApiError(400, f"unknown hyperparameter '{sorted(unknown)[0]}' (known: {', '.join(HYPER)})",
                       "hyperparameters")
    out: dict[str, Any] = {}
    for key, (kind, low, high) in HYPER.items():
        value = hyper.get(key, "auto")
        if value != "auto":
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value <= high
            if not ok or (kind is int and int(value) != value):
                raise ApiError(400, f"hyperparameters.{key}: 'auto' or a {kind.__name__} from {low} to {high}",
                               f"hyperparameters.{key}")
            value = kind(value)
        out[key] = value
    return out


def _resolve(hyper: dict[str, Any], n_examples: int) -> dict[str, Any]:
    """'auto' values: epochs by data size as OpenAI picks them, batches of 8 (fewer for tiny files), x1 rate."""
    auto = {"n_epochs": auto_epochs(n_examples), "batch_size": min(8, max(1, n_examples)),
            "learning_rate_multiplier": 1.0}
    return {key: auto[key] if value == "auto" else value for key, value in hyper.items()}
