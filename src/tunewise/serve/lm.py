"""Raw language-model operations of the server on a local causal model: batched generation with
per-token log-probabilities (top alternatives included), prompt log-probabilities (`echo`, so clients
can score continuations as with vLLM), and token streaming a slice at a time (`Stream`)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch

from tunewise.backends.context import PREFILL_CHUNK
from tunewise.backends.scoring import cache_kwarg

GREEDY_BELOW = 1e-4  # a sampling temperature below this decodes greedily, as its distribution all but is
STREAM_SLICE = 16  # tokens a stream decodes per turn on the model thread before queued requests run theirs


@dataclass(frozen=True)
class Params:
    """What decides a generation; requests with equal Params on one model are batched together."""

    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    n: int = 1
    logprobs: int | None = None  # None: no log-probabilities; k: the k most likely alternatives too
    seed: int | None = None
    constraint: Any = None  # a backends.constrained.Constraint the output must match (hashable, so it batches)

    def __post_init__(self) -> None:
        if 0 < self.temperature < GREEDY_BELOW:  # logits divided by it overflow: NaN probabilities, a crash
            object.__setattr__(self, "temperature", 0.0)


@dataclass
class Choice:
    text: str
    tokens: int
    finish_reason: str
    logprobs: list[dict[str, Any]] | None = None  # [{token, logprob, top: [(token, logprob), ...]}]


def _eos_ids(backend) -> set[int]:
    ids = backend.model.generation_config.eos_token_id if hasattr(backend.model, "generation_config") else None
    out = set(ids if isinstance(ids, list) else [ids] if ids is not None else [])
    for t in (backend.tokenizer.eos_token_id, backend.tokenizer.pad_token_id):
        if t is not None:
            out.add(t)
    return out


def _kwargs(backend, p: Params) -> dict[str, Any]:
    tok = backend.tokenizer
    sampling = p.temperature > 0
    kw: dict[str, Any] = {"max_new_tokens": p.max_tokens, "pad_token_id": tok.pad_token_id,
                          "do_sample": sampling}
    if sampling:
        kw.update(temperature=p.temperature, top_p=p.top_p, num_return_sequences=p.n)
    stops = [s for s in p.stop if s]
    if stops:
        kw.update(stop_strings=stops, tokenizer=tok)
    if p.constraint is not None:
        from tunewise.backends.constrained import logits_processor

        kw["logits_processor"] = [logits_processor(backend.model, tok, p.constraint)]
    kw["prefill_chunk_size"] = PREFILL_CHUNK  # a long prompt is prefilled a chunk at a time (backends/context.py)
    return kw


def _top(logp: torch.Tensor, chosen: int, k: int, decode) -> dict[str, Any]:
    entry = {"token": decode(chosen), "logprob": float(logp[chosen]), "top": []}
    if k:
        values, ids = torch.topk(logp, k)
        entry["top"] = [(decode(int(i)), float(v)) for v, i in zip(values, ids, strict=True)]
    return entry


@torch.no_grad()
def generate(backend, prompts: list[str], p: Params) -> list[list[Choice]]:
    """p.n choices per prompt (greedy ones repeated); text cut at the first stop string."""
    if p.max_tokens == 0:
        return [[Choice("", 0, "length") for _ in range(p.n)] for _ in prompts]
    tok, model = backend.tokenizer, backend.model
    device = next(model.parameters()).device
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False, padding_side="left").to(device)
    if p.seed is not None:
        torch.manual_seed(p.seed)
    out = model.generate(**enc, **_kwargs(backend, p), output_logits=p.logprobs is not None,
                         return_dict_in_generate=True)
    rows = out.sequences[:, enc["input_ids"].shape[1]:]
    per_prompt = p.n if p.temperature > 0 else 1
    eos = _eos_ids(backend)

    def decode(i: int) -> str:
        return tok.decode([i], skip_special_tokens=False)

    results = []
    for i in range(len(prompts)):
        choices = []
        for r in range(i * per_prompt, (i + 1) * per_prompt):
            ids = [int(t) for t in rows[r]]
            end = next((j for j, t in enumerate(ids) if t in eos), None)
            kept = ids[:end] if end is not None else ids
            text = tok.decode(kept, skip_special_tokens=True)
            cut = min([text.find(s) for s in p.stop if s and s in text], default=-1)
            finish = "stop" if end is not None or cut >= 0 else ("length" if len(ids) >= p.max_tokens else "stop")
            text = text[:cut] if cut >= 0 else text
            logprobs = None
            if p.logprobs is not None:
                logprobs, used = [], 0
                steps = kept if kept else ids[:1]  # a reply that ends at once still shows its alternatives
                for t, token in enumerate(steps):
                    if kept and used >= len(text):
                        break
                    logp = torch.log_softmax(out.logits[t][r].float(), dim=-1)
                    logprobs.append(_top(logp, token, p.logprobs, decode))
                    used += len(logprobs[-1]["token"])
            choices.append(Choice(text, len(kept), finish, logprobs))
        results.append(choices * (p.n // per_prompt))
    return results


@torch.no_grad()
def prompt_logprobs(backend, prompt: str, k: int) -> dict[str, Any]:
    """Legacy-completions logprobs of the prompt itself: tokens, token_logprobs (None for the first),
    top_logprobs and character text_offset, as OpenAI's `echo` returns them."""
    tok, model = backend.tokenizer, backend.model
    enc = tok(prompt, add_special_tokens=False, return_offsets_mapping=True)
    ids, spans = enc["input_ids"], enc["offset_mapping"]
    if not ids:
        return {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
    device = next(model.parameters()).device
    tokens = [prompt[s:e] for s, e in spans]
    out = {"tokens": tokens, "token_logprobs": [None], "top_logprobs": [None], "text_offset": [s for s, _ in spans]}
    cache, cache_kw = None, cache_kwarg(model)
    for start in range(0, len(ids), PREFILL_CHUNK):  # a chunk at a time: logits are chunk x vocabulary
        end = min(start + PREFILL_CHUNK, len(ids))
        o = model(input_ids=torch.tensor([ids[start:end]], device=device), use_cache=True,
                  **{cache_kw: cache})
        cache = o.get("cache") if "cache" in o else o.get("past_key_values")
        logp = torch.log_softmax(o.logits[0].float(), dim=-1)
        for i in range(start + 1, min(end + 1, len(ids))):  # token i is predicted at position i - 1
            row = logp[i - 1 - start]
            out["token_logprobs"].append(float(row[ids[i]]))
            if k:
                values, top = torch.topk(row, k)
                out["top_logprobs"].append({tok.decode([int(t)]): float(v) for v, t in zip(values, top, strict=True)})
            else:
                out["top_logprobs"].append(None)
    return out


class _Relay:
    """What `generate()` streams into: new tokens go on to the client's streamer. The first call's echo of the
    prompt goes too (the streamer skips it itself, `skip_prompt`); a resumed call's echo of its input and each
    call's `end()` stay here, so the slices read as one stream."""

    def __init__(self, streamer):
        self.streamer, self._calls, self._echo = streamer, 0, True

    def put(self, value) -> None:
        if self._echo:
            self._echo = False
            if self._calls:
                return
        self.streamer.put(value)

    def end(self) -> None:
        self._calls, self._echo = self._calls + 1, True


@dataclass
class Stream:
    """One streamed generation decoded `slice` tokens per `step()` (None: all in one step), resuming from its
    own KV cache (transformers' `generate(past_key_values=...)`), so other requests and streams run on the
    model thread between its slices. Greedy output equals one `generate()` call; a seeded sampled stream keeps
    its own RNG state across slices. Tokens go to `streamer` (a TextIteratorStreamer) as they are made;
    `streamer.end()` is called when the stream finishes (`close`)."""

    backend: Any
    prompt: str
    params: Params
    streamer: Any
    slice: int | None = STREAM_SLICE
    finished: bool = False
    _ids: Any = None
    _cache: Any = None
    _rng: Any = None
    _new: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._relay = _Relay(self.streamer)

    @property
    def tokens(self) -> int:
        """Completion tokens so far."""
        return len(self._new)

    @torch.no_grad()
    def step(self) -> bool:
        """Decode the next slice; True when the stream is finished (end of text, a stop string, max_tokens)."""
        tok, model, p = self.backend.tokenizer, self.backend.model, self.params
        if self._ids is None:
            device = next(model.parameters()).device
            self._ids = tok([self.prompt], return_tensors="pt", add_special_tokens=False)["input_ids"].to(device)
            if p.seed is not None:
                torch.manual_seed(p.seed)
        elif self._rng is not None:
            torch.set_rng_state(self._rng)
        left = p.max_tokens - len(self._new)
        want = left if self.slice is None else min(self.slice, left)
        if want <= 0:
            return self.close()
        kw = _kwargs(self.backend, replace(p, n=1, logprobs=None, max_tokens=want))
        out = model.generate(input_ids=self._ids, attention_mask=torch.ones_like(self._ids), cache=self._cache,
                             streamer=self._relay, return_dict_in_generate=True, **kw)
        self._rng = torch.get_rng_state() if p.temperature > 0 else None
        got = [int(t) for t in out.sequences[0, self._ids.shape[1]:]]
        self._ids, self._cache = out.sequences, out.get("cache")
        eos = _eos_ids(self.backend)
        end = next((j for j, t in enumerate(got) if t in eos), None)
        self._new += got[:end] if end is not None else got
        text = tok.decode(self._new, skip_special_tokens=True) if p.stop else ""
        if end is not None or len(got) < want or len(self._new) >= p.max_tokens or any(
                s and s in text for s in p.stop):
            return self.close()
        return False

    def close(self) -> bool:
        """Finish: the client's streamer ends, the KV cache is let go. Returns True."""
        if not self.finished:
            self.finished, self._cache = True, None
            self.streamer.end()
        return True

