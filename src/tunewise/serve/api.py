"""The OpenAI-compatible HTTP app: /v1/models, /v1/chat/completions (`chat.py`), /v1/completions
(`completions.py`), /v1/classify (plus the files and fine-tuning jobs routes of `routes_jobs`).

A strategy id as `model` answers with that strategy's prediction for the input (the last user message,
or the prompt): its own prompt, demonstrations, adapter or classifier apply. The base model and `ft:`
models are raw language models: chat template, sampling, streaming, and log-probabilities (chat
`logprobs`/`top_logprobs`; completions `echo` + `logprobs` to score continuations). Every failure is an
OpenAI-shaped error; no input can crash the server. Raw models also take `tools` (tool calls in the reply,
tool turns in the history) and `response_format`, both generated under a grammar (`tools.py`,
`toolprompt.py`, `toolcalls.py`); strategies refuse them with a 400 that names the models that take them.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException

from tunewise.serve.chat import chat, usage, wait
from tunewise.serve.errors import ApiError, error_body, json_object, refuse_cut
from tunewise.serve.hub import ModelHub
from tunewise.serve.schemas import ChatRequest, ClassifyRequest, CompletionRequest

log = logging.getLogger("tunewise.serve")


async def parse(request: Request, model: type[BaseModel]) -> Any:
    """The JSON body as `model`, whatever the Content-Type; any problem is a 400 naming the parameter."""
    data = await json_object(request)
    try:
        return model.model_validate(data)
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        raise ApiError(400, f"{param}: {first['msg']}" if param else first["msg"], param, "invalid_value") from None


def _error_handlers(app: FastAPI) -> None:
    """Every failure as an OpenAI-shaped error body; an unexpected one is a 500 and the server keeps running."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, err: ApiError):
        return JSONResponse(err.body(), status_code=err.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError):
        problems = err.errors()
        if any(p.get("type") == "json_invalid" for p in problems):
            return JSONResponse(error_body(400, "We could not parse the JSON body of your request: it is not "
                                           "valid JSON.", code="invalid_json"), status_code=400)
        first = problems[0] if problems else {"loc": (), "msg": "invalid request"}
        param = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or None
        message = f"{param}: {first.get('msg')}" if param else str(first.get("msg"))
        return JSONResponse(error_body(400, message, param, "invalid_value"), status_code=400)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, err: HTTPException):
        return JSONResponse(error_body(err.status_code, str(err.detail)), status_code=err.status_code)

    @app.exception_handler(Exception)
    async def _crash(request: Request, err: Exception):
        log.exception("request failed")
        return JSONResponse(error_body(500, f"internal error ({type(err).__name__}); the server keeps running"),
                            status_code=500)


def _auth(app: FastAPI, api_key: str | None, served: dict[str, int]) -> None:
    """Count /v1 requests, and with a key refuse those without it (401; compared in constant time)."""

    @app.middleware("http")
    async def _check(request: Request, call_next):
        if request.url.path.startswith("/v1"):
            served["requests"] += 1  # one event loop: no lock needed
        if api_key and request.url.path.startswith("/v1"):
            header = request.headers.get("authorization", "")
            given = header[7:].strip() if header.lower().startswith("bearer ") else ""
            if not hmac.compare_digest(given.encode(), api_key.encode()):
                return JSONResponse(error_body(401, "Incorrect or missing API key (send 'Authorization: Bearer "
                                               "KEY').", code="invalid_api_key"), status_code=401)
        return await call_next(request)


async def classify(hub: ModelHub, req: ClassifyRequest) -> dict[str, Any]:
    entry = hub.entry(req.model)
    if entry.predictor is None or not entry.labels:
        raise ApiError(400, f"model '{entry.id}' is not a classification strategy (classify with a strategy "
                       "of a classification run)", "model")
    preds = await wait(hub.predict(entry, req.texts()))
    refuse_cut(preds, req.truncation, "input")
    data = [{"index": i, "label": p.output, "probabilities": p.scores or {p.output: 1.0}}
            for i, p in enumerate(preds)]
    return {"object": "list", "model": entry.id, "data": data,
            "usage": usage(sum(p.prompt_tokens for p in preds), sum(p.completion_tokens for p in preds))}


def create_app(hub: ModelHub, jobs=None, api_key: str | None = None) -> FastAPI:
    """The app over a run's models (`hub`), with the files and fine-tuning jobs routes when `jobs` is given;
    with `api_key`, /v1 routes need 'Authorization: Bearer KEY'."""
    from tunewise.serve.openapi import openapi

    app = FastAPI(title="tunewise serve", docs_url=None, redoc_url=None, openapi_url="/openapi.json")
    app.openapi = lambda: openapi(app)  # with the request bodies the endpoints parse themselves
    _error_handlers(app)
    served = {"requests": 0}
    _auth(app, api_key, served)

    @app.get("/health")
    async def health():
        return {"status": "ok", "run": hub.run_id, "models": len(hub.entries), "requests": served["requests"],
                "model_batches": hub.worker.batches, "model_items": hub.worker.items}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": hub.cards()}

    @app.get("/v1/models/{model_id}")
    async def model(model_id: str):
        return hub.entry(model_id).card()

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await chat(hub, await parse(request, ChatRequest))

    @app.post("/v1/completions")
    async def completions(request: Request):
        from tunewise.serve.completions import complete

        return await complete(hub, await parse(request, CompletionRequest))

    @app.post("/v1/classify")
    async def classify_texts(request: Request):
        return await classify(hub, await parse(request, ClassifyRequest))

    if jobs is not None:
        from tunewise.serve.routes_jobs import jobs_router

        app.include_router(jobs_router(jobs))
    return app
