"""Routes of the OpenAI files and fine-tuning jobs API over a `JobService`: the same client code that
fine-tunes on OpenAI (`client.files.create`, `client.fine_tuning.jobs.create/retrieve/list_events/cancel`,
`client.fine_tuning.jobs.checkpoints.list`) fine-tunes the run's base model here."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import Response

from tunewise.serve.errors import ApiError, json_object
from tunewise.strategies.finetuning._jobs import MAX_FILE_BYTES, JobService


def _page(items: list[dict[str, Any]], after: str | None, limit: int) -> dict[str, Any]:
    if not 1 <= limit <= 100:
        raise ApiError(400, "limit: from 1 to 100", "limit")
    if after:
        ids = [x["id"] for x in items]
        items = items[ids.index(after) + 1:] if after in ids else []
    return {"object": "list", "data": items[:limit], "has_more": len(items) > limit}


def jobs_router(jobs: JobService) -> APIRouter:
    router = APIRouter(prefix="/v1")

    @router.post("/files")
    def upload(file: UploadFile = File(...), purpose: str = Form(...)):
        data = file.file.read(MAX_FILE_BYTES + 1)
        return jobs.create_file(file.filename or "upload.jsonl", data, purpose)

    @router.get("/files")
    def files(after: str | None = None, limit: int = 100):
        return _page(jobs.list_files(), after, limit)

    @router.get("/files/{file_id}")
    def file(file_id: str):
        return jobs.get_file(file_id)

    @router.get("/files/{file_id}/content")
    def content(file_id: str):
        return Response(jobs.file_content(file_id), media_type="application/octet-stream")

    @router.post("/fine_tuning/jobs")
    async def create(request: Request):
        return await asyncio.to_thread(jobs.create_job, await json_object(request))

    @router.get("/fine_tuning/jobs")
    def list_jobs(after: str | None = None, limit: int = 20):
        return _page(jobs.list_jobs(), after, limit)

    @router.get("/fine_tuning/jobs/{job_id}")
    def job(job_id: str):
        return jobs.get_job(job_id)

    @router.get("/fine_tuning/jobs/{job_id}/events")
    def events(job_id: str, after: str | None = None, limit: int = 20):
        return _page(jobs.events(job_id), after, limit)

    @router.get("/fine_tuning/jobs/{job_id}/checkpoints")
    def checkpoints(job_id: str, after: str | None = None, limit: int = 10):
        jobs.get_job(job_id)  # an unknown job is a 404
        return _page(jobs.ckpts.list(job_id), after, limit)

    @router.post("/fine_tuning/jobs/{job_id}/cancel")
    def cancel(job_id: str):
        return jobs.cancel(job_id)

    return router

