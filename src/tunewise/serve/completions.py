"""/v1/completions: plain-text prompts. On raw models it also scores text: `echo: true` with `logprobs`
returns the log-probability of every prompt token (with character offsets), so a client can score any
continuation, as vLLM and OpenAI's legacy completion models allow; `max_tokens: 0` skips generation."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from tunewise.backends.context import cut_text
from tunewise.serve import lm, sse
from tunewise.serve.errors import ApiError, context_length_exceeded, refuse_cut
from tunewise.serve.schemas import CompletionRequest


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _legacy_logprobs(echoed: dict[str, Any] | None, generated: list[dict[str, Any]] | None, start: int
                     ) -> dict[str, Any]:
    out = {k: list(v) for k, v in (echoed or {"tokens": [], "token_logprobs": [], "top_logprobs": [],
                                               "text_offset": []}).items()}
    offset = start
    for e in generated or []:
        out["tokens"].append(e["token"])
        out["token_logprobs"].append(e["logprob"])
        out["top_logprobs"].append({t: v for t, v in e["top"]} or None)
        out["text_offset"].append(offset)
        offset += len(e["token"])
    return out


async def complete(hub, req: CompletionRequest) -> Any:
    entry = hub.entry(req.model)
    meta = {"id": f"cmpl-{uuid.uuid4().hex[:24]}", "object": "text_completion", "created": int(time.time()),
            "model": entry.id}
    prompts = req.prompts()

    def chunk(text, finish):
        return {**meta, "choices": [{"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}]}

    if req.stream and (len(prompts) > 1 or req.n > 1 or req.echo or req.logprobs is not None):
        raise ApiError(400, "stream: true works with one prompt, n = 1, no echo and no logprobs here", "stream")
    if entry.predictor is not None:
        if req.echo or req.logprobs is not None or req.n > 1:
            raise ApiError(400, f"'{entry.id}' is a strategy: it answers each prompt once, without echo or "
                           "logprobs (use /v1/classify for label probabilities)", "model")
        preds = await asyncio.wrap_future(hub.predict(entry, prompts))
        refuse_cut(preds, req.truncation, "prompt")
        usage = _usage(sum(p.prompt_tokens for p in preds), sum(p.completion_tokens for p in preds))
        if req.stream:
            return sse.response(sse.whole(chunk, preds[0].output, "stop", usage if (req.stream_options or {})
                                          .get("include_usage") else None))
        return {**meta, "choices": [{"index": i, "text": p.output, "logprobs": None, "finish_reason": "stop"}
                                    for i, p in enumerate(preds)], "usage": usage}
    if req.max_tokens == 0 and not req.echo:
        raise ApiError(400, "max_tokens: 0 is allowed only with echo: true (scoring the prompt)", "max_tokens")
    params = lm.Params(req.max_tokens, 1.0 if req.temperature is None else req.temperature, req.top_p or 1.0,
                       tuple(req.stop or ()), req.n, req.logprobs, req.seed)
    limit = entry.backend.context_window
    if limit and req.truncation == "auto":  # keep the END of a long prompt, where it continues (as vLLM does)
        prompts = [cut_text(hub.counter, p, max(limit - req.max_tokens, 1), keep="end") for p in prompts]
    counts = [hub.count(p) for p in prompts]
    if limit and max(counts) + req.max_tokens > limit:
        raise context_length_exceeded(max(counts) + req.max_tokens, limit, "prompt", f"a prompt has {max(counts)} "
                                      f"tokens and max_tokens asks for {req.max_tokens} more")
    if req.stream:
        from transformers import TextIteratorStreamer

        streamer = TextIteratorStreamer(entry.backend.tokenizer, skip_prompt=True, skip_special_tokens=True,
                                        timeout=0.05)
        future = hub.stream(entry, prompts[0], params, streamer)
        usage = (lambda n: _usage(counts[0], n)) if (req.stream_options or {}).get("include_usage") else None
        return sse.response(sse.tokens(streamer, future, params.stop, params.max_tokens, chunk, usage))
    gens = [hub.generate(entry, p, params) for p in prompts] if req.max_tokens else []
    echoes = [hub.echo(entry, p, req.logprobs) for p in prompts] if req.echo and req.logprobs is not None else []
    generated = await asyncio.gather(*map(asyncio.wrap_future, gens))
    echoed = await asyncio.gather(*map(asyncio.wrap_future, echoes))
    choices, completion_tokens = [], 0
    for i, prompt in enumerate(prompts):
        outs = generated[i] if generated else [lm.Choice("", 0, "length")] * req.n
        for j, c in enumerate(outs):
            logprobs = None
            if req.logprobs is not None:
                logprobs = _legacy_logprobs(echoed[i] if echoed else None, c.logprobs, len(prompt) if req.echo else 0)
            choices.append({"index": i * req.n + j, "text": (prompt if req.echo else "") + c.text,
                            "logprobs": logprobs, "finish_reason": c.finish_reason})
            completion_tokens += c.tokens
    return {**meta, "choices": choices, "usage": _usage(sum(counts), completion_tokens)}
