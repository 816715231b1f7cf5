"""OpenAI-shaped errors: `{"error": {"message", "type", "param", "code"}}` with the matching HTTP status,
so that every OpenAI client raises its usual exception (BadRequestError, NotFoundError, ...). `ApiError` itself
lives in `tunewise.endpoint` (the job service below the server raises it too)."""

from __future__ import annotations

import json
from typing import Any

from tunewise.endpoint import TYPES, ApiError, error_body

__all__ = ["TYPES", "ApiError", "context_length_exceeded", "error_body", "json_object", "not_found", "refuse_cut"]


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
