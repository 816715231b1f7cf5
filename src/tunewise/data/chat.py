"""OpenAI chat-format JSONL (`{"messages": [...]}` per line, the fine-tuning file format) as task rows.

A user moving off hosted fine-tuning has their examples in this format; reading it directly lets the same file
be the training data of a fine-tuning job and the task that compares it with prompting. Each conversation
becomes one row: the last user message is the input, the last assistant message the target, and the system
message is kept (as `system`); when every example shares one system message it becomes the task's
instruction, so prompted models get the prompt the fine-tune was trained with. Earlier turns of a multi-turn
conversation are not part of the input.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tunewise.errors import UserError


def _text(content: Any) -> str:
    if isinstance(content, list):  # content parts: keep the text ones
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return "" if content is None else str(content)


def is_chat_row(row: dict[str, Any]) -> bool:
    return isinstance(row.get("messages"), list) and not ({"input", "text", "target", "label"} & set(row))


def chat_row(row: dict[str, Any], where: str, line: int) -> dict[str, Any]:
    """{"input", "target"[, "system"]} of one chat-format example; a UserError naming the line otherwise."""
    messages = [m for m in row["messages"] if isinstance(m, dict)]
    last = {role: next((_text(m.get("content")) for m in reversed(messages) if m.get("role") == role), "")
            for role in ("user", "assistant")}
    for role, text in last.items():
        if not text.strip():
            raise UserError(f"{where}: line {line}: the conversation has no {role} message with text; a chat-format "
                            "example needs a user message and the assistant's answer")
    system = next((_text(m.get("content")) for m in messages if m.get("role") in ("system", "developer")), "")
    return {"input": last["user"], "target": last["assistant"], **({"system": system} if system.strip() else {})}


def shared_system(examples: Sequence) -> str | None:
    """The system message every example carries, if they all carry the same one."""
    systems = {e.meta.get("system") for e in examples}
    return systems.pop() if len(systems) == 1 and None not in systems else None
