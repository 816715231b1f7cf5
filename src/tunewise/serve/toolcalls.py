"""Reading Hermes tool calls (`<tool_call>{"name": ..., "arguments": ...}</tool_call>`) out of a reply, whole or
token by token, and streaming them in OpenAI's chunk shape.

One incremental parser serves both paths, so a streamed reply always adds up to the non-streamed one: text
outside the tags is content; each call yields a header delta (`index`, `id`, `type`, `function.name`, empty
`arguments`) as soon as its name is complete, then `function.arguments` fragments as they are generated (the
outer object's closing brace held back until it is known not to be part of the arguments). Text that could be
the start of `<tool_call>` is held back too, and trailing whitespace waits for what follows: it is dropped
before a call and at the end of a reply with calls (noise between calls), so content does not depend on how
the text was chunked. Arguments are not re-serialised: the client gets the exact JSON the grammar admitted,
which parses and follows the function's schema.
"""

from __future__ import annotations

import json
import queue
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from tunewise.serve.tools import CLOSE, OPEN

_HEADER = re.compile(r'\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"arguments"\s*:\s*')


def _partial_suffix(text: str, marker: str) -> int:
    """Length of the longest end of `text` that is a proper beginning of `marker`."""
    for n in range(min(len(marker) - 1, len(text)), 0, -1):
        if marker.startswith(text[-n:]):
            return n
    return 0


class ToolCallParser:
    """Feed reply text in pieces; each `feed` returns OpenAI delta objects ({"content": ...} or {"tool_calls":
    [...]}). `calls` holds the finished calls, `content` the text outside them."""

    def __init__(self):
        self.text, self.pos, self.mode = "", 0, "content"
        self.content, self.calls = "", []
        self._pending_ws = ""  # whitespace of content not yet sent: dropped if only calls follow
        self._args_start = 0

    def feed(self, piece: str) -> list[dict[str, Any]]:
        self.text += piece
        deltas: list[dict[str, Any]] = []
        while True:
            step = getattr(self, f"_{self.mode}")()
            if step is None:
                return deltas
            deltas.extend(step)

    def _say(self, text: str) -> list[dict[str, Any]]:
        body = text.rstrip()
        if not body:
            self._pending_ws += text
            return []
        said, self._pending_ws = self._pending_ws + body, text[len(body):]  # trailing whitespace waits
        self.content += said
        return [{"content": said}]

    def _content(self) -> list[dict[str, Any]] | None:
        at = self.text.find(OPEN, self.pos)
        if at >= 0:
            out = self._say(self.text[self.pos:at])
            self.pos, self.mode = at + len(OPEN), "header"
            return out
        end = len(self.text) - _partial_suffix(self.text[self.pos:], OPEN)
        out = self._say(self.text[self.pos:end])
        self.pos = end
        return out or None

    def _header(self) -> list[dict[str, Any]] | None:
        m = _HEADER.match(self.text, self.pos)
        if m is None or m.end() == len(self.text):  # the pattern may still grow (more whitespace)
            return None
        name = json.loads(f'"{m.group(1)}"')
        call = {"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function", "name": name, "arguments": ""}
        self.calls.append(call)
        self.pos = self._args_start = m.end()
        self.mode, self._pending_ws = "arguments", ""
        return [{"tool_calls": [{"index": len(self.calls) - 1, "id": call["id"], "type": "function",
                                 "function": {"name": name, "arguments": ""}}]}]

    def _arguments(self) -> list[dict[str, Any]] | None:
        call = self.calls[-1]
        close = self.text.find(CLOSE, self.pos)
        if close >= 0:
            body = self.text[self._args_start:close].rstrip()
            end = self._args_start + len(body) - (1 if body.endswith("}") else 0)
            out = self._fragment(call, self.text[self.pos:end])
            call["complete"] = True
            self.pos, self.mode = close + len(CLOSE), "content"
            return out
        # hold back a possible "}" + whitespace + start of the closing tag
        tail = self.text[self.pos:]
        brace = tail.rfind("}")
        rest = tail[brace + 1:].lstrip() if brace >= 0 else None
        end = len(self.text) if rest is None or not CLOSE.startswith(rest) else self.pos + brace
        out = self._fragment(call, self.text[self.pos:end])
        self.pos = max(self.pos, end)
        return out or None

    def _fragment(self, call: dict[str, Any], text: str) -> list[dict[str, Any]]:
        if not text:
            return []
        call["arguments"] += text
        return [{"tool_calls": [{"index": len(self.calls) - 1, "function": {"arguments": text}}]}]

    def finish(self) -> tuple[list[dict[str, Any]], bool]:
        """(deltas still held back, whether a call was left unfinished). Held text is content unless a call is
        open; an unfinished call (the token limit hit it) is dropped from `calls`."""
        deltas: list[dict[str, Any]] = []
        if self.mode == "content":
            deltas = self._say(self.text[self.pos:])
            self.pos = len(self.text)
            if self._pending_ws and not self.calls:  # a reply of whitespace only is still the reply
                self.content += self._pending_ws
                deltas.append({"content": self._pending_ws})
            self._pending_ws = ""
        cut = self.mode != "content"
        if cut and self.calls and not self.calls[-1].get("complete"):
            self.calls.pop()
        return deltas, cut

    def openai_calls(self) -> list[dict[str, Any]]:
        return [{"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
                for c in self.calls]


def message(text: str, finish: str) -> tuple[dict[str, Any], str]:
    """A whole reply as an OpenAI assistant message with `tool_calls`, and its finish_reason."""
    parser = ToolCallParser()
    parser.feed(text)
    _, cut = parser.finish()
    calls = parser.openai_calls()
    msg: dict[str, Any] = {"role": "assistant", "content": parser.content or None, "refusal": None}
    if calls:
        msg["tool_calls"] = calls
    if cut:
        return msg, "length"
    return msg, ("tool_calls" if calls else finish)


def stream(streamer, future, chunk: Callable[[dict[str, Any], str | None], dict[str, Any]], max_tokens: int,
           usage: Callable[[int], dict] | None) -> Iterator[str]:
    """Server-sent events of a reply with tool calls, relayed from a transformers TextIteratorStreamer filled on
    the model thread: role chunk, content/tool-call deltas, the finish reason, usage, [DONE]."""
    def data(obj: Any) -> str:
        return f"data: {json.dumps(obj)}\n\n"

    parser = ToolCallParser()
    yield data(chunk({"role": "assistant", "content": ""}, None))
    while True:
        try:
            piece = next(streamer)
        except StopIteration:
            break
        except queue.Empty:  # the model is busy with other requests, or failed
            if future.done() and future.exception() is not None:
                break
            continue
        for delta in parser.feed(piece):
            yield data(chunk(delta, None))
    try:
        n = future.result()
    except Exception as err:  # headers are sent: report the failure in the stream itself
        from tunewise.serve.errors import error_body

        yield data(error_body(500, f"generation failed: {type(err).__name__}"))
        yield "data: [DONE]\n\n"
        return
    rest, cut = parser.finish()
    for delta in rest:
        yield data(chunk(delta, None))
    finish = "length" if cut else "tool_calls" if parser.calls else "length" if n >= max_tokens else "stop"
    yield data(chunk({}, finish))
    if usage is not None:
        yield data({**chunk({}, None), "choices": [], "usage": usage(n)})
    yield "data: [DONE]\n\n"
