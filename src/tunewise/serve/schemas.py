"""Request bodies of the OpenAI-compatible endpoints. Unknown fields are accepted and ignored, as OpenAI
clients send many (user, metadata, stream_options, ...); known fields are type- and range-checked so that a
bad value is a 400 naming the parameter, never a crash."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")


class ChatMessage(Lenient):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None  # assistant: the calls it made (checked in tools.py)
    tool_call_id: str | None = None  # tool: the call this message answers

    def text(self) -> str:
        if isinstance(self.content, list):  # content parts: keep the text ones
            return "".join(str(p.get("text", "")) for p in self.content if p.get("type", "text") == "text")
        return self.content or ""


def _stops(value: Any) -> Any:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and len(value) > 4:
        raise ValueError("at most 4 stop sequences")
    return value


class Truncation(Lenient):
    truncation: Literal["auto", "disabled"] = Field(
        "disabled", description="An input longer than the model's context: 'disabled' answers 400 "
        "context_length_exceeded (as OpenAI and vLLM do); 'auto' cuts it to fit (as OpenAI's Responses API).")


class Sampling(Truncation):
    model: str = Field(min_length=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int = Field(1, ge=1, le=16)
    stop: list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None

    _stop = field_validator("stop", mode="before")(_stops)


class ChatRequest(Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1, le=32768)
    max_completion_tokens: int | None = Field(None, ge=1, le=32768)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    tools: list[Any] | None = None  # checked in tools.py, whose messages name the exact parameter
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool = True
    response_format: dict[str, Any] | None = None

    def limit(self) -> int:
        return self.max_completion_tokens or self.max_tokens or 256


class CompletionRequest(Sampling):
    prompt: str | list[str] = Field(min_length=1)
    max_tokens: int = Field(16, ge=0, le=32768)
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=20)

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else self.prompt


class ClassifyRequest(Truncation):
    model: str = Field(min_length=1)
    input: str | list[str] = Field(min_length=1)

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else self.input
