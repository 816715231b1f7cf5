"""The OpenAI-compatible HTTP app: /v1/models, /v1/chat/completions, /v1/completions, /v1/classify (plus
the files and fine-tuning jobs routes of `routes_jobs`).

A strategy id as `model` answers with that strategy's prediction for the input (the last user message,
or the prompt): its own prompt, demonstrations, adapter or classifier apply. The base model and `ft:`
models are raw language models: chat template, sampling, streaming, and log-probabilities (chat
`logprobs`/`top_logprobs`; completions `echo` + `logprobs` to score continuations). Every failure is an
OpenAI-shaped error; no input can crash the server.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import time
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException

from tunewise.backends.context import Limit, fit_messages
from tunewise.serve import lm, sse
from tunewise.serve.errors import ApiError, context_length_exceeded, error_body, json_object, refuse_cut
from tunewise.serve.hub import Entry, ModelHub
from tunewise.serve.schemas import ChatRequest, ClassifyRequest, CompletionRequest

log = logging.getLogger("tunewise.serve")


async def wait(future) -> Any:
    return await asyncio.wrap_future(future)


async def parse(request: Request, model: type[BaseModel]) -> Any:
    """The JSON body as `model`, whatever the Content-Type; any problem is a 400 naming the parameter."""
    data = await json_object(request)
    try:
        return model.model_validate(data)
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        raise ApiError(400, f"{param}: {first['msg']}" if param else first["msg"], param, "invalid_value") from None


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _fits(entry: Entry, prompt_tokens: int, max_tokens: int) -> None:
    limit = entry.backend.context_window
    if limit and prompt_tokens + max_tokens > limit:
        raise context_length_exceeded(prompt_tokens + max_tokens, limit, "messages",
                                      f"the prompt has {prompt_tokens} and max_tokens asks for {max_tokens} more")


def _fit_chat(hub: ModelHub, entry: Entry, messages: list[dict[str, str]], prompt: str, req: ChatRequest) -> str:
    """With truncation: auto, a conversation over the context loses its oldest turns, then the end of its
    longest message (backends/context.py), so that the reply fits."""
    limit = entry.backend.context_window
    if req.truncation != "auto" or not limit or hub.count(prompt) + req.limit() <= limit:
        return prompt
    return fit_messages(hub.counter, messages, lambda m: entry.backend.render(m, add_generation_prompt=True),
                        Limit(max(limit - req.limit(), 1), "truncate", f"the context of {limit}"))[0]


def _chat_logprobs(entries: list[dict[str, Any]] | None, k: int) -> dict[str, Any] | None:
    if entries is None:
        return None
    def item(token: str, logprob: float) -> dict[str, Any]:
        return {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8"))}
    return {"content": [{**item(e["token"], e["logprob"]), "top_logprobs": [item(t, v) for t, v in e["top"][:k]]}
                        for e in entries], "refusal": None}


def _label_logprobs(pred, k: int | None) -> list[dict[str, Any]] | None:
    """A strategy's label probabilities in the shape of token log-probabilities (one 'token': the label)."""
    if not pred.scores:
        return None
    ranked = sorted(pred.scores.items(), key=lambda kv: -kv[1])
    top = [(label, math.log(max(p, 1e-300))) for label, p in ranked]
    return [{"token": pred.output, "logprob": math.log(max(pred.scores.get(pred.output, 1e-300), 1e-300)),
             "top": top[:k] if k is not None else top}]


def create_app(hub: ModelHub, jobs=None, api_key: str | None = None) -> FastAPI:
    app = FastAPI(title="tunewise serve", docs_url=None, redoc_url=None, openapi_url=None)

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

    served = {"requests": 0}

    @app.middleware("http")
    async def _auth(request: Request, call_next):
        if request.url.path.startswith("/v1"):
            served["requests"] += 1  # one event loop: no lock needed
        if api_key and request.url.path.startswith("/v1"):
            header = request.headers.get("authorization", "")
            given = header[7:].strip() if header.lower().startswith("bearer ") else ""
            if not hmac.compare_digest(given.encode(), api_key.encode()):
                return JSONResponse(error_body(401, "Incorrect or missing API key (send 'Authorization: Bearer "
                                               "KEY').", code="invalid_api_key"), status_code=401)
        return await call_next(request)

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
    async def chat(request: Request):
        req = await parse(request, ChatRequest)
        entry = hub.entry(req.model)
        if req.top_logprobs and not req.logprobs:
            raise ApiError(400, "top_logprobs needs logprobs: true", "top_logprobs")
        meta = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "created": int(time.time()), "model": entry.id}
        if entry.predictor is not None:
            return await _chat_strategy(entry, req, meta)
        messages = []
        for m in req.messages:
            if m.role in ("tool", "function"):
                raise ApiError(400, f"messages: role '{m.role}' is not supported by this server", "messages")
            messages.append({"role": "system" if m.role == "developer" else m.role, "content": m.text()})
        try:
            prompt = entry.backend.render(messages, add_generation_prompt=True)
        except Exception as err:  # the chat template rejects this conversation
            raise ApiError(400, f"messages: {str(err).splitlines()[0]}", "messages") from None
        prompt = _fit_chat(hub, entry, messages, prompt, req)
        prompt_tokens = hub.count(prompt)
        _fits(entry, prompt_tokens, req.limit())
        params = lm.Params(req.limit(), 1.0 if req.temperature is None else req.temperature, req.top_p or 1.0,
                           tuple(req.stop or ()), req.n, (req.top_logprobs or 0) if req.logprobs else None, req.seed)

        def chunk(text, finish, index=0):
            delta = {} if text is None else {"content": text}
            return {**meta, "object": "chat.completion.chunk", "choices": [
                {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}]}

        if req.stream:
            if req.n > 1 or req.logprobs:
                raise ApiError(400, "stream: true works with n = 1 and no logprobs here", "stream")
            from transformers import TextIteratorStreamer

            streamer = TextIteratorStreamer(entry.backend.tokenizer, skip_prompt=True, skip_special_tokens=True,
                                            timeout=0.05)
            future = hub.stream(entry, prompt, params, streamer)
            first = {**chunk(None, None), "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                                       "logprobs": None, "finish_reason": None}]}
            usage = (lambda n: _usage(prompt_tokens, n)) if (req.stream_options or {}).get("include_usage") else None
            return sse.response(sse.tokens(streamer, future, params.stop, params.max_tokens, chunk, usage, first))
        choices = await wait(hub.generate(entry, prompt, params))
        return {**meta, "object": "chat.completion", "system_fingerprint": None, "choices": [
            {"index": i, "message": {"role": "assistant", "content": c.text, "refusal": None},
             "logprobs": _chat_logprobs(c.logprobs, params.logprobs or 0), "finish_reason": c.finish_reason}
            for i, c in enumerate(choices)], "usage": _usage(prompt_tokens, sum(c.tokens for c in choices))}

    async def _chat_strategy(entry: Entry, req: ChatRequest, meta: dict[str, Any]):
        users = [m.text() for m in req.messages if m.role == "user"]
        if not users or not users[-1].strip():
            raise ApiError(400, "messages: send the input as a user message", "messages")
        if req.n > 1:
            raise ApiError(400, f"n: '{entry.id}' is a strategy with one answer per input; use n = 1", "n")
        pred = (await wait(hub.predict(entry, [users[-1]])))[0]
        refuse_cut([pred], req.truncation, "messages")
        usage = _usage(pred.prompt_tokens, pred.completion_tokens)
        logprobs = _chat_logprobs(_label_logprobs(pred, req.top_logprobs), req.top_logprobs or 0) \
            if req.logprobs else None
        if req.stream:
            def chunk(text, finish):
                delta = {} if text is None else {"content": text}
                return {**meta, "object": "chat.completion.chunk",
                        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
            first = {**chunk(None, None), "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                                       "logprobs": None, "finish_reason": None}]}
            include = (req.stream_options or {}).get("include_usage")
            return sse.response(sse.whole(chunk, pred.output, "stop", usage if include else None, first))
        return {**meta, "object": "chat.completion", "system_fingerprint": None, "choices": [
            {"index": 0, "message": {"role": "assistant", "content": pred.output, "refusal": None},
             "logprobs": logprobs, "finish_reason": "stop"}], "usage": usage,
            **({"tunewise": {"scores": pred.scores}} if pred.scores else {})}

    @app.post("/v1/completions")
    async def completions(request: Request):
        from tunewise.serve.completions import complete

        return await complete(hub, await parse(request, CompletionRequest))

    @app.post("/v1/classify")
    async def classify(request: Request):
        req = await parse(request, ClassifyRequest)
        entry = hub.entry(req.model)
        if entry.predictor is None or not entry.labels:
            raise ApiError(400, f"model '{entry.id}' is not a classification strategy (classify with a strategy "
                           "of a classification run)", "model")
        preds = await wait(hub.predict(entry, req.texts()))
        refuse_cut(preds, req.truncation, "input")
        data = [{"index": i, "label": p.output, "probabilities": p.scores or {p.output: 1.0}}
                for i, p in enumerate(preds)]
        return {"object": "list", "model": entry.id, "data": data,
                "usage": _usage(sum(p.prompt_tokens for p in preds), sum(p.completion_tokens for p in preds))}

    if jobs is not None:
        from tunewise.serve.routes_jobs import jobs_router

        app.include_router(jobs_router(jobs))
    return app
