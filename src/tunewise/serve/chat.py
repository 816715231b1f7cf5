"""/v1/chat/completions. A strategy id as `model` answers with that strategy's prediction for the last user
message (its label probabilities as log-probabilities); the base model and `ft:` models are raw language
models: chat template, sampling, streaming, token log-probabilities, and `tools` / `response_format`
generated under a grammar (`tools.py` plans the reply, `toolprompt.py` renders the prompt, `toolcalls.py`
reads the calls back). Every failure is an `ApiError` (an OpenAI-shaped 4xx).
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Callable
from typing import Any

from tunewise.backends.context import Limit, fit_messages
from tunewise.serve import lm, sse, toolcalls, toolprompt, tools
from tunewise.serve.errors import ApiError, context_length_exceeded, refuse_cut
from tunewise.serve.hub import Entry, ModelHub
from tunewise.serve.schemas import ChatRequest


async def wait(future) -> Any:
    return await asyncio.wrap_future(future)


def usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _fits(entry: Entry, prompt_tokens: int, max_tokens: int) -> None:
    limit = entry.backend.context_window
    if limit and prompt_tokens + max_tokens > limit:
        raise context_length_exceeded(prompt_tokens + max_tokens, limit, "messages",
                                      f"the prompt has {prompt_tokens} and max_tokens asks for {max_tokens} more")


def _fit_chat(hub: ModelHub, entry: Entry, messages: list[dict[str, Any]], render: Callable[[list], str],
              prompt: str, req: ChatRequest) -> str:
    """With truncation: auto, a conversation over the context loses its oldest turns, then the end of its
    longest message (backends/context.py), so that the reply fits."""
    limit = entry.backend.context_window
    if req.truncation != "auto" or not limit or hub.count(prompt) + req.limit() <= limit:
        return prompt
    return fit_messages(hub.counter, messages, render,
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


def _chunk(meta: dict[str, Any], delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
    return {**meta, "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}


def _text_chunk(meta: dict[str, Any]) -> sse.Chunk:
    """(text delta, finish reason) -> chunk, for streams of plain text."""
    return lambda text, finish: _chunk(meta, {} if text is None else {"content": text}, finish)


def _first(meta: dict[str, Any]) -> dict[str, Any]:
    return _chunk(meta, {"role": "assistant", "content": ""}, None)


async def chat(hub: ModelHub, req: ChatRequest) -> Any:
    """The response to one chat request: a chat.completion object, or an SSE stream of chunks."""
    entry = hub.entry(req.model)
    if req.top_logprobs and not req.logprobs:
        raise ApiError(400, "top_logprobs needs logprobs: true", "top_logprobs")
    meta = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "created": int(time.time()), "model": entry.id}
    if entry.predictor is not None:
        tools.refuse_for_strategy(entry.id, req, [e.id for e in hub.entries.values() if e.predictor is None])
        return await _strategy(hub, entry, req, meta)
    return await _raw(hub, entry, req, meta)


async def _raw(hub: ModelHub, entry: Entry, req: ChatRequest, meta: dict[str, Any]) -> Any:
    plan = tools.plan(req)
    toolprompt.check_history(req.messages)
    try:
        converted, render = toolprompt.renderer(entry.backend, req.messages, plan)
        prompt = render(converted)
    except Exception as err:  # the chat template rejects this conversation
        raise ApiError(400, f"messages: {str(err).splitlines()[0]}", "messages") from None
    prompt = _fit_chat(hub, entry, converted, render, prompt, req)
    prompt_tokens = hub.count(prompt)
    _fits(entry, prompt_tokens, req.limit())
    if plan.constraint is not None:
        await _compiles(hub, entry, plan)
    params = lm.Params(req.limit(), 1.0 if req.temperature is None else req.temperature, req.top_p or 1.0,
                       tuple(req.stop or ()), req.n, (req.top_logprobs or 0) if req.logprobs else None, req.seed,
                       plan.constraint)
    if req.stream:
        return _stream(hub, entry, req, meta, prompt, prompt_tokens, params, plan)
    choices = await wait(hub.generate(entry, prompt, params))
    replies = [toolcalls.message(c.text, c.finish_reason) if plan.calls else
               ({"role": "assistant", "content": c.text, "refusal": None}, c.finish_reason) for c in choices]
    return {**meta, "object": "chat.completion", "system_fingerprint": None, "choices": [
        {"index": i, "message": message, "logprobs": _chat_logprobs(c.logprobs, params.logprobs or 0),
         "finish_reason": finish} for i, (c, (message, finish)) in enumerate(zip(choices, replies, strict=True))],
        "usage": usage(prompt_tokens, sum(c.tokens for c in choices))}


def _stream(hub: ModelHub, entry: Entry, req: ChatRequest, meta: dict[str, Any], prompt: str, prompt_tokens: int,
            params: lm.Params, plan: tools.OutputPlan) -> Any:
    """Tokens as they are generated; with tools, content deltas then tool-call deltas (`toolcalls.stream`)."""
    if req.n > 1 or req.logprobs:
        raise ApiError(400, "stream: true works with n = 1 and no logprobs here", "stream")
    from transformers import TextIteratorStreamer

    streamer = TextIteratorStreamer(entry.backend.tokenizer, skip_prompt=True, skip_special_tokens=True,
                                    timeout=0.05)
    future = hub.stream(entry, prompt, params, streamer)
    counts = (lambda n: usage(prompt_tokens, n)) if (req.stream_options or {}).get("include_usage") else None
    if plan.calls:
        return sse.response(toolcalls.stream(streamer, future, lambda delta, finish: _chunk(meta, delta, finish),
                                             params.max_tokens, counts))
    return sse.response(sse.tokens(streamer, future, params.stop, params.max_tokens, _text_chunk(meta), counts,
                                   _first(meta)))


async def _compiles(hub: ModelHub, entry: Entry, plan: tools.OutputPlan) -> None:
    """Build the reply's grammar now (on the model thread), so a schema the grammar library refuses is a 400
    naming it."""
    refused = await wait(hub.worker.call(lambda: tools.refused_schema(entry.backend, plan)))
    if refused is not None:
        param, reason = refused
        code = "invalid_function_parameters" if param.startswith("tools") else "invalid_json_schema"
        raise ApiError(400, f"Invalid schema in '{param}': output cannot be constrained to it ({reason}).",
                       param, code)


async def _strategy(hub: ModelHub, entry: Entry, req: ChatRequest, meta: dict[str, Any]) -> Any:
    users = [m.text() for m in req.messages if m.role == "user"]
    if not users or not users[-1].strip():
        raise ApiError(400, "messages: send the input as a user message", "messages")
    if req.n > 1:
        raise ApiError(400, f"n: '{entry.id}' is a strategy with one answer per input; use n = 1", "n")
    pred = (await wait(hub.predict(entry, [users[-1]])))[0]
    refuse_cut([pred], req.truncation, "messages")
    counts = usage(pred.prompt_tokens, pred.completion_tokens)
    if req.stream:
        include = (req.stream_options or {}).get("include_usage")
        return sse.response(sse.whole(_text_chunk(meta), pred.output, "stop", counts if include else None,
                                      _first(meta)))
    logprobs = _chat_logprobs(_label_logprobs(pred, req.top_logprobs), req.top_logprobs or 0) \
        if req.logprobs else None
    return {**meta, "object": "chat.completion", "system_fingerprint": None, "choices": [
        {"index": 0, "message": {"role": "assistant", "content": pred.output, "refusal": None},
         "logprobs": logprobs, "finish_reason": "stop"}], "usage": counts,
        **({"tunewise": {"scores": pred.scores}} if pred.scores else {})}
