"""Inputs longer than a model can take: the one policy every path applies (label scoring, generation,
chains, agents, training, distillation, serving, API models), and the token budget of a batch.

Limits. A model takes `backend.context_window` tokens in all, prompt and answer (the backend contract,
backends/base.py): for local weights `model_context` reads its config's `max_position_embeddings` (or the
field its architecture uses) and the tokenizer's `model_max_length` when that is a real number (tokenizers
without one report 1e30), less the virtual tokens of a prompt-learning adapter; an API model declares it
(`context_window` setting); None (fakes, undeclared APIs) checks nothing. The task may cap the prompt
further with `task.max_input_tokens`. The room for the answer (the longest label, or `max_new_tokens`) is
kept free.

Policy (`task.long_inputs`). `truncate` (default): the end of the example's OWN text is cut until the
whole prompt fits; the instruction, the demonstrations and the answer slot are never cut (an instruction
that alone does not fit is an error). Each cut is a `{"step": "truncated", ...}` entry in the
prediction's trace, counted in results as `cost.details.truncated_inputs`. `refuse`: a one-line
`UserError` naming the example, its tokens and the limit. A strategy's own `max_length` (encoders,
training) is a length the user chose: cutting to it is counted, never refused.

Memory. `token_batches` groups rows so that rows x padded length stays within `BATCH_TOKENS`, and a long
row is run in chunks of `PREFILL_CHUNK` tokens with its KV cache (chunked prefill, as vLLM and
transformers' `prefill_chunk_size` do), so peak memory depends on the context, not on one input.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from tunewise.errors import UserError

POLICIES = ("truncate", "refuse")
TRACE_STEP = "truncated"
BATCH_TOKENS = 4096  # tokens (rows x padded length) computed by one forward pass
PREFILL_CHUNK = 512  # a longer row is prefilled this many tokens at a time
_NO_LIMIT = 10_000_000  # tokenizers without a length limit report 1e30
_POSITION_FIELDS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx")


class InputTooLong(UserError):
    """An example does not fit and the policy is `refuse` (or its instruction alone does not fit)."""

    def __init__(self, message: str, example: str, tokens: int, limit: int):
        super().__init__(message)
        self.example, self.tokens, self.limit = example, tokens, limit


def model_context(model: Any = None, tokenizer: Any = None, config: Any = None) -> int | None:
    """Tokens a local model takes in all (prompt + answer); None when neither model (or its config) nor
    tokenizer says. What local backends return as `context_window`; `longest_inputs` reads it from the
    config and tokenizer alone."""
    config = config if config is not None else getattr(model, "config", None)
    found = [v for v in (getattr(config, key, None) for key in _POSITION_FIELDS) if isinstance(v, int) and v > 0]
    limits = found[:1]
    declared = getattr(tokenizer, "model_max_length", None)
    if isinstance(declared, int) and 0 < declared < _NO_LIMIT:
        limits.append(declared)
    if not limits:
        return None
    return min(limits) - int(getattr(model, "n_virtual", 0) or 0)  # prompt-learning virtual tokens


@dataclass(frozen=True)
class Limit:
    """The most prompt tokens allowed (None: unknown, nothing is checked), the policy, and why."""

    tokens: int | None
    policy: str = "truncate"
    why: str = ""


def limit_for(context: int | None, task: Any = None, reserve: int = 0) -> Limit:
    """The prompt limit for a model of `context` tokens whose answer needs `reserve` tokens, under the
    task's `max_input_tokens` and `long_inputs` (absent on a task: no cap, truncate)."""
    policy = getattr(task, "long_inputs", None) or "truncate"
    cap = getattr(task, "max_input_tokens", None)
    options = []
    if context:
        room = f", {reserve} of them kept for the answer" if reserve else ""
        options.append((context - reserve, f"the model's context of {context} tokens{room}"))
    if cap:
        options.append((int(cap), f"task.max_input_tokens = {cap}"))
    if not options:
        return Limit(None, policy)
    tokens, why = min(options)
    return Limit(max(tokens, 0), policy, why)


def name_of(example: Any) -> str:
    """How messages name an example: its source row when known (file:line), else its id."""
    meta = getattr(example, "meta", None) or {}
    return str(meta.get("source") or f"example {getattr(example, 'id', example)}")


def record(example: str, tokens: int, kept: int, limit: Limit) -> dict[str, Any]:
    """The trace step of a cut: the prompt's tokens before and after, and the limit."""
    return {"step": TRACE_STEP, "example": example, "prompt_tokens": tokens, "kept_tokens": kept,
            "limit": limit.tokens, "why": limit.why}


def count_truncated(traces: Iterable[Sequence[dict] | None]) -> int:
    """How many predictions (given by their traces) had their input cut."""
    return sum(any(isinstance(s, dict) and s.get("step") == TRACE_STEP for s in t or ()) for t in traces)


def too_long(example: str, tokens: int, limit: Limit) -> InputTooLong:
    """The one-line refusal of `refuse`: the example, its prompt's tokens and the limit with its reason."""
    return InputTooLong(f"{example}: the prompt has {tokens:,} tokens, over the limit of {limit.tokens:,} "
                        f"({limit.why}); shorten this input, or set task.long_inputs: truncate to cut it",
                        example, tokens, limit.tokens or 0)


def fit_text(counter: Any, limit: Limit, example: str, text: str, measure: Callable[[str], int]
             ) -> tuple[str, dict[str, Any] | None]:
    """The example's text cut (at its end) so that `measure(text)`, the tokens of the whole prompt built
    around it, is within the limit; and the trace step of the cut (None when nothing was cut).

    `counter` is a backend (`count_tokens`, and a `tokenizer` when local) or a tokenizer. Raises
    `InputTooLong` under `refuse`, or when the prompt is over the limit with just one token of the text."""
    if limit.tokens is None:
        return text, None
    total = measure(text)
    if total <= limit.tokens:
        return text, None
    if limit.policy == "refuse":
        raise too_long(example, total, limit)
    least = cut_text(counter, text, 1)  # one token of the text (an empty input may not even render)
    rest = measure(least)
    if rest > limit.tokens:
        raise InputTooLong(f"{example}: the prompt has {rest:,} tokens with just one token of the example's "
                           f"text, over the limit of {limit.tokens:,} ({limit.why}); shorten the instruction or "
                           "use fewer demonstrations", example, rest, limit.tokens)
    keep = count_tokens(counter, text) - (total - limit.tokens)
    for _ in range(4):  # tokens do not add up exactly across the cut: re-measure, cut the excess again
        if keep <= 1:
            break
        cut = cut_text(counter, text, keep)
        kept = measure(cut)
        if kept <= limit.tokens:
            return cut, record(example, total, kept, limit)
        keep -= max(kept - limit.tokens, 1)
    return least, record(example, total, rest, limit)


def fit_messages(counter: Any, messages: list[dict[str, str]], render: Callable[[list[dict[str, str]]], str],
                 limit: Limit) -> tuple[str, bool]:
    """A conversation rendered within `limit` tokens, as chat APIs truncate one: the oldest turns after the
    system message go first (the last turn stays), then the end of the longest remaining non-system message
    is cut. Returns the prompt and whether anything was dropped or cut."""
    chat = list(messages)
    prompt = render(chat)
    if limit.tokens is None or count_tokens(counter, prompt) <= limit.tokens:
        return prompt, False
    if limit.policy == "refuse":
        raise too_long("the conversation", count_tokens(counter, prompt), limit)
    while len(chat) > 2 and count_tokens(counter, prompt) > limit.tokens:
        del chat[1 if chat[0]["role"] == "system" else 0]
        prompt = render(chat)
    if count_tokens(counter, prompt) > limit.tokens:
        i = max([j for j, m in enumerate(chat) if m["role"] != "system"] or [0], key=lambda j: len(chat[j]["content"]))

        def with_text(text: str) -> str:
            return render(chat[:i] + [{**chat[i], "content": text}] + chat[i + 1:])

        text, _ = fit_text(counter, limit, f"the {chat[i]['role']} message", chat[i]["content"],
                           lambda t: count_tokens(counter, with_text(t)))
        prompt = with_text(text)
    return prompt, True


def _fast_tokenizer(counter: Any) -> Any:
    tok = getattr(counter, "tokenizer", counter)
    return tok if getattr(tok, "is_fast", False) else None


def count_tokens(counter: Any, text: str) -> int:
    if hasattr(counter, "count_tokens"):
        return counter.count_tokens(text)
    return len(counter(text, add_special_tokens=False)["input_ids"])


def cut_text(counter: Any, text: str, tokens: int, keep: str = "start") -> str:
    """The first (keep="start") or last (keep="end") `tokens` tokens of `text`, as text.

    A fast Hugging Face tokenizer gives character offsets (exact); other counters (API estimates, the
    fake backend) are searched by bisection over the characters."""
    if tokens <= 0:
        return ""
    tok = _fast_tokenizer(counter)
    if tok is not None:
        spans = tok(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        if len(spans) <= tokens:
            return text
        return text[:spans[tokens - 1][1]] if keep == "start" else text[spans[len(spans) - tokens][0]:]
    piece = (lambda n: text[:n]) if keep == "start" else (lambda n: text[len(text) - n:])
    lo, hi = 0, len(text)
    while lo < hi:  # the longest piece within `tokens`
        mid = (lo + hi + 1) // 2
        if count_tokens(counter, piece(mid)) <= tokens:
            lo = mid
        else:
            hi = mid - 1
    return piece(lo)


def token_batches(lengths: Sequence[int], max_rows: int, max_tokens: int = BATCH_TOKENS,
                  rows_per_item: int = 1) -> list[list[int]]:
    """Consecutive indices grouped so that each group has at most `max_rows` items and
    items x rows_per_item x its longest length stays within `max_tokens`; an item over the budget on its
    own forms a group alone (the caller prefills it in chunks). Sort `lengths` first for tighter padding."""
    groups: list[list[int]] = []
    group: list[int] = []
    longest = 0
    for i, n in enumerate(lengths):
        wider = max(longest, n)
        if group and (len(group) >= max_rows or (len(group) + 1) * rows_per_item * wider > max_tokens):
            groups.append(group)
            group, wider = [], n
        group.append(i)
        longest = wider
    if group:
        groups.append(group)
    return groups


def check_prompt(tokens: int, context: int | None, new_tokens: int, what: str = "a prompt") -> None:
    """Last guard of a local model call: refuse a prompt that cannot fit rather than run out of memory."""
    if context and tokens + new_tokens > context:
        raise UserError(f"{what} has {tokens:,} tokens and asks for {new_tokens} more, over the model's context "
                        f"of {context:,} tokens; set task.max_input_tokens lower or shorten the input")


def longest_inputs(model: str, examples: Sequence[Any], task: Any = None, top: int = 3) -> str | None:
    """One line for `tunewise validate`: the `top` longest inputs in tokens against a LOCAL model's context
    (its tokenizer and config only, no weights) and what `task.long_inputs` will do with those over it;
    None for models without a local tokenizer (fake, API)."""
    if model.startswith(("fake", "openai:")) or not examples:
        return None
    from transformers import AutoConfig, AutoTokenizer

    from tunewise.backends import embedded

    path = embedded.resolve(model)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as err:
        return f"{model}: input lengths not checked ({str(err).splitlines()[0][:120]})"
    context = model_context(tokenizer=tokenizer, config=config)
    lengths = [len(ids) for ids in tokenizer([e.input for e in examples], add_special_tokens=False,
                                             verbose=False)["input_ids"]]
    ranked = sorted(zip(lengths, examples, strict=True), key=lambda pair: -pair[0])
    limit = limit_for(context, task)
    over = sum(n > limit.tokens for n in lengths) if limit.tokens else 0
    shown = ", ".join(f"{name_of(e)} {n:,}" for n, e in ranked[:top])
    action = "cut to fit" if limit.policy == "truncate" else "refused (task.long_inputs: refuse)"
    verdict = f"{over} of {len(lengths)} over {limit.why}: {'it' if over == 1 else 'they'} will be {action}" \
        if over else f"all {len(lengths)} fit {limit.why}"
    return f"{model}: longest inputs in tokens: {shown}; {verdict}"
