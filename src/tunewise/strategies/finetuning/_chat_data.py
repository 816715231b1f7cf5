"""Chat-format fine-tuning data (OpenAI's JSONL of {"messages": [...]}) : write, check and count it.

The checks follow OpenAI's data-preparation cookbook: every line is a JSON object with a `messages`
list; every message has a known role and text content and no unknown keys; every example has an
assistant message to learn. Token counts per example give the billed training tokens before a job
starts. Both `openai-finetune` (before uploading) and `tunewise serve` (on upload) use these checks.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROLES = {"system", "user", "assistant", "function", "tool", "developer"}
MESSAGE_KEYS = {"role", "content", "name", "function_call", "weight", "tool_calls", "tool_call_id", "refusal"}
# OpenAI's default epochs for "auto": about 3, raised for small files and lowered for big ones.
TARGET_EPOCHS, MIN_EXAMPLES, MAX_EXAMPLES, MIN_EPOCHS, MAX_EPOCHS = 3, 100, 25_000, 1, 25


@dataclass
class DataReport:
    examples: int = 0
    errors: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))  # kind -> line numbers
    tokens: list[int] = field(default_factory=list)  # per example
    assistant_tokens: list[int] = field(default_factory=list)
    too_long: list[int] = field(default_factory=list)  # line numbers over the per-example limit
    conversations: list[list[dict[str, Any]]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors and self.examples > 0

    def first_error(self, source: str) -> str:
        if self.examples == 0 and not self.errors:
            return f"{source}: no examples"
        kind, lines = next(iter(self.errors.items()))
        more = f" (and {sum(map(len, self.errors.values())) - 1} more problems)" \
            if sum(map(len, self.errors.values())) > 1 else ""
        return f"{source} line {lines[0]}: {kind.replace('_', ' ')}{more}"

    def billed_tokens(self, epochs: int, max_tokens: int) -> int:
        return epochs * sum(min(t, max_tokens) for t in self.tokens)

    def summary(self) -> dict[str, Any]:
        t = sorted(self.tokens) or [0]
        return {"examples": self.examples, "errors": {k: v[:20] for k, v in self.errors.items()},
                "tokens_per_example": {"min": t[0], "max": t[-1], "mean": round(sum(t) / len(t), 1),
                                       "median": t[len(t) // 2]},
                "assistant_tokens": sum(self.assistant_tokens), "too_long": self.too_long[:20]}


def auto_epochs(n_examples: int) -> int:
    if n_examples * TARGET_EPOCHS < MIN_EXAMPLES:
        return min(MAX_EPOCHS, MIN_EXAMPLES // max(n_examples, 1))
    if n_examples * TARGET_EPOCHS > MAX_EXAMPLES:
        return max(MIN_EPOCHS, MAX_EXAMPLES // n_examples)
    return TARGET_EPOCHS


def _message_problem(m: Any) -> str | None:
    if not isinstance(m, dict):
        return "message_not_an_object"
    if "role" not in m or ("content" not in m and "tool_calls" not in m and "function_call" not in m):
        return "message_missing_key"
    if set(m) - MESSAGE_KEYS:
        return "message_unrecognized_key"
    if m["role"] not in ROLES:
        return "unrecognized_role"
    content = m.get("content")
    if content is not None and not isinstance(content, str):
        return "content_not_text"
    if m.get("weight", 1) not in (0, 1):
        return "weight_not_0_or_1"
    return None


def check_lines(lines: list[str], count: Callable[[str], int], max_tokens: int = 65_536) -> DataReport:
    """Check chat JSONL lines; `count` gives a text's tokens (the model's tokenizer or an estimate)."""
    report = DataReport()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            report.errors["not_valid_json"].append(n)
            continue
        messages = row.get("messages") if isinstance(row, dict) else None
        if not isinstance(messages, list) or not messages:
            report.errors["missing_messages_list"].append(n)
            continue
        problems = [p for p in map(_message_problem, messages) if p]
        if problems:
            report.errors[problems[0]].append(n)
            continue
        if not any(m["role"] == "assistant" for m in messages):
            report.errors["example_missing_assistant_message"].append(n)
            continue
        report.examples += 1
        report.conversations.append(messages)
        tokens = 3 + sum(3 + count(m.get("content") or "") for m in messages)
        report.tokens.append(tokens)
        report.assistant_tokens.append(sum(count(m.get("content") or "") for m in messages
                                           if m["role"] == "assistant"))
        if tokens > max_tokens:
            report.too_long.append(n)
    return report


def check_file(path: Path, count: Callable[[str], int], max_tokens: int = 65_536) -> DataReport:
    return check_lines(path.read_text(encoding="utf-8").splitlines(), count, max_tokens)


def write_jsonl(path: Path, conversations: list[list[dict[str, str]]]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for messages in conversations:
            f.write(json.dumps({"messages": messages}, ensure_ascii=False) + "\n")
