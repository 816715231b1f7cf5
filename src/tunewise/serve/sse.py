"""Server-sent events for `stream: true`: OpenAI's chunk objects, one `data:` line each, then `[DONE]`.

Raw models stream tokens as they are generated (a transformers TextIteratorStreamer filled on the model
thread); text that could be the start of a stop sequence is held back until it is known not to be one.
Strategies answer in one piece, sent as a single chunk.
"""

from __future__ import annotations

import json
import queue
from collections.abc import Callable, Iterator
from typing import Any

from fastapi.responses import StreamingResponse

from tunewise.serve.errors import error_body

Chunk = Callable[[str | None, str | None], dict[str, Any]]  # (text delta, finish reason) -> chunk object


def _data(obj: Any) -> str:
    return f"data: {json.dumps(obj)}\n\n"


def response(events: Iterator[str]) -> StreamingResponse:
    return StreamingResponse(events, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def whole(chunk: Chunk, text: str, finish: str, usage: dict | None, first: dict | None = None) -> Iterator[str]:
    if first is not None:
        yield _data(first)
    yield _data(chunk(text, None))
    yield _data(chunk(None, finish))
    if usage is not None:
        yield _data({**chunk(None, None), "choices": [], "usage": usage})
    yield "data: [DONE]\n\n"


def tokens(streamer, future, stops: tuple[str, ...], max_tokens: int, chunk: Chunk,
           usage: Callable[[int], dict] | None, first: dict | None = None) -> Iterator[str]:
    """Relay the streamer's text as chunks, cut at the first stop sequence."""
    if first is not None:
        yield _data(first)
    hold = max((len(s) for s in stops), default=1) - 1
    text, sent, stopped = "", 0, False
    while True:
        try:
            piece = next(streamer)
        except StopIteration:
            break
        except queue.Empty:  # nothing yet: the model may be busy with other requests, or may have failed
            if future.done() and future.exception() is not None:
                break
            continue
        if stopped:
            continue  # drain what the model still produces
        text += piece
        cut = min([text.find(s) for s in stops if s and s in text], default=-1)
        end = cut if cut >= 0 else len(text) - hold
        if end > sent:
            yield _data(chunk(text[sent:end], None))
            sent = end
        stopped = cut >= 0
    try:
        n = future.result()
    except Exception as err:  # headers are sent: report the failure in the stream itself
        yield _data(error_body(500, f"generation failed: {type(err).__name__}"))
        yield "data: [DONE]\n\n"
        return
    if not stopped and sent < len(text):
        yield _data(chunk(text[sent:], None))
    yield _data(chunk(None, "stop" if stopped or n < max_tokens else "length"))
    if usage is not None:
        yield _data({**chunk(None, None), "choices": [], "usage": usage(n)})
    yield "data: [DONE]\n\n"
