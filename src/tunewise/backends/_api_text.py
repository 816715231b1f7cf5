"""Text helpers of the API backend: prompts as message lines, token estimates, labels from API answers.

Prompting strategies hand a causal backend *rendered text*. A chat API wants messages, so the API
backend renders each message as one JSON line after an ASCII record separator: the text survives the
string operations the predictors do (prefix + suffix concatenation, an appended trigger such as "Let's
think step by step.") and parses back into the same messages. `response_format` turns a JSON output
constraint into OpenAI's response_format.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import zlib
from functools import cache
from typing import Any

from tunewise.errors import CapabilityError, UserError

RS = "\x1e"  # ASCII record separator: never typed by users, so it marks our message lines unambiguously

Messages = list[dict[str, str]]


def render_lines(messages: Messages) -> str:
    return "".join(RS + json.dumps({"role": m["role"], "content": m["content"]}, ensure_ascii=False) + "\n"
                   for m in messages)


def parse_lines(text: str) -> Messages:
    """Messages back from `render_lines` text. Plain text becomes a user message; text appended after the
    last line (a reasoning trigger) joins the last user message, since chat APIs cannot prefill a reply."""
    chunks = text.split(RS)
    messages: Messages = []
    extra = []
    if chunks[0].strip():
        messages.append({"role": "user", "content": chunks[0]})
    for chunk in chunks[1:]:
        line, _, rest = chunk.partition("\n")
        try:
            message = json.loads(line)
            messages.append({"role": str(message["role"]), "content": str(message["content"])})
        except (ValueError, KeyError, TypeError):
            rest = chunk
        if rest.strip():
            extra.append(rest.strip())
    if extra:
        users = [m for m in messages if m["role"] == "user"]
        if users:
            users[-1]["content"] = users[-1]["content"].rstrip() + "\n\n" + " ".join(extra)
        else:
            messages.append({"role": "user", "content": " ".join(extra)})
    return messages


def is_lines(text: str) -> bool:
    return text.startswith(RS)


# --- token counts -------------------------------------------------------------------------------
_PIECES = re.compile(r" ?[A-Za-z]{1,5}| ?\d{1,3}| ?[^\sA-Za-z\d]| +|\n+")


@cache
def _tiktoken():
    try:
        import tiktoken

        return tiktoken.get_encoding("o200k_base")
    except Exception:  # not installed, or its vocabulary cannot be downloaded (offline)
        return None


def token_counter() -> str:
    return "tiktoken o200k_base" if _tiktoken() else "estimate (~1 token per 5 letters; install tiktoken for " \
                                                       "exact counts)"


def encode(text: str) -> list[int]:
    """Token ids: tiktoken's when it is available, else stable pseudo ids of BPE-like pieces."""
    enc = _tiktoken()
    if enc is not None:
        return enc.encode(text, disallowed_special=())
    return [zlib.crc32(p.encode()) % 200_000 for p in _PIECES.findall(text)]


def count_text(text: str) -> int:
    if is_lines(text):  # ~3 tokens of chat framing per message, as OpenAI's counting guide says
        return sum(3 + len(encode(m["content"])) for m in parse_lines(text)) + 3
    return len(encode(text))


# --- labels -------------------------------------------------------------------------------------
_ONE_OF = re.compile(r"Answer with exactly one of: (.+?)\.\s*$", re.MULTILINE)


def labels_in_prompt(messages: Messages) -> list[str]:
    """The closed label set a prompting strategy lists in its system message (`_common.system_prompt`)."""
    for m in messages:
        if m["role"] == "system":
            found = _ONE_OF.search(m["content"])
            if found:
                return [x.strip() for x in found.group(1).split(",") if x.strip()]
    return []


def _norm(text: str) -> str:
    return re.sub(r"[^\w\s-]", " ", text.lower()).strip()


def parse_label(text: str, labels: list[str]) -> str:
    """Constrained parsing: the label the answer states (exact, first mentioned, else the closest)."""
    answer = _norm(text)
    by_norm = {_norm(label): label for label in labels}
    if answer in by_norm:
        return by_norm[answer]
    found = [(m.start(), -len(n), label) for n, label in by_norm.items()
             for m in [re.search(rf"(?<!\w){re.escape(n)}(?!\w)", answer)] if n and m]
    if found:
        return min(found)[2]
    close = difflib.get_close_matches(answer[:64], list(by_norm), n=1, cutoff=0.0)
    return by_norm[close[0]] if close else labels[0]


def label_logprobs(top: list[tuple[str, float]], labels: list[str]) -> list[float] | None:
    """Label log-probabilities from the alternatives at the answer's first position.

    A token counts for the one label it begins (case-insensitive, surrounding spaces ignored); labels
    missing from the alternatives share less than the least likely one. None when no label shows up, or
    when tokens that begin several labels carry more probability than the best label (the first token
    cannot tell them apart): the caller then generates and parses instead.
    """
    mass = [0.0] * len(labels)
    shared = 0.0
    lowered = [label.lower() for label in labels]
    for token, logprob in top:
        piece = token.strip().lower()
        if not piece:
            continue
        owners = [i for i, label in enumerate(lowered) if label.startswith(piece)]
        if len(owners) == 1:
            mass[owners[0]] += math.exp(logprob)
        elif len(owners) > 1:
            shared += math.exp(logprob)
    if max(mass) <= 0 or shared > max(mass):
        return None
    floor = min(math.exp(lp) for _, lp in top) / (1 + sum(m == 0 for m in mass))
    return [math.log(m if m > 0 else floor) for m in mass]


def one_hot_logprobs(choice: str, labels: list[str], eps: float = 1e-3) -> list[float]:
    rest = eps / max(len(labels) - 1, 1)
    return [math.log(1 - eps) if label == choice else math.log(rest) for label in labels]


def render_plain(messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
    """The plain 'Input:/Output:' prompt of base models (as hf_local.CausalLMBackend.render writes it)."""
    parts = []
    for m in messages:
        prefix = {"system": "", "user": "Input: ", "assistant": "Output: "}.get(m["role"], "")
        parts.append(f"{prefix}{m['content']}\n" + ("\n" if m["role"] == "assistant" else ""))
    return "".join(parts) + ("Output:" if add_generation_prompt else "")


def response_format(constraint, model: str, chat: bool) -> dict[str, Any] | None:
    """OpenAI's response_format for a JSON constraint (strict json_schema, or json_object). CapabilityError
    when `model` is used through the completions API (no response_format there); UserError for a grammar
    (structural tag), which the API cannot take."""
    if constraint is None:
        return None
    if not chat:
        raise CapabilityError(f"'{model}' is used through the completions API, which takes no response_format; "
                              "use the chat API (mode=chat in the model name)")
    if constraint.kind == "structural_tag":
        raise UserError("an API model takes JSON output constraints only (response_format json_schema or "
                        "json_object), not a structural tag; use a local model for grammar-constrained tool calls")
    if constraint.kind == "json_object":
        return {"type": "json_object"}
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": json.loads(constraint.spec),
                                                   "strict": True}}


# --- errors -------------------------------------------------------------------------------------
def context_exceeded(body: object, message: str) -> bool:
    """Whether a server refused a prompt as longer than the model's context: OpenAI's error code, or the
    wording of vLLM ("maximum context length"), llama.cpp ("context size") and others."""
    inner = body.get("error", body) if isinstance(body, dict) else None
    code = inner.get("code") if isinstance(inner, dict) else None
    text = message.lower()
    return code == "context_length_exceeded" or any(
        p in text for p in ("maximum context length", "context size", "context window", "context_length_exceeded"))
