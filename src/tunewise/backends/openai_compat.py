"""Any OpenAI-compatible model (OpenAI, Azure, vLLM, llama.cpp server, Ollama, `tunewise serve`) as a
causal backend, through the official `openai` SDK with `base_url`.

It offers the methods prompting strategies call on a local causal model. Chat models get prompts as
message lines (see `_api_text`); classification scores labels from the log-probabilities of the answer's
first token (chat) or of the whole label continuation via /v1/completions echo + logprobs (completion
mode); without log-probabilities, strategies generate and the answer is parsed onto the label set.
Requests run in a thread pool (`concurrency`), retry with exponential backoff in the SDK (`max_retries`),
and go through a persistent cache, so a re-run or resume never pays twice. Token counts come from the
responses' `usage`; what is not measured is estimated (see `token_counter`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from tunewise.backends import _api_text as txt
from tunewise.backends._api_cache import ResponseCache, request_key
from tunewise.backends._api_settings import PREFIX, ApiSettings, cache_folder, parse_model_name, read_key
from tunewise.backends.base import Capabilities, CausalBackend
from tunewise.errors import CapabilityError, UserError

if TYPE_CHECKING:
    from tunewise.backends.constrained import Constraint

OPENAI_URL = "https://api.openai.com/v1"


class ApiRequestError(RuntimeError):
    """The server rejected a request (400/422): a parameter it does not support, a prompt too long, ..."""


class OpenAIBackend(CausalBackend):
    """No local weights (`model` is None); `with_model(name)` switches to another model of the same server."""

    def __init__(self, remote: str, settings: ApiSettings, client=None, cache: ResponseCache | None = None):
        self.remote, self.settings = remote, settings
        self.name = PREFIX + remote
        self.base_url = (settings.base_url or OPENAI_URL).rstrip("/")
        self.client = client or self._client()
        self.cache = cache if cache is not None else ResponseCache(cache_folder(settings))
        self.token_counter = txt.token_counter()
        self.requests = 0  # requests sent (cache misses), for tests and the report
        self._lock = threading.Lock()
        self._usage: dict[str, int] = {}  # prompt text -> prompt tokens the server counted
        self._pool = ThreadPoolExecutor(settings.concurrency, thread_name_prefix="tunewise-api")
        chat = settings.mode == "chat"
        logprobs = self._probe() if settings.logprobs == "auto" else settings.logprobs
        self.capabilities = Capabilities(kind="causal", can_train=False, supports_logprobs=logprobs,
                                         needs_key=True, finetune_api=True, constrained_output=chat)
        self._eot, self._answer = ("", "") if chat else ("\n", " ")

    @property
    def context_window(self) -> int | None:
        """The declared context (`context_window` setting), read by backends/context.py; None when unknown."""
        return self.settings.context_window

    @classmethod
    def from_name(cls, name: str) -> OpenAIBackend:
        remote, settings = parse_model_name(name)
        return cls(remote, settings)

    def _client(self):
        try:
            import openai
        except ImportError:
            raise UserError("the openai backend needs the `openai` package: pip install 'tunewise[api]'") from None
        return openai.OpenAI(api_key=read_key(self.settings, self.remote), base_url=self.settings.base_url,
                             max_retries=self.settings.max_retries, timeout=self.settings.timeout)

    def with_model_name(self, remote: str) -> OpenAIBackend:
        """The same server, key, cache and settings for another model (e.g. a fine-tuned `ft:` one)."""
        return OpenAIBackend(remote, self.settings, client=self.client, cache=self.cache)

    def with_model(self, model) -> OpenAIBackend:
        if not isinstance(model, str):
            raise CapabilityError(f"'{self.name}' is an API model; it cannot run local weights")
        return self.with_model_name(model)

    def fresh_model(self):
        raise CapabilityError(f"'{self.name}' is an API model: its weights cannot be trained here; use the "
                              "openai-finetune strategy to fine-tune it through the provider")

    # --- requests -------------------------------------------------------------------------------
    def call(self, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        """One request through the cache; SDK errors become one-line UserErrors or ApiRequestError."""
        key = request_key(self.base_url, endpoint, body)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        create = self.client.chat.completions.create if endpoint == "chat" else self.client.completions.create
        try:
            with self.sdk_errors():
                data = create(**body).model_dump(mode="json")
        finally:
            with self._lock:
                self.requests += 1
        self.cache.put(key, endpoint, self.remote, data)
        return data

    @contextmanager
    def sdk_errors(self, what: str = "") -> Iterator[None]:
        """Turn the SDK's exceptions (after its retries) into one line that says what to do."""
        import openai

        where = what or f"model '{self.name}' at {self.base_url}"
        try:
            yield
        except (openai.AuthenticationError, openai.PermissionDeniedError) as err:
            # The server's message may quote part of the key: never pass it on.
            raise UserError(f"{where}: the server refused the key in ${self.settings.api_key_env} "
                            f"({err.status_code}); check it") from None
        except openai.NotFoundError as err:
            raise UserError(f"{where}: not found (404: {_message(err)}); check the name and base_url") from None
        except openai.RateLimitError:
            raise UserError(f"{where}: still rate-limited after {self.settings.max_retries} retries; lower "
                            "concurrency or raise max_retries, then continue with `tunewise run --resume`") from None
        except openai.APIConnectionError as err:
            raise UserError(f"{where}: no answer after {self.settings.max_retries} retries "
                            f"({type(err).__name__}); is the server up? then `tunewise run --resume`") from None
        except (openai.BadRequestError, openai.UnprocessableEntityError) as err:
            if txt.context_exceeded(getattr(err, "body", None), _message(err)):
                raise UserError(f"{where}: a prompt is longer than the model's context (server: {_message(err)}); "
                                "declare the context with ?context_window=N on the model name so long inputs are "
                                "cut by task.long_inputs, or set task.max_input_tokens") from None
            raise ApiRequestError(f"{where}: request rejected ({err.status_code}): {_message(err)}") from None

    def _map(self, fn: Callable[[Any], Any], items: Sequence[Any], on_batch: Callable[[int], None] | None):
        futures = {self._pool.submit(fn, item): i for i, item in enumerate(items)}
        out: list[Any] = [None] * len(items)
        try:
            for future in as_completed(futures):
                out[futures[future]] = future.result()
                if on_batch:
                    on_batch(1)
        except BaseException:
            for future in futures:
                future.cancel()
            raise
        return out

    def _remember(self, prompt: str, used: int | None) -> None:
        if used and len(self._usage) < 1_000_000:
            self._usage[prompt] = int(used)

    def _probe(self) -> bool:
        """Ask once (cached) whether the server returns log-probabilities for this model."""
        try:
            if self.settings.mode == "chat":
                r = self.call("chat", self._chat_body([{"role": "user", "content": "Say yes."}], 1, 0.0,
                                                      logprobs=True, top_logprobs=2))
                return bool((r["choices"][0].get("logprobs") or {}).get("content"))
            r = self.call("completion", {"model": self.remote, "prompt": "Hello world", "max_tokens": 1,
                                         "temperature": 0, "echo": True, "logprobs": 1})
            return bool((r["choices"][0].get("logprobs") or {}).get("token_logprobs"))
        except (ApiRequestError, IndexError, KeyError, TypeError):
            return False

    def _chat_body(self, messages, max_tokens: int, temperature: float, **extra) -> dict[str, Any]:
        # OpenAI's newer models refuse `max_tokens`; most other servers only know it.
        limit = "max_completion_tokens" if self.settings.base_url is None else "max_tokens"
        return {"model": self.remote, "messages": messages, limit: max_tokens, "temperature": temperature,
                **{k: v for k, v in extra.items() if v is not None}}

    # --- prompt formatting ------------------------------------------------------------------------
    def render(self, messages, add_generation_prompt: bool) -> str:
        if self.settings.mode == "chat":
            return txt.render_lines(messages)
        return txt.render_plain(messages, add_generation_prompt)

    def split_prompt(self, shared, query) -> tuple[str, str]:
        if self.settings.mode == "chat":
            return txt.render_lines(shared), txt.render_lines(query)
        head, full = self.render(shared, False), self.render(shared + query, True)
        return (head, full[len(head):]) if shared and full.startswith(head) else ("", full)

    def end_of_turn(self) -> str:
        return self._eot

    def answer_prefix(self) -> str:
        return self._answer

    def encode(self, text: str) -> list[int]:
        return txt.encode(text)

    def count_tokens(self, text: str) -> int:
        """Prompt tokens as the server counted them when it saw this prompt, else `token_counter`'s count."""
        return self._usage.get(text) or txt.count_text(text)

    # --- inference ----------------------------------------------------------------------------------
    def _messages(self, prompt: str):
        return txt.parse_lines(prompt) if txt.is_lines(prompt) or self.settings.mode == "chat" else None

    def _complete(self, prompt: str, max_new_tokens: int, temperature: float, stop: Sequence[str], n: int = 1,
                  top_p: float | None = None, seed: int | None = None, **chat: Any) -> list[tuple[str, int]]:
        stops = [s for s in stop if s][:4] or None
        if self.settings.mode == "chat":
            r = self.call("chat", self._chat_body(self._messages(prompt), max_new_tokens, temperature, stop=stops,
                                                  n=n if n > 1 else None, top_p=top_p, seed=seed, **chat))
            texts = [(c.get("message") or {}).get("content") or "" for c in r["choices"]]
        else:
            stops = list(dict.fromkeys((stops or []) + ["\n"]))[:4]
            body = {"model": self.remote, "prompt": prompt, "max_tokens": max_new_tokens, "temperature": temperature,
                    "stop": stops, "n": n if n > 1 else None, "top_p": top_p, "seed": seed}
            r = self.call("completion", {k: v for k, v in body.items() if v is not None})
            texts = [c.get("text") or "" for c in r["choices"]]
        usage = r.get("usage") or {}
        self._remember(prompt, usage.get("prompt_tokens"))
        estimates = [max(txt.count_text(t), 1) for t in texts]
        total = usage.get("completion_tokens") or sum(estimates)
        return [(t.strip(), max(1, round(total * e / sum(estimates)))) for t, e in zip(texts, estimates, strict=True)]

    def generate(self, prompts: Sequence[str], max_new_tokens: int = 64, stop: Sequence[str] = (),
                 batch_size: int = 8, on_batch: Callable[[int], None] | None = None,
                 constraint: Constraint | None = None) -> list[tuple[str, int]]:
        """Greedy answers; when the prompt lists the labels ('Answer with exactly one of: ...') and asks for
        no reasoning, the answer is parsed onto that label set (constrained parsing). A JSON `constraint` goes
        as response_format (chat mode only: CapabilityError otherwise)."""
        fmt = txt.response_format(constraint, self.name, chat=self.capabilities.constrained_output)
        def one(prompt: str) -> tuple[str, int]:
            text, n = self._complete(prompt, max_new_tokens, 0.0, stop, response_format=fmt)[0]
            messages = self._messages(prompt) if txt.is_lines(prompt) else None
            trailing = txt.is_lines(prompt) and not prompt.endswith("\n")
            labels = txt.labels_in_prompt(messages) if messages and not trailing else []
            return (txt.parse_label(text, labels) if labels else text), n

        return self._map(one, list(prompts), on_batch)

    def sample(self, prompts: Sequence[str], n: int = 1, temperature: float = 0.0, max_new_tokens: int = 64,
               stop: Sequence[str] = (), batch_size: int = 8, on_batch: Callable[[int], None] | None = None,
               top_p: float = 1.0) -> list[list[tuple[str, int]]]:
        """n completions per prompt in one request (servers that ignore `n` are topped up, one seed each)."""
        def one(prompt: str) -> list[tuple[str, int]]:
            outs = self._complete(prompt, max_new_tokens, temperature, stop, n=n, top_p=top_p)
            seed = 0
            while len(outs) < n:
                outs += self._complete(prompt, max_new_tokens, temperature, stop, top_p=top_p, seed=seed)
                seed += 1
            return outs[:n]

        return self._map(one, list(prompts), on_batch)

    def score(self, prefix: str, suffixes: Sequence[str], continuations: Sequence[str], batch_size: int = 16,
              on_batch: Callable[[int], None] | None = None) -> np.ndarray:
        """Label log-likelihoods, shape (suffixes, continuations)."""
        base = txt.count_text(prefix) if prefix else 0
        scorer = self._score_chat if self.settings.mode == "chat" else self._score_echo
        rows = self._map(lambda s: scorer(prefix, s, list(continuations), base), list(suffixes), on_batch)
        return np.array(rows, dtype=np.float64).reshape(len(suffixes), len(continuations))

    def _score_chat(self, prefix: str, suffix: str, labels: list[str], base: int) -> list[float]:
        messages = txt.parse_lines(prefix + suffix)
        r = self.call("chat", self._chat_body(messages, 1, 0.0, logprobs=True,
                                              top_logprobs=self.settings.top_logprobs))
        self._remember(suffix, ((r.get("usage") or {}).get("prompt_tokens") or 0) - base)
        content = ((r["choices"][0].get("logprobs") or {}).get("content")) or []
        top = [(t["token"], t["logprob"]) for t in (content[0].get("top_logprobs") or [])] if content else []
        row = txt.label_logprobs(top, labels) if top else None
        if row is None:  # the first token cannot tell the labels apart: answer and parse instead
            text, _ = self._complete(txt.render_lines(messages), 16, 0.0, ())[0]
            row = txt.one_hot_logprobs(txt.parse_label(text, labels), labels)
        return row

    def _score_echo(self, prefix: str, suffix: str, continuations: list[str], base: int) -> list[float]:
        context = prefix + suffix
        r = self.call("completion", {"model": self.remote, "prompt": [context + c for c in continuations],
                                     "max_tokens": 1, "temperature": 0, "echo": True, "logprobs": 0})
        self._remember(suffix, ((r.get("usage") or {}).get("prompt_tokens") or 0) // len(continuations) - base)
        by_index = {c.get("index", i): c for i, c in enumerate(r["choices"])}
        return [_continuation_logprob(by_index[j].get("logprobs") or {}, len(context), len(context + c))
                for j, c in enumerate(continuations)]


def _continuation_logprob(logprobs: dict[str, Any], start: int, end: int) -> float:
    """Sum of the echoed prompt's token log-probabilities from character `start` to `end` (a token that
    straddles `start` counts: it carries the continuation's first characters)."""
    tokens, values, offsets = logprobs.get("tokens") or [], logprobs.get("token_logprobs") or [], \
        logprobs.get("text_offset") or []
    if not offsets:
        raise ApiRequestError("the server's echo logprobs have no text_offset; use mode=chat")
    total = 0.0
    for token, value, offset in zip(tokens, values, offsets, strict=False):
        if offset < end and offset + len(token) > start and value is not None:
            total += value
    return total


def _message(err) -> str:
    body = getattr(err, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"]).splitlines()[0]
    return str(err).splitlines()[0]
