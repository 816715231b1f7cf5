"""Where `openai-finetune` sends its job: an OpenAI-compatible API through the SDK (OpenAI itself, Azure,
`tunewise serve`), or, on a local model, tunewise's own job service run in-process (`_jobs.JobService`, the
same code that backs `tunewise serve`'s /v1/fine_tuning/jobs). Both speak in the API's JSON objects (dicts)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunewise.errors import UserError


class SdkProvider:
    """Jobs at the server of an `OpenAIBackend` (a backend with `capabilities.finetune_api`)."""

    kind = "api"
    remote = True

    def __init__(self, backend):
        self.backend, self.client = backend, backend.client
        self.base_model, self.base_url, self.token_counter = backend.remote, backend.base_url, backend.token_counter
        self.where = f"fine-tuning at {backend.base_url}"

    def upload(self, path: Path) -> str:
        with self.backend.sdk_errors(f"{self.where} (uploading {path.name})"), open(path, "rb") as f:
            return self.client.files.create(file=f, purpose="fine-tune").id

    def create(self, body: dict[str, Any], on_train_start=None) -> dict[str, Any]:
        with self.backend.sdk_errors(self.where):
            return self.client.fine_tuning.jobs.create(**body).model_dump(mode="json")

    def retrieve(self, job_id: str) -> dict[str, Any]:
        with self.backend.sdk_errors(self.where):
            return self.client.fine_tuning.jobs.retrieve(job_id).model_dump(mode="json")

    def events(self, job_id: str, every: bool = False) -> list[dict[str, Any]]:
        """Newest first: the latest page, or with `every` all pages."""
        with self.backend.sdk_errors(self.where):
            page = self.client.fine_tuning.jobs.list_events(job_id, limit=100)
            return [e.model_dump(mode="json") for e in (page if every else page.data)]

    def cancel(self, job_id: str) -> None:
        with self.backend.sdk_errors(self.where):
            self.client.fine_tuning.jobs.cancel(job_id)


class LocalProvider:
    """Jobs on tunewise's own job service over a local model (`capabilities.local_weights`)."""

    kind = "local"
    remote = False
    base_url = None
    token_counter = "model tokenizer"

    def __init__(self, backend, folder: Path, base_learning_rate: float, options: dict[str, Any]):
        from tunewise.foundation import base_id
        from tunewise.strategies.finetuning._jobs import JobService

        self.folder, self.options, self.base_model = folder, options, base_id(backend.name)
        self.service = JobService(folder, backend, self.base_model, {backend.name},
                                  base_learning_rate=base_learning_rate, worker=False)

    def _guard(self, fn, *args):
        from tunewise.endpoint import ApiError

        try:
            return fn(*args)
        except ApiError as err:
            raise UserError(f"local fine-tuning job: {err.message}") from None

    def upload(self, path: Path) -> str:
        return self._guard(self.service.create_file, path.name, path.read_bytes(), "fine-tune")["id"]

    def create(self, body: dict[str, Any], on_train_start=None) -> dict[str, Any]:
        job = self._guard(self.service.create_job, body)
        self.service.train_options[job["id"]] = dict(self.options)
        if on_train_start is not None:
            self.service.train_hooks[job["id"]] = on_train_start
        return job

    def retrieve(self, job_id: str) -> dict[str, Any]:
        job = self._guard(self.service.get_job, job_id)
        if job["status"] == "queued":  # nothing else runs this service's jobs: train now, in this thread
            job = self.service.run(job_id)
        return job

    def events(self, job_id: str, every: bool = False) -> list[dict[str, Any]]:
        return self._guard(self.service.events, job_id)

    def cancel(self, job_id: str) -> None:
        self._guard(self.service.cancel, job_id)

    def adapter(self, job_id: str) -> Path:
        return self.folder / "models" / job_id / "adapter"
