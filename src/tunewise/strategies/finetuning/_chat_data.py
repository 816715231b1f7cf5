"""Chat-format fine-tuning data (OpenAI's JSONL of {"messages": [...]}): write it, check it, pick epochs.

The checks are `tunewise.data.chat_format`'s, the same that `tunewise serve` makes on upload (/v1/files), so a
file `openai-finetune` accepts is one the server accepts and the other way round. Token counts per example give
the billed training tokens before a job starts.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tunewise.data.chat_format import ChatReport, check_chat

# OpenAI's default epochs for "auto": about 3, raised for small files and lowered for big ones.
TARGET_EPOCHS, MIN_EXAMPLES, MAX_EXAMPLES, MIN_EPOCHS, MAX_EPOCHS = 3, 100, 25_000, 1, 25


def auto_epochs(n_examples: int) -> int:
    if n_examples * TARGET_EPOCHS < MIN_EXAMPLES:
        return min(MAX_EPOCHS, MIN_EXAMPLES // max(n_examples, 1))
    if n_examples * TARGET_EPOCHS > MAX_EXAMPLES:
        return max(MIN_EPOCHS, MAX_EXAMPLES // n_examples)
    return TARGET_EPOCHS


def check_file(path: Path, count: Callable[[str], int], max_tokens: int | None = None) -> ChatReport:
    """`check_chat` of a file (BOM and CRLF allowed); `count` gives a text's tokens, `max_tokens` the limit."""
    return check_chat(path.read_bytes().decode("utf-8-sig"), count, max_tokens)


def write_jsonl(path: Path, conversations: list[list[dict[str, str]]]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for messages in conversations:
            f.write(json.dumps({"messages": messages}, ensure_ascii=False) + "\n")
