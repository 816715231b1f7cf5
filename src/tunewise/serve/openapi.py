"""The server's OpenAPI document, at /openapi.json (as vLLM serves one): FastAPI's routes plus the request
bodies that the OpenAI endpoints parse themselves (`schemas.py`; they read the body whatever its Content-Type,
so FastAPI cannot see them). Clients, code generators and fuzzers (Schemathesis, in the tests) read it.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from tunewise.serve.schemas import ChatRequest, ClassifyRequest, CompletionRequest

BODIES = {"/v1/chat/completions": ChatRequest, "/v1/completions": CompletionRequest, "/v1/classify": ClassifyRequest}
# Fine-tuning jobs take OpenAI's job object; jobs.py checks each field and names the bad one in a 400.
JOB = {"type": "object", "required": ["model", "training_file"], "properties": {
    "model": {"type": "string"}, "training_file": {"type": "string"}, "validation_file": {"type": "string"},
    "suffix": {"type": "string"}, "seed": {"type": "integer"}, "hyperparameters": {"type": "object"},
    "method": {"type": "object"}, "metadata": {"type": "object"}}}


def openapi(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `app` (built once, then cached on the app)."""
    if app.openapi_schema:
        return app.openapi_schema
    doc = get_openapi(title=app.title, version=app.version, routes=app.routes)
    components = doc.setdefault("components", {}).setdefault("schemas", {})
    bodies: dict[str, dict[str, Any]] = {}
    for path, model in BODIES.items():
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(schema.pop("$defs", {}))
        components[model.__name__] = schema
        bodies[path] = {"$ref": f"#/components/schemas/{model.__name__}"}
    bodies["/v1/fine_tuning/jobs"] = JOB
    for path, schema in bodies.items():
        operation = doc["paths"].get(path, {}).get("post")
        if operation is not None:
            operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
    app.openapi_schema = doc
    return doc
