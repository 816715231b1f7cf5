"""`output_schema`: answers of generation tasks produced under a JSON schema, so they always parse.

Extraction tasks lose answers when a model wraps its JSON in prose or code fences, or breaks it. With
`output_schema`, a local model decodes under the schema (constrained decoding through xgrammar, as `tunewise
serve` does for response_format) and an `openai:` model gets it as `response_format: json_schema` (strict).
The system prompt also shows the schema, so the model knows what is asked. `answer_field` names the property
that is scored (e.g. "answer"); without it the whole JSON text is the answer. An answer that still does not
parse (the token limit cut it) scores as empty and is counted as an extraction failure in the results.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from typing import Any

from pydantic import Field, model_validator

from tunewise.backends.constrained import Constraint
from tunewise.errors import UserError
from tunewise.strategies.base import StrategyConfig


class StructuredOutputConfig(StrategyConfig):
    """Options of prompting strategies that can generate under a JSON schema."""

    output_schema: dict[str, Any] | None = Field(
        None, description="Generation tasks: a JSON schema every answer must follow (local models decode under "
        "it with xgrammar; openai: models get it as response_format json_schema), so answers always parse.")
    answer_field: str | None = Field(
        None, description="With output_schema: the property of the JSON answer that is scored (e.g. 'answer'); "
        "empty: the whole JSON text.")

    @model_validator(mode="after")
    def _schema(self) -> StructuredOutputConfig:
        if self.output_schema is None:
            if self.answer_field is not None:
                raise ValueError("answer_field needs output_schema")
            return self
        try:
            import jsonschema
        except ImportError:
            raise ValueError("output_schema needs jsonschema and xgrammar: pip install 'tunewise[serve]'") from None
        try:
            jsonschema.validators.validator_for(self.output_schema).check_schema(self.output_schema)
        except jsonschema.SchemaError as err:
            raise ValueError(f"output_schema is not a valid JSON schema: {err.message}") from None
        props = self.output_schema.get("properties") or {}
        if self.answer_field is not None and self.answer_field not in props:
            raise ValueError(f"answer_field '{self.answer_field}' is not a property of output_schema "
                             f"(properties: {', '.join(props) or 'none'})")
        return self


@dataclass(frozen=True)
class Structured:
    """The schema of a strategy's answers, as a decoding constraint, a prompt line and an answer reader."""

    schema: dict[str, Any]
    answer_field: str | None = None

    @property
    def constraint(self) -> Constraint:
        return Constraint.json_schema(self.schema)

    def instruction(self) -> str:
        return "Answer with JSON that follows this JSON schema: " + json.dumps(self.schema, ensure_ascii=False)

    def demo_answer(self, target: str) -> str:
        """A demonstration's answer in the schema's shape (only possible when one field is scored)."""
        return json.dumps({self.answer_field: target}, ensure_ascii=False) if self.answer_field else target

    def extract(self, text: str) -> str | None:
        """The scored answer of a generated JSON text; None when it does not parse."""
        try:
            value = json.loads(text)
        except ValueError:
            return None
        if self.answer_field is None:
            return text.strip()
        if not isinstance(value, dict) or self.answer_field not in value:
            return None
        answer = value[self.answer_field]
        return answer if isinstance(answer, str) else json.dumps(answer, ensure_ascii=False)


def structured_output(config: StructuredOutputConfig, backend, task) -> Structured | None:
    """The strategy's Structured, after checking it applies; None without output_schema."""
    if config.output_schema is None:
        return None
    if task.is_classification:
        raise UserError(f"strategies.{config.id}.output_schema: classification answers are scored label by "
                        "label (nothing to parse); use output_schema on generation tasks")
    if not backend.capabilities.constrained_output:  # local causal models, OpenAI-compatible chat APIs
        raise UserError(f"strategies.{config.id}.output_schema: '{backend.name}' cannot generate under a schema; "
                        "use a local Hugging Face model or an openai: chat model")
    if backend.capabilities.local_weights and importlib.util.find_spec("xgrammar") is None:
        raise UserError(f"strategies.{config.id}.output_schema: a local model decodes under the schema with "
                        "xgrammar, which is not installed: pip install 'tunewise[serve]'")
    return Structured(config.output_schema, config.answer_field)
