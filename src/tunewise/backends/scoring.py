"""Label scoring by log-likelihood with a shared-prefix KV cache.

Few-shot and instruction prompts repeat one long prefix for every example. We run the prefix once,
keep its KV cache, and for each batch of examples run only their suffixes (left-padded *after* the
prefix, with explicit position ids so padding never shifts positions). Every candidate continuation
(label) is then scored from a copy of that cache, so each label costs only its own few tokens.
Continuations of a batch are packed in one row per example (see `_packed_continuations`).
Memory is bounded by tokens, not by one input's length: batches hold at most `max_batch_tokens` suffix
tokens (rows x padded width, `context.token_batches`), a wider batch is run `prefill_chunk` columns at a
time through the KV cache (chunked prefill), and only the last position's logits are computed.
`score_continuations_naive` is the reference (one full forward per example and label) used by tests.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Sequence

import numpy as np
import torch

from tunewise.backends.context import BATCH_TOKENS, PREFILL_CHUNK, token_batches


def cache_kwarg(model) -> str:
    """The name under which `model.forward` takes a KV cache: "cache" (newer transformers models) or
    "past_key_values"."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _forward(model, cache_kw: str, **kwargs):
    if cache_kw != "cache" and "cache" in kwargs:
        kwargs[cache_kw] = kwargs.pop("cache")
    out = model(**kwargs, use_cache=True)
    cache = out.get("cache") if "cache" in out else out.get("past_key_values")
    return out.logits, cache


def keeps_logits(model) -> bool:
    """Whether the (innermost) model's forward takes `logits_to_keep`: then only the last position's logits
    are computed, not width x vocabulary of them. Wrappers (PEFT, virtual tokens) pass it through."""
    inner = model
    for _ in range(4):
        nxt = getattr(inner, "base", None) or (inner.get_base_model() if hasattr(inner, "get_base_model") else None)
        if nxt is None or nxt is inner:
            break
        inner = nxt
    return "logits_to_keep" in inspect.signature(inner.forward).parameters


def _prefill(model, cache_kw: str, ids, mask, pos, cache, chunk: int, keep_last: bool):
    """Run `ids` (b, width) after the cached prefix, `chunk` columns at a time; return the last position's
    logits (b, vocab) and the cache. `mask` covers prefix + ids; `pos` are the ids' positions."""
    past = mask.shape[1] - ids.shape[1]
    extra = {"logits_to_keep": 1} if keep_last else {}
    logits = None
    for c0 in range(0, ids.shape[1], chunk):
        c1 = min(c0 + chunk, ids.shape[1])
        logits, cache = _forward(model, cache_kw, input_ids=ids[:, c0:c1], attention_mask=mask[:, :past + c1],
                                 position_ids=pos[:, c0:c1], cache=cache, **extra)
    return logits[:, -1], cache


def _prefix_state(model, cache_kw: str, prefix: Sequence[int], device, chunk: int, keep_last: bool):
    """(last position's logits (1, vocab), KV cache) of the shared prefix, prefilled `chunk` tokens at a time;
    (None, None) without a prefix."""
    if not prefix:
        return None, None
    ids = torch.tensor([list(prefix)], device=device)
    return _prefill(model, cache_kw, ids, torch.ones_like(ids), torch.arange(len(prefix), device=device)[None],
                    None, chunk, keep_last)


@torch.no_grad()
def score_continuations(
    model,
    prefix: Sequence[int],
    suffixes: Sequence[Sequence[int]],
    continuations: Sequence[Sequence[int]],
    batch_size: int = 16,
    cache_kw: str = "cache",
    pad_id: int = 0,
    on_batch: Callable[[int], None] | None = None,
    max_batch_tokens: int = BATCH_TOKENS,
    prefill_chunk: int = PREFILL_CHUNK,
) -> np.ndarray:
    """Return log P(continuation | prefix + suffix) summed over tokens, shape (len(suffixes), len(conts)).

    At most `batch_size` suffixes and `max_batch_tokens` suffix tokens (rows x padded width) per batch; wider
    batches run `prefill_chunk` columns at a time."""
    device = next(model.parameters()).device
    keep_last = keeps_logits(model)
    n_cont = len(continuations)
    if any(len(c) == 0 for c in continuations):
        raise ValueError("every continuation needs at least one token")
    scores = np.zeros((len(suffixes), n_cont), dtype=np.float64)
    p_len = len(prefix)
    prefix_logits, prefix_cache = _prefix_state(model, cache_kw, prefix, device,
                                                max(1, min(prefill_chunk, max_batch_tokens)), keep_last)
    # Longest first: similar lengths share a batch (dynamic padding), and memory peaks early.
    order = sorted(range(len(suffixes)), key=lambda i: -len(suffixes[i]))
    cont_len = max(len(c) for c in continuations)
    first = torch.tensor([c[0] for c in continuations], device=device)
    for group in token_batches([len(suffixes[i]) for i in order], batch_size, max_batch_tokens):
        idx = [order[g] for g in group]
        b = len(idx)
        ids, smask = _left_padded([suffixes[i] for i in idx], pad_id, device)
        width = ids.shape[1]
        mask = torch.cat([torch.ones((b, p_len), dtype=torch.long, device=device), smask], dim=1)
        cache = None
        if prefix_cache is not None:
            cache = copy.deepcopy(prefix_cache)
            cache.batch_repeat_interleave(b)
        if width:
            pos = (p_len + smask.cumsum(1) - 1).clamp(min=p_len)
            chunk = max(1, min(width, prefill_chunk, max_batch_tokens // b))
            last, cache = _prefill(model, cache_kw, ids, mask, pos, cache, chunk, keep_last)
            # An empty suffix (possible only with a prefix) predicts from the prefix's last position.
            if prefix_logits is not None:
                empty = smask.sum(1) == 0
                last = torch.where(empty[:, None], prefix_logits.expand(b, -1), last)
            next_pos = p_len + smask.sum(1)
        else:
            last = prefix_logits.expand(b, -1)
            next_pos = torch.full((b,), p_len, device=device)
        logp_first = torch.log_softmax(last.float(), dim=-1)[:, first]  # (b, n_cont)
        total = logp_first.clone()
        if cont_len > 1:
            total += _packed_continuations(model, cache_kw, cache, mask, next_pos, continuations)
        scores[idx] = total.double().cpu().numpy()
        if on_batch:
            on_batch(b)
    return scores


def _left_padded(rows: Sequence[Sequence[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask) of shape (len(rows), longest row): each row right-aligned, padding on the left."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros((len(rows), width), dtype=torch.long, device=device)
    for r, row in enumerate(rows):
        if row:
            ids[r, width - len(row):] = torch.tensor(list(row))
            mask[r, width - len(row):] = 1
    return ids, mask


def _packed_continuations(model, cache_kw, cache, past_mask, next_pos, continuations) -> torch.Tensor:
    """Score tokens 2..n of every continuation in ONE packed row per example.

    All continuations sit side by side after the prompt; a 4D mask lets each attend to the prompt and
    to its own earlier tokens only, and position ids restart for each, so the result equals separate
    passes without copying the prompt's KV cache once per label.
    """
    device = past_mask.device
    b, past = past_mask.shape
    ids, seg, offset = [], [], []
    for j, c in enumerate(continuations):
        ids += list(c[:-1])
        seg += [j] * (len(c) - 1)
        offset += list(range(len(c) - 1))
    t = len(ids)
    seg_t = torch.tensor(seg, device=device)
    causal = torch.tril(torch.ones((t, t), dtype=torch.bool, device=device)) & (seg_t[:, None] == seg_t[None])
    allow = torch.cat([past_mask.bool()[:, None, :].expand(b, t, past), causal.expand(b, t, t)], dim=2)
    pos = next_pos[:, None] + torch.tensor(offset, device=device)[None]
    logits, _ = _forward(model, cache_kw, input_ids=torch.tensor([ids] * b, device=device),
                         attention_mask=allow[:, None], position_ids=pos, cache=cache)
    logp = torch.log_softmax(logits.float(), dim=-1)
    out = torch.zeros((b, len(continuations)), device=device)
    start = 0
    for j, c in enumerate(continuations):
        n = len(c) - 1
        if n:
            target = torch.tensor(c[1:], device=device).expand(b, -1)[..., None]
            out[:, j] = logp[:, start:start + n].gather(-1, target).squeeze(-1).sum(-1)
        start += n
    return out


@torch.no_grad()
def score_continuations_naive(model, prefix, suffixes, continuations) -> np.ndarray:
    """Reference implementation: one full forward pass per (suffix, continuation)."""
    device = next(model.parameters()).device
    out = np.zeros((len(suffixes), len(continuations)))
    for i, s in enumerate(suffixes):
        for j, c in enumerate(continuations):
            ids = list(prefix) + list(s) + list(c)
            logits = model(input_ids=torch.tensor([ids], device=device)).logits[0].float()
            logp = torch.log_softmax(logits, dim=-1)
            start = len(prefix) + len(s)
            out[i, j] = sum(float(logp[start + k - 1, tok]) for k, tok in enumerate(c))
    return out
