"""Settings of the OpenAI-compatible backend, from the model name and environment variables.

`openai:MODEL` uses the defaults below; each setting can come from an environment variable
(`TUNEWISE_OPENAI_BASE_URL`, `TUNEWISE_OPENAI_API_KEY_ENV`, ...: the upper-cased name after the prefix)
or from a query string on the name, which wins and is saved with the run's config:
`openai:my-model?base_url=http://127.0.0.1:8000/v1&concurrency=8`. The key itself is never a setting:
only the NAME of the environment variable that holds it.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl

from pydantic import Field, ValidationError, field_validator

from tunewise.errors import UserError
from tunewise.foundation import Strict, format_validation_error

PREFIX = "openai:"
ENV_PREFIX = "TUNEWISE_OPENAI_"


class ApiSettings(Strict):
    base_url: str | None = Field(None, description="Server address ending in /v1 (OpenAI when empty; vLLM, "
                                 "llama.cpp server, Ollama, Azure or `tunewise serve` otherwise).")
    api_key_env: str = Field("OPENAI_API_KEY", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                             description="Name of the environment variable holding the API key (the key "
                             "itself is never stored).")
    concurrency: int = Field(8, ge=1, le=256, description="Requests in flight at once (thread pool).")
    max_retries: int = Field(5, ge=0, le=20, description="Retries with exponential backoff on 408/409/429/5xx "
                             "and timeouts (the openai SDK's retry loop; Retry-After headers honoured).")
    timeout: float = Field(60.0, gt=0, le=3600, description="Seconds before one request times out.")
    cache_dir: str | None = Field(None, description="Folder of the persistent response cache (default: "
                                  "TUNEWISE_CACHE/api); 'off' disables it.")
    mode: Literal["chat", "completion"] = Field(
        "chat", description="chat: /v1/chat/completions with messages; completion: /v1/completions with "
        "plain-text prompts (base models; labels scored with echo + logprobs).")
    logprobs: bool | Literal["auto"] = Field(
        "auto", description="Whether the server returns log-probabilities (label scoring); auto asks it once "
        "with a one-token request (cached).")
    @field_validator("logprobs", mode="before")
    @classmethod
    def _logprobs(cls, value):
        text = str(value).strip().lower()
        if text in ("auto", "true", "false", "1", "0", "yes", "no"):
            return "auto" if text == "auto" else text in ("true", "1", "yes")
        raise ValueError("give auto, true or false")

    context_window: int | None = Field(None, gt=0, description="The model's context in tokens (prompt + answer), "
                                       "when you know it: long inputs are then cut (or refused) by task.long_inputs "
                                       "before sending; without it the server's own error is reported.")
    top_logprobs: int = Field(20, ge=1, le=100, description="Alternatives per position requested for chat "
                              "label scoring (OpenAI allows at most 20).")


def parse_model_name(name: str) -> tuple[str, ApiSettings]:
    """'openai:MODEL?key=value&...' -> (MODEL, settings from env vars overridden by the query string)."""
    rest = name.removeprefix(PREFIX)
    model, _, query = rest.partition("?")
    if not model:
        raise UserError(f"model '{name}': give the remote model after 'openai:' (e.g. openai:gpt-4o-mini)")
    values: dict[str, str] = {}
    for field in ApiSettings.model_fields:
        env = os.environ.get(ENV_PREFIX + field.upper())
        if env:
            values[field] = env
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == "api_key":
            raise UserError(f"model '{PREFIX}{model}': never put a key in the model name; export it and name "
                            "the variable with api_key_env")
        if key not in ApiSettings.model_fields:
            close = difflib.get_close_matches(key, list(ApiSettings.model_fields), n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"known: {', '.join(ApiSettings.model_fields)}"
            raise UserError(f"model '{PREFIX}{model}': unknown setting '{key}' ({hint})")
        values[key] = value
    try:
        settings = ApiSettings.model_validate(values)
    except ValidationError as err:
        raise UserError(format_validation_error(err, f"model '{PREFIX}{model}' settings")) from None
    return model, settings


def cache_folder(settings: ApiSettings) -> Path | None:
    if settings.cache_dir == "off":
        return None
    if settings.cache_dir:
        return Path(settings.cache_dir).expanduser()
    from tunewise.backends.embedded import cache_root

    return cache_root() / "api"


def read_key(settings: ApiSettings, model: str) -> str:
    """The key from the named environment variable. Local servers usually need none: a placeholder then."""
    key = os.environ.get(settings.api_key_env, "")
    if key:
        return key
    if settings.base_url is None:
        raise UserError(f"model '{PREFIX}{model}' needs an API key: export {settings.api_key_env}=... (or name "
                        f"another variable with TUNEWISE_OPENAI_API_KEY_ENV)")
    return "EMPTY"
