"""An AutoGen `ChatCompletionClient` over any tunewise causal backend (local HF model, fake, later APIs).

    from autogen_agentchat.agents import AssistantAgent
    from tunewise.agents.client import TunewiseChatClient

    agent = AssistantAgent("helper", model_client=TunewiseChatClient.from_model("smollm2-135m-instruct"))

`create` renders AutoGen's messages with the backend's chat template (system messages merged into one,
other agents' messages as user turns prefixed with their name, tool results as user turns, consecutive
turns of one role merged, oldest turns dropped when the context window is full, then the end of the longest
message cut), generates, and returns a `CreateResult` with `RequestUsage` counted by the backend's tokenizer.
Tools follow the JSON convention of `toolcall.py`: when the model answers with `{"tool": ..., "arguments":
{...}}` naming a given tool, the result holds `FunctionCall`s; otherwise plain text. `create_stream` yields
the finished text in word chunks (backends have no token streaming yet) and then the `CreateResult`.

Concurrent calls from agents running in one event loop are batched into one `backend.generate` (greedy
results may differ in the last digits from unbatched ones because of padding). Every call is also
recorded in an optional shared `Ledger`, which is how teams account for calls no message carries
(a selector choosing the next speaker).
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import uuid
import weakref
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from autogen_core import CancellationToken, FunctionCall
from autogen_core.models import (
    AssistantMessage,
    ChatCompletionClient,
    CreateResult,
    FunctionExecutionResultMessage,
    LLMMessage,
    ModelFamily,
    ModelInfo,
    RequestUsage,
    SystemMessage,
    UserMessage,
)
from autogen_core.tools import Tool, ToolSchema

from tunewise.agents.toolcall import ToolSpec, parse_tool_calls, tools_prompt
from tunewise.backends.context import Limit, fit_messages

_LOCKS: weakref.WeakKeyDictionary[Any, threading.Lock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def _backend_lock(backend) -> threading.Lock:
    """One model, one forward pass at a time, whichever thread or event loop asks."""
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(backend, threading.Lock())


@dataclass
class Ledger:
    """Every model call of a team, in order: (agent, prompt tokens, completion tokens, output text)."""

    calls: list[tuple[str, int, int, str]] = field(default_factory=list)

    def add(self, agent: str, usage: RequestUsage, text: str) -> None:
        self.calls.append((agent, usage.prompt_tokens, usage.completion_tokens, text))


class GenerationBatcher:
    """Collects the generate calls made while other agents are also waiting, and runs them as one batch."""

    def __init__(self, backend, max_batch: int = 8):
        self.backend, self.max_batch = backend, max_batch
        self._pending: list[tuple[tuple, str, asyncio.Future]] = []
        self._worker: asyncio.Task | None = None

    async def generate(self, prompt: str, max_new_tokens: int, stop: tuple[str, ...], temperature: float
                       ) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append(((max_new_tokens, stop, temperature), prompt, future))
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._pending:
            for _ in range(4):  # let every agent that is about to call the model queue its prompt first
                await asyncio.sleep(0)
            key = self._pending[0][0]
            group = [p for p in self._pending if p[0] == key][:self.max_batch]
            self._pending = [p for p in self._pending if all(p is not g for g in group)]
            try:
                outs = await asyncio.to_thread(self._run, key, [p[1] for p in group])
            except BaseException as err:  # hand the failure to every waiting caller
                for _, _, future in group:
                    if not future.done():
                        future.set_exception(err)
                continue
            for (_, _, future), out in zip(group, outs, strict=True):
                if not future.done():
                    future.set_result(out)

    def _run(self, key: tuple, prompts: list[str]) -> list[tuple[str, int]]:
        max_new_tokens, stop, temperature = key
        with _backend_lock(self.backend):
            if temperature > 0:
                return [s[0] for s in self.backend.sample(prompts, n=1, temperature=temperature,
                                                          max_new_tokens=max_new_tokens, stop=stop,
                                                          batch_size=len(prompts))]
            return self.backend.generate(prompts, max_new_tokens=max_new_tokens, stop=stop,
                                         batch_size=len(prompts))


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "\n".join(c if isinstance(c, str) else "[image]" for c in content)


def _calls_text(calls: Sequence[FunctionCall]) -> str:
    def args(raw: str) -> Any:
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return "\n".join(json.dumps({"tool": c.name, "arguments": args(c.arguments)}) for c in calls)


def to_chat(messages: Sequence[LLMMessage], extra_system: str = "") -> list[dict[str, str]]:
    """AutoGen messages as tunewise chat messages (one system message, roles alternating)."""
    system: list[str] = []
    chat: list[dict[str, str]] = []
    for m in messages:
        if isinstance(m, SystemMessage):
            system.append(m.content)
            continue
        if isinstance(m, UserMessage):
            role, text = "user", _text(m.content)
            if m.source and m.source != "user":  # in a group chat, say who spoke
                text = f"{m.source}: {text}"
        elif isinstance(m, AssistantMessage):
            role = "assistant"
            text = m.content if isinstance(m.content, str) else _calls_text(m.content)
        elif isinstance(m, FunctionExecutionResultMessage):
            role = "user"
            text = "\n".join(f"Result of {r.name or 'the tool'}: {r.content}" for r in m.content)
        else:
            continue
        if chat and chat[-1]["role"] == role:  # many chat templates require alternating roles
            chat[-1]["content"] += "\n\n" + text
        else:
            chat.append({"role": role, "content": text})
    if extra_system:
        system.append(extra_system)
    return ([{"role": "system", "content": "\n\n".join(system)}] if system else []) + chat


def tool_specs(tools: Sequence[Tool | ToolSchema], tool_choice: Any = "auto") -> list[ToolSpec]:
    if tool_choice == "none":
        return []
    specs = []
    for t in tools:
        schema = t.schema if hasattr(t, "schema") else t
        specs.append(ToolSpec(schema["name"], schema.get("description", ""),
                              dict(schema.get("parameters") or {"type": "object", "properties": {}})))
    if not isinstance(tool_choice, str):  # one Tool forced
        specs = [s for s in specs if s.name == tool_choice.name]
    return specs


class TunewiseChatClient(ChatCompletionClient):
    """AutoGen model client over a tunewise causal backend; see the module docstring."""

    def __init__(self, backend, *, name: str = "assistant", max_new_tokens: int = 256, temperature: float = 0.0,
                 stop: Sequence[str] = (), context_window: int | None = None, ledger: Ledger | None = None,
                 batcher: GenerationBatcher | None = None, postprocess: Callable[[str], str] | None = None):
        self.backend, self.name, self.postprocess = backend, name, postprocess
        self.max_new_tokens, self.temperature, self.stop = max_new_tokens, temperature, tuple(stop)
        self.context_window = context_window or _context_window(backend)
        self.ledger = ledger
        self._batcher = batcher
        self._batcher_loop: asyncio.AbstractEventLoop | None = None
        self._total = RequestUsage(0, 0)
        self._actual = RequestUsage(0, 0)

    @classmethod
    def from_model(cls, model: str, device: str = "auto", **kwargs: Any) -> TunewiseChatClient:
        """A client over a model name tunewise understands (embedded name, hub name, path or 'fake')."""
        from tunewise.backends import load_backend

        return cls(load_backend(model, "causal", device), **kwargs)

    # --- prompt -------------------------------------------------------------------------------------
    def _prompt(self, messages: Sequence[LLMMessage], specs: list[ToolSpec], json_output: Any,
                max_new_tokens: int) -> str:
        extra = [tools_prompt(specs)] if specs else []
        if json_output:
            schema = json_output.model_json_schema() if hasattr(json_output, "model_json_schema") else None
            extra.append("Reply with a single JSON object" + (f" matching this schema: {json.dumps(schema)}"
                                                              if schema else "") + ".")
        chat = to_chat(messages, "\n\n".join(extra))
        limit = Limit(self.context_window - max_new_tokens, "truncate", f"the context of {self.context_window}")
        return fit_messages(self.backend, chat, lambda c: self.backend.render(c, add_generation_prompt=True),
                            limit)[0]

    def _batcher_here(self) -> GenerationBatcher:
        loop = asyncio.get_running_loop()
        if self._batcher is not None and (self._batcher_loop in (None, loop)):
            self._batcher_loop = loop
            return self._batcher
        self._batcher, self._batcher_loop = GenerationBatcher(self.backend), loop
        return self._batcher

    # --- the ChatCompletionClient interface ---------------------------------------------------------
    async def create(self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = [],
                     tool_choice: Tool | Literal["auto", "required", "none"] = "auto",
                     json_output: bool | type | None = None, extra_create_args: Mapping[str, Any] = {},
                     cancellation_token: CancellationToken | None = None) -> CreateResult:
        specs = tool_specs(tools, tool_choice)
        max_new = int(extra_create_args.get("max_tokens", extra_create_args.get("max_new_tokens",
                                                                                 self.max_new_tokens)))
        temperature = float(extra_create_args.get("temperature", self.temperature))
        stop = self.stop + tuple(extra_create_args.get("stop", ()) or ())
        prompt = self._prompt(messages, specs, json_output, max_new)
        text, n = await self._batcher_here().generate(prompt, max_new, stop, temperature)
        usage = RequestUsage(prompt_tokens=self.backend.count_tokens(prompt), completion_tokens=n)
        if self.ledger is not None:
            self.ledger.add(self.name, usage, text)
        if self.postprocess is not None:
            text = self.postprocess(text)
        calls = parse_tool_calls(text, specs) if specs else []
        content: str | list[FunctionCall] = [
            FunctionCall(id=f"call_{uuid.uuid4().hex[:12]}", name=name, arguments=json.dumps(args))
            for name, args in calls] or text
        finish = "function_calls" if calls else ("length" if n >= max_new else "stop")
        for total in (self._total, self._actual):  # no cache: every token is an actual token
            total.prompt_tokens += usage.prompt_tokens
            total.completion_tokens += usage.completion_tokens
        return CreateResult(finish_reason=finish, content=content, usage=usage, cached=False)

    async def create_stream(self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = [],
                            tool_choice: Tool | Literal["auto", "required", "none"] = "auto",
                            json_output: bool | type | None = None, extra_create_args: Mapping[str, Any] = {},
                            cancellation_token: CancellationToken | None = None
                            ) -> AsyncGenerator[str | CreateResult, None]:
        result = await self.create(messages, tools=tools, tool_choice=tool_choice, json_output=json_output,
                                   extra_create_args=extra_create_args, cancellation_token=cancellation_token)
        if isinstance(result.content, str):
            for chunk in re.findall(r"\s*\S+", result.content):
                yield chunk
        yield result

    async def close(self) -> None:
        """Nothing to free: the backend belongs to tunewise and may serve other clients."""

    def actual_usage(self) -> RequestUsage:
        return RequestUsage(self._actual.prompt_tokens, self._actual.completion_tokens)

    def total_usage(self) -> RequestUsage:
        return RequestUsage(self._total.prompt_tokens, self._total.completion_tokens)

    def count_tokens(self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = []) -> int:
        return self.backend.count_tokens(self._prompt(messages, tool_specs(tools), None, 0))

    def remaining_tokens(self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = []) -> int:
        return self.context_window - self.count_tokens(messages, tools=tools)

    @property
    def model_info(self) -> ModelInfo:
        return ModelInfo(vision=False, function_calling=True, json_output=False, structured_output=False,
                         family=ModelFamily.UNKNOWN, multiple_system_messages=True)

    @property
    def capabilities(self) -> Any:  # deprecated in AutoGen, still abstract there
        return {"vision": False, "function_calling": True, "json_output": False}


def _context_window(backend) -> int:
    return backend.context_window or 8192  # APIs and fakes do not say: a common window of chat models
