"""What `tunewise serve` serves: the strategies of one run, rebuilt from its folder, over ONE copy of the
base model.

Each finished strategy becomes a model named by its id. Every PEFT adapter (strategies/<id>/adapter in
PEFT format: LoRA, DoRA, IA3, prefix, prompt and P-tuning) is attached to the shared base weights
(`serve/adapters.py`) and switched on per request; prompting strategies run on the same weights with the
adapters switched off; other artifacts (encoder classifiers, whole models) come from the run API
(`Run.predictor`: the strategy's saved fit, reloaded). The base model itself and the `ft:` models trained
by the jobs endpoints are served as raw language models (chat templates, sampling, log-probabilities).
All model work runs on one thread (`ModelWorker`), which serialises adapter switches and batches
concurrent requests (plain LoRA fine-tunes share one generation batch: peft's mixed-batch inference).
Nothing here parses a config or loads a model: the run API does.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunewise.backends.context import token_batches
from tunewise.data import Example
from tunewise.errors import UserError
from tunewise.foundation import base_id  # the name the base model is served under
from tunewise.serve import lm
from tunewise.serve.adapters import Adapter, SharedAdapters, peft_type
from tunewise.serve.errors import not_found
from tunewise.serve.worker import ModelWorker


@dataclass
class Entry:
    id: str
    kind: str  # "strategy" | "base" | "fine-tune"
    predictor: Any = None  # strategies: the fitted predictor
    backend: Any = None  # base and fine-tune: the local causal backend used as a raw language model
    generator: Any = None  # the backend its generation runs on under --engine (serve/engines.py); None: backend
    engine: Any = None  # an engine outside this process (serve/llamacpp.py) for the requests it handles; or None
    adapter: Adapter | None = None  # adapter to switch on over the shared base; None: adapters off
    labels: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    created: int = field(default_factory=lambda: int(time.time()))

    def card(self) -> dict[str, Any]:
        return {"id": self.id, "object": "model", "created": self.created, "owned_by": "tunewise",
                "tunewise": {"kind": self.kind, **self.info, **({"labels": self.labels} if self.labels else {})}}


class ModelHub:
    def __init__(self, run_dir: str | Path, strategies: list[str] | None = None, device: str = "auto",
                 log=print, engine: str = "transformers", gguf: str | None = None, threads: int | None = None):
        from tunewise.runs import Run
        from tunewise.serve.engines import check_engine, external_engine, generation_backend, gguf_for

        check_engine(engine)  # a wrong name fails before any model loads
        self.external = None  # the llamacpp engine's server process, stopped by close()
        self._pool: ThreadPoolExecutor | None = None  # threads waiting on the external engine (`_outside`)
        # the run API resolves the config, loads the task and the backends, and rebuilds each predictor
        self.run = Run.open(run_dir, device=device, announce=False)
        try:
            results = {r["strategy"]: r for r in self.run.store.results(self.run.id)}
            self.run_dir, self.run_id, self.log = Path(run_dir), self.run.id, log
            # Served strategies cut a too-long input and say so in its trace; each request then decides
            # (`truncation`): a 400 context_length_exceeded, or the answer on the cut input (serve/errors.py).
            self.config = self.run.config
            self.task = dataclasses.replace(self.run.task(), long_inputs="truncate")
            selected = [self.run.cell(c.id) for c in self._select(strategies, results)]
            kinds = {cell.id: self.run.backend_kind(cell) for cell in selected}  # as the store recorded it
        finally:
            self.run.close()
        self.worker = ModelWorker()
        self.entries: dict[str, Entry] = {}
        self.aliases: dict[str, str] = {}
        self.adapters: SharedAdapters | None = None  # created over the base weights by the first adapter
        self.causal = self.encoder = None
        if "causal" in kinds.values() or strategies is None:
            self.causal = self.run.backend("causal")
        if "encoder" in kinds.values():
            self.encoder = self.run.backend("encoder")
        self.base_id = base_id(self.config.model)
        if self.local:
            gguf = gguf_for(engine, self.config.model, gguf)
            generator = generation_backend(self.causal, engine)
            self.external = external_engine(engine, gguf, threads)
            self.entries[self.base_id] = Entry(self.base_id, "base", backend=self.causal, generator=generator,
                                               engine=self.external,
                                               info={"model": self.config.model, "engine": engine,
                                                     **({"gguf": Path(gguf).name} if gguf else {})})
            self.aliases[self.config.model] = self.base_id
            # HF fast tokenizers mutate their padding state per call: one thread, one tokenizer. The model
            # thread keeps the backend's; requests count tokens on the event loop with this copy.
            self._counter = copy.deepcopy(self.causal.tokenizer)
        elif engine != "transformers" and self.causal is not None:
            check_engine(engine, self.causal)  # says why this run's model cannot take it
        elif engine != "transformers":
            raise UserError(f"--engine {engine}: the served strategies have no base language model to generate "
                            "with; use --engine transformers")
        for cell in selected:
            self._add_strategy(cell, results[cell.id], kinds[cell.id])

    @property
    def local(self) -> bool:
        return self.causal is not None and self.causal.capabilities.local_weights

    def _select(self, wanted: list[str] | None, results: dict[str, dict]) -> list:
        configs = {c.id: c for c in self.config.strategies}
        if wanted is None:
            skipped = [sid for sid in configs if results.get(sid, {}).get("status") != "done"]
            if skipped:
                self.log(f"not serving unfinished strategies: {', '.join(skipped)}")
            return [c for sid, c in configs.items() if sid not in skipped]
        for sid in wanted:
            if sid not in configs:
                raise UserError(f"--strategy {sid}: run {self.run_id} has no such strategy "
                                f"(strategies: {', '.join(configs)})")
            status = results.get(sid, {}).get("status", "not started")
            if status != "done":
                raise UserError(f"--strategy {sid}: it is '{status}' in run {self.run_id}; finish it first with "
                                f"`tunewise run --resume {self.run_dir}`")
        return [configs[sid] for sid in wanted]

    def _add_strategy(self, cell, result: dict[str, Any], kind: str) -> None:
        art = self.run_dir / "strategies" / cell.id
        info = {"strategy": result["name"], "family": result["family"], "task_kind": self.task.kind}
        labels = list(self.task.labels) if self.task.is_classification else []
        if self.local and kind == "causal" and peft_type(art / "adapter"):
            adapter = self._attach(cell.id, art / "adapter")
            predictor = self._over(self.run.strategy(cell.strategy), adapter.model)
            info["peft_type"] = adapter.kind
            self.entries[cell.id] = Entry(cell.id, "strategy", predictor, adapter=adapter, labels=labels, info=info)
            return
        with self._active(None):
            predictor = self.run.predictor(cell, self.task)  # its saved fit; prompting strategies are fitted again
        if predictor is None:
            self.log(f"not serving {cell.id}: no saved artifact in {art}")
            return
        self.entries[cell.id] = Entry(cell.id, "strategy", predictor, labels=labels, info=info)

    def _attach(self, model_id: str, path: Path) -> Adapter:
        """Attach a saved PEFT adapter to the shared base weights (no copy of them)."""
        if self.adapters is None:
            self.adapters = SharedAdapters(self.causal.model)
        return self.adapters.attach(model_id, path)

    def _over(self, strategy, model):
        """The strategy's own predictor over `model` (its prompt, answer length and scoring wrapper)."""
        from tunewise.strategies.base import stored_labels
        from tunewise.strategies.finetuning._peft import peft_predictor

        over = getattr(strategy, "predictor_over", None)  # PEFT strategies and sft say how they predict
        named = self.task.named()  # trained on label names: it scores names, answers in stored labels
        return stored_labels(over(self.causal, named, model) if over else peft_predictor(self.causal, named, model),
                             self.task)

    def add_finetuned(self, model_id: str, path: Path) -> None:
        """Serve an adapter trained by a fine-tuning job as `model_id` (called from the jobs thread)."""
        def attach() -> None:
            adapter = self._attach(model_id, path)
            self.entries[model_id] = Entry(model_id, "fine-tune", backend=self.causal.with_model(adapter.model),
                                           adapter=adapter, info={"base": self.base_id})

        self.worker.call(attach).result()

    # --- lookup -----------------------------------------------------------------------------------
    def entry(self, model: str) -> Entry:
        found = self.entries.get(self.aliases.get(model, model))
        if found is None:
            raise not_found(model, list(self.entries))
        return found

    def count(self, text: str) -> int:
        """Tokens of a raw model's prompt (event-loop thread)."""
        return len(self._counter(text, add_special_tokens=False, verbose=False)["input_ids"])

    @property
    def counter(self):
        """The event loop's own tokenizer copy (to count and cut prompts there)."""
        return self._counter

    def private_backend(self):
        """The base backend with its own tokenizer copy, for another thread (the fine-tuning jobs)."""
        other = copy.copy(self.causal)
        other.tokenizer = copy.deepcopy(self.causal.tokenizer)
        return other

    def cards(self) -> list[dict[str, Any]]:
        return [e.card() for e in self.entries.values()]

    # --- operations on the model thread -------------------------------------------------------------
    def _active(self, entry: Entry | None):
        """A context with the entry's adapter switched on over the shared base (all others off)."""
        if self.adapters is None:
            return nullcontext()
        return self.adapters.using(entry.adapter.name if entry is not None and entry.adapter else None)

    def memory_bytes(self) -> int:
        """Bytes of the distinct weight tensors the served models hold (shared ones counted once)."""
        from tunewise.serve.adapters import tensor_bytes

        holders = [e.backend if e.backend is not None else e.predictor for e in self.entries.values()]
        modules = [m for m in (getattr(h, "model", None) for h in holders) if m is not None]  # predictors' models
        return tensor_bytes(modules + (list(self.adapters.modules()) if self.adapters else []))

    def predict(self, entry: Entry, texts: list[str]) -> Future:
        """The strategy's predictions for each input text (requests for one strategy are batched)."""
        def run(batches: list[list[str]]) -> list[list[Any]]:
            examples = [Example(id=str(i), input=t, target="") for i, t in enumerate(sum(batches, []))]
            with self._active(entry):
                preds = entry.predictor.predict(examples)
            out, start = [], 0
            for texts_ in batches:
                out.append(preds[start:start + len(texts_)])
                start += len(texts_)
            return out

        return self.worker.submit(("predict", entry.id), run, texts)

    def close(self) -> None:
        """Stop what runs outside this process (the llamacpp engine's server)."""
        if self.external is not None:
            self.external.close()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    @property
    def _outside(self) -> ThreadPoolExecutor:
        """Threads that wait on the external engine (it queues requests itself), off the model thread."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="tunewise-engine")
        return self._pool

    def generate(self, entry: Entry, prompt: str, params: lm.Params) -> Future:
        """Raw generation; requests for plain LoRA fine-tunes with equal params share one batch, each row with
        its own adapter (peft's mixed-batch inference); other models batch per model. The base model's requests
        that an external engine handles go there, off the model thread."""
        if entry.engine is not None and entry.engine.handles(params):
            return self._outside.submit(lambda: entry.engine.generate([prompt], params)[0])
        mixed = entry.adapter is not None and entry.adapter.mixable

        def run(items: list[tuple[Entry, str]]) -> list[list[lm.Choice]]:
            backend, prompts = items[0][0].generator or items[0][0].backend, [p for _, p in items]
            # Requests queued together run in groups bounded by tokens, not only by count: one long prompt
            # does not multiply the padded width of all the others (backends/context.py).
            lengths = [backend.count_tokens(p) for p in prompts]  # this thread's tokenizer
            rows = params.n if params.temperature > 0 else 1  # sampled choices are rows of their own
            out: list[list[lm.Choice]] = []
            for group in token_batches(lengths, len(prompts), backend.max_batch_tokens, params.n):
                names = [items[i][0].adapter.name if items[i][0].adapter else None for i in group]
                with (self.adapters.mixed_rows([n for n in names for _ in range(rows)]) if mixed
                      else self._active(items[0][0])):
                    out += lm.generate(backend, [prompts[i] for i in group], params)
            return out

        key = ("generate", "lora-mixed" if mixed else entry.id, params)
        return self.worker.submit(key, run, (entry, prompt))

    def echo(self, entry: Entry, prompt: str, k: int) -> Future:
        def run() -> dict[str, Any]:
            with self._active(entry):
                return lm.prompt_logprobs(entry.backend, prompt, k)

        return self.worker.call(run)

    def stream(self, entry: Entry, prompt: str, params: lm.Params, streamer) -> Future:
        """A streamed generation; the future gets its completion tokens. On the model thread it decodes
        `lm.STREAM_SLICE` tokens per turn and then queues again behind what arrived meanwhile, so concurrent
        streams and requests interleave instead of waiting for a whole reply. A grammar constraint or a
        prompt-learning adapter (its virtual tokens are not in a resumable cache) decodes in one turn.
        The base model's streams that an external engine handles go there."""
        if entry.engine is not None and entry.engine.handles(params):
            return self._outside.submit(entry.engine.stream, prompt, params, streamer)
        whole = params.constraint is not None or (entry.adapter is not None and entry.adapter.prompt_learning)
        job = lm.Stream(entry.generator or entry.backend, prompt, params, streamer,
                        slice=None if whole else lm.STREAM_SLICE)
        done: Future = Future()

        def turn() -> bool:
            with self._active(entry):
                return job.step()

        def after(slice_: Future) -> None:
            if slice_.exception() is not None:
                job.close()
                done.set_exception(slice_.exception())
            elif slice_.result():
                done.set_result(job.tokens)
            else:
                self.worker.call(turn).add_done_callback(after)

        self.worker.call(turn).add_done_callback(after)
        return done
