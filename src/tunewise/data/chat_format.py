"""The one check of chat-format fine-tuning data (OpenAI's JSONL of {"messages": [...]}), for every path that
takes such a file: `/v1/files` of `tunewise serve`, `openai-finetune` before it uploads, and chat-format task
files.

The checks are those of OpenAI's data-preparation cookbook ("Data preparation and analysis for chat model
fine-tuning") and of its fine-tuning file validation: each line a JSON object with a non-empty `messages`
list; each message an object with a known role and only known keys; content text (or text/image parts) and
not empty or blank unless an assistant message carries tool calls; `weight` 0 or 1 and only on assistant
messages; `tool_calls` as [{id, type: "function", function: {name, arguments: a JSON string}}] on assistant
messages, each tool message answering one of them by `tool_call_id`; an assistant message with weight 1 in
every example; at most `max_tokens` tokens per example (the model's context) when a token counter is given.
A repeated example is a warning, not a problem. Every problem names its line, the field and the fix.

The file may start with a UTF-8 byte-order mark and end lines with CRLF, as Windows editors save it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

ROLES = ("system", "developer", "user", "assistant", "tool", "function")
MESSAGE_KEYS = ("role", "content", "name", "weight", "tool_calls", "tool_call_id", "function_call", "refusal")
PART_TYPES = ("text", "image_url")
SHOWN = 5  # problems spelled out in the one-line error; the rest are counted


@dataclass(frozen=True)
class Problem:
    line: int  # 1-based line of the file (0: the file as a whole)
    field: str  # e.g. "messages[2].content"; "" for the line as a whole
    message: str  # what is wrong
    fix: str  # what to do

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line else "file"
        return f"{where}: {self.field + ': ' if self.field else ''}{self.message} ({self.fix})"


@dataclass
class ChatReport:
    """What `check_chat` found: the valid conversations (with their lines), problems and warnings, tokens
    per example (by the cookbook's count: 3 per message plus its content, 3 to prime the reply)."""

    conversations: list[list[dict[str, Any]]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)  # line of each conversation
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)  # per conversation
    assistant_tokens: list[int] = field(default_factory=list)

    @property
    def examples(self) -> int:
        return len(self.conversations)

    @property
    def ok(self) -> bool:
        return not self.problems and self.examples > 0

    def describe(self, source: str) -> str:
        """One line: `source`, then the first problems with line, field and fix, and how many more."""
        if not self.problems:
            return f"{source}: no examples; add one chat-format example per line"
        shown = "; ".join(map(str, self.problems[:SHOWN]))
        more = len(self.problems) - SHOWN
        return f"{source}: {shown}" + (f"; and {more} more problems" if more > 0 else "")

    def billed_tokens(self, epochs: int, max_tokens: int) -> int:
        return epochs * sum(min(t, max_tokens) for t in self.tokens)

    def summary(self) -> dict[str, Any]:
        t = sorted(self.tokens) or [0]
        return {"examples": self.examples, "problems": [str(p) for p in self.problems[:20]],
                "warnings": [str(w) for w in self.warnings[:20]],
                "tokens_per_example": {"min": t[0], "max": t[-1], "mean": round(sum(t) / len(t), 1),
                                       "median": t[len(t) // 2]},
                "assistant_tokens": sum(self.assistant_tokens)}


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return content if isinstance(content, str) else ""


def _content(m: dict[str, Any], at: str) -> list[tuple[str, str, str]]:
    calls = m.get("tool_calls") or m.get("function_call")
    content = m.get("content")
    if content is None:  # an assistant message that only calls tools needs no text
        return [] if calls else [(f"{at}.content", "is missing", "add the message's text")]
    if isinstance(content, list):
        bad = next((i for i, p in enumerate(content) if not isinstance(p, dict) or p.get("type") not in PART_TYPES),
                   None)
        if bad is not None:
            return [(f"{at}.content[{bad}]", "is not a text or image_url part",
                     'use {"type": "text", "text": ...} parts')]
        if any(p["type"] == "image_url" for p in content):
            return []
    elif not isinstance(content, str):
        return [(f"{at}.content", f"is a JSON {type(content).__name__}, not text", "give the content as a string")]
    text = _text(content)
    if text.strip() or calls:
        return []
    role = m["role"]
    what = "the assistant's answer" if role == "assistant" else f"the {role} message"
    state = "is empty" if not text else "is blank (only whitespace)"
    fix = "write the answer, or remove the example" if role == "assistant" else "write the text or remove the message"
    return [(f"{at}.content", f"{what} {state}", fix)]


def _function(fn: Any, at: str) -> list[tuple[str, str, str]]:
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"].strip():
        return [(f"{at}.name", "is missing", "name the function that is called")]
    args = fn.get("arguments")
    if not isinstance(args, str):
        return [(f"{at}.arguments", "is not a string", "give the arguments as a JSON-encoded string")]
    try:
        json.loads(args)
    except (ValueError, RecursionError):
        return [(f"{at}.arguments", "is not valid JSON", "encode the arguments as a JSON object string")]
    return []


def _tool_calls(m: dict[str, Any], at: str, ids: set[str]) -> list[tuple[str, str, str]]:
    calls = m["tool_calls"]
    if m.get("role") != "assistant":
        return [(f"{at}.tool_calls", "is only allowed on assistant messages", "move it to an assistant message")]
    if not isinstance(calls, list) or not calls:
        return [(f"{at}.tool_calls", "is not a non-empty list", "list the calls, or remove the key")]
    for i, call in enumerate(calls):
        where = f"{at}.tool_calls[{i}]"
        if not isinstance(call, dict) or not isinstance(call.get("id"), str) or not call["id"]:
            return [(f"{where}.id", "is missing", "give each tool call an id that its tool message repeats")]
        if call.get("type", "function") != "function":
            return [(f"{where}.type", f"is '{call.get('type')}'", "use type 'function'")]
        problems = _function(call.get("function"), f"{where}.function")
        if problems:
            return problems
        ids.add(call["id"])
    return []


def _message(m: Any, at: str, ids: set[str]) -> list[tuple[str, str, str]]:
    if not isinstance(m, dict):
        return [(at, "is not an object", 'write each message as {"role": ..., "content": ...}')]
    if "role" not in m:
        return [(f"{at}.role", "is missing", f"use one of: {', '.join(ROLES)}")]
    if m["role"] not in ROLES:
        return [(f"{at}.role", f"'{m['role']}' is not a known role", f"use one of: {', '.join(ROLES)}")]
    unknown = sorted(set(m) - set(MESSAGE_KEYS))
    if unknown:
        return [(f"{at}.{unknown[0]}", "is not a message key", f"remove it; message keys: {', '.join(MESSAGE_KEYS)}")]
    if "weight" in m and m["role"] != "assistant":
        return [(f"{at}.weight", f"is set on a {m['role']} message; only assistant messages take one", "remove it")]
    if "weight" in m and (m["weight"] not in (0, 1) or isinstance(m["weight"], bool)):
        return [(f"{at}.weight", f"is {m['weight']!r}, not 0 or 1", "use 0 (do not learn it) or 1 (learn it)")]
    if "tool_calls" in m and (problems := _tool_calls(m, at, ids)):
        return problems
    if "function_call" in m and (problems := _function(m["function_call"], f"{at}.function_call")):
        return problems
    if m["role"] == "tool":
        call_id = m.get("tool_call_id")
        if not isinstance(call_id, str) or call_id not in ids:
            known = ", ".join(sorted(ids)) or "none"
            return [(f"{at}.tool_call_id", f"{call_id!r} answers no earlier tool call (ids: {known})",
                     "repeat the id of the assistant's tool call this message answers")]
    if m["role"] == "function" and not isinstance(m.get("name"), str):
        return [(f"{at}.name", "is missing", "name the function whose result this is")]
    return _content(m, at)


def _example(row: Any) -> list[tuple[str, str, str]]:
    if not isinstance(row, dict):
        return [("", f"a JSON {type(row).__name__}, not an object", 'write one object {"messages": [...]} per line')]
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        return [("messages", "is missing or empty", "give the conversation as a list of messages")]
    ids: set[str] = set()
    for i, m in enumerate(messages):
        problems = _message(m, f"messages[{i}]", ids)
        if problems:
            return problems
    answers = [m for m in messages if m["role"] == "assistant"]
    if not answers:
        return [("messages", "has no assistant message", "add the answer the model should learn")]
    if all(m.get("weight", 1) == 0 for m in answers):
        return [("messages", "every assistant message has weight 0, so there is nothing to learn",
                 "set weight 1 on at least one answer")]
    return []


def _key(messages: list[Any]) -> str | None:
    """The conversation as canonical JSON, to spot repeats (None if it nests too deeply to encode)."""
    try:
        return json.dumps(messages, sort_keys=True)
    except RecursionError:
        return None


def check_chat(text: str, count: Callable[[str], int] | None = None, max_tokens: int | None = None) -> ChatReport:
    """Check chat-format JSONL `text` (a leading BOM and CRLF line ends are fine). With `count` (a text's
    tokens, e.g. the model's tokenizer) tokens per example are counted and, with `max_tokens` (the model's
    context), an example over it is a problem. Never raises: problems are in the report."""
    report = ChatReport()
    seen: dict[str, int] = {}
    for n, line in enumerate(text.removeprefix("\ufeff").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (ValueError, RecursionError) as err:  # RecursionError: nested past the parser's limit
            report.problems.append(Problem(n, "", f"not valid JSON ({getattr(err, 'msg', 'nested too deeply')})",
                                           "fix the line or remove it"))
            continue
        problems = _example(row)
        report.problems += [Problem(n, *p) for p in problems]
        if problems:
            continue
        messages = row["messages"]
        tokens = 3 + sum(3 + count(_text(m.get("content"))) for m in messages) if count else 0
        if max_tokens and tokens > max_tokens:
            report.problems.append(Problem(n, "messages", f"{tokens} tokens, over the model's {max_tokens}",
                                           "shorten or split the conversation"))
            continue
        key = _key(messages)
        if key is not None and key in seen:
            report.warnings.append(Problem(n, "messages", f"repeats line {seen[key]}",
                                           "remove one copy unless it should weigh twice"))
        if key is not None:
            seen.setdefault(key, n)
        report.conversations.append(messages)
        report.lines.append(n)
        report.tokens.append(tokens)
        report.assistant_tokens.append(sum(count(_text(m.get("content"))) for m in messages
                                           if m["role"] == "assistant") if count else 0)
    return report


def decode(data: bytes) -> tuple[str | None, Problem | None]:
    """The text of an uploaded file (UTF-8, with or without BOM), or the problem naming the bad line."""
    data = data.removeprefix(b"\xef\xbb\xbf")  # before decoding, so the error's offset counts in `data`
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        return None, Problem(line, "", f"not UTF-8 (byte 0x{data[err.start]:02x})", "save the file as UTF-8")
