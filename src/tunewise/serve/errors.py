"""OpenAI-shaped errors: `{"error": {"message", "type", "param", "code"}}` with the matching HTTP status,
so that every OpenAI client raises its usual exception (BadRequestError, NotFoundError, ...)."""

from __future__ import annotations

import json
from typing import Any

TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 404: "invalid_request_error",
         405: "invalid_request_error", 409: "invalid_request_error", 413: "invalid_request_error",
         422: "invalid_request_error", 429: "rate_limit_error", 500: "server_error", 503: "server_error"}


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.message, self.param, self.code)


def error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": TYPES.get(status, "invalid_request_error"), "param": param,
                      "code": code}}


def not_found(model: str, known: list[str]) -> ApiError:
    shown = ", ".join(known[:20]) + (", ..." if len(known) > 20 else "")
    return ApiError(404, f"The model '{model}' does not exist on this server (models: {shown}).", "model",
                    "model_not_found")


def context_length_exceeded(tokens: int, limit: int, param: str, why: str = "") -> ApiError:
    """OpenAI's 400 for an input longer than the model's context (code context_length_exceeded)."""
    return ApiError(400, f"This model's maximum context length is {limit} tokens{f' ({why})' if why else ''}; "
                    f"the input needs {tokens}. Shorten it, or send \"truncation\": \"auto\" to cut it to fit.",
                    param, "context_length_exceeded")


def refuse_cut(preds, truncation: str, param: str) -> None:
    """A strategy cut an input to fit (its trace says so: backends/context.py): a 400 unless the client
    asked for truncation."""
    if truncation == "auto":
        return
    for i, p in enumerate(preds):
        cut = next((s for s in p.trace or () if isinstance(s, dict) and s.get("step") == "truncated"), None)
        if cut:
            where = f"{param}[{i}]" if len(preds) > 1 else param
            raise context_length_exceeded(cut["prompt_tokens"], cut["limit"], where, cut.get("why", ""))


async def json_object(request) -> dict[str, Any]:
    """The request body as a JSON object, whatever the Content-Type; otherwise an OpenAI-shaped 400."""
    try:
        data = json.loads(await request.body())
    except ValueError:
        raise ApiError(400, "We could not parse the JSON body of your request: it is not valid JSON.",
                       code="invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, "The body of your request must be a JSON object.", code="invalid_value")
    return data
