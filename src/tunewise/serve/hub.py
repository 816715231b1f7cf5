"""What `tunewise serve` serves: the strategies of one run, rebuilt from its folder, over ONE copy of the
base model.

Each finished strategy becomes a model named by its id. LoRA adapters (strategies/<id>/adapter in PEFT
format) are loaded into one PeftModel over the shared base weights (`load_adapter`) and switched per
request (`set_adapter`); prompting strategies run on the same weights with the adapters switched off;
other artifacts (encoder classifiers, whole models, prompt-learning adapters) come from the run API
(`Run.predictor`: the strategy's saved fit, reloaded). The base model itself and the `ft:` models trained
by the jobs endpoints are served as raw language models (chat templates, sampling, log-probabilities).
All model work runs on one thread (`ModelWorker`), which serialises adapter switches and batches
concurrent requests. Nothing here parses a config or loads a model: the run API does.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import time
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunewise.backends.context import token_batches
from tunewise.data import Example
from tunewise.errors import UserError
from tunewise.foundation import base_id  # the name the base model is served under
from tunewise.serve import lm
from tunewise.serve.errors import not_found
from tunewise.serve.worker import ModelWorker


@dataclass
class Entry:
    id: str
    kind: str  # "strategy" | "base" | "fine-tune"
    predictor: Any = None  # strategies: the fitted predictor
    backend: Any = None  # base and fine-tune: the local causal backend used as a raw language model
    adapter: str | None = None  # adapter to activate in the shared PeftModel; None: adapters off
    labels: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    created: int = field(default_factory=lambda: int(time.time()))

    def card(self) -> dict[str, Any]:
        return {"id": self.id, "object": "model", "created": self.created, "owned_by": "tunewise",
                "tunewise": {"kind": self.kind, **self.info, **({"labels": self.labels} if self.labels else {})}}


def _is_lora(path: Path) -> bool:
    config = path / "adapter_config.json"
    return config.is_file() and json.loads(config.read_text(encoding="utf-8")).get("peft_type") == "LORA"


class ModelHub:
    def __init__(self, run_dir: str | Path, strategies: list[str] | None = None, device: str = "auto",
                 log=print):
        from tunewise.runs import Run

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
        self.peft = None
        self.causal = self.encoder = None
        if "causal" in kinds.values() or strategies is None:
            self.causal = self.run.backend("causal")
        if "encoder" in kinds.values():
            self.encoder = self.run.backend("encoder")
        self.base_id = base_id(self.config.model)
        if self.local:
            self.entries[self.base_id] = Entry(self.base_id, "base", backend=self.causal,
                                               info={"model": self.config.model})
            self.aliases[self.config.model] = self.base_id
            # HF fast tokenizers mutate their padding state per call: one thread, one tokenizer. The model
            # thread keeps the backend's; requests count tokens on the event loop with this copy.
            self._counter = copy.deepcopy(self.causal.tokenizer)
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
        if self.local and kind == "causal" and _is_lora(art / "adapter"):
            name = self._attach(cell.id, art / "adapter")
            from tunewise.strategies.base import stored_labels
            from tunewise.strategies.finetuning._peft import peft_predictor

            # trained on label names: it scores names, answers in stored labels (strategies/base.py)
            predictor = stored_labels(peft_predictor(self.causal, self.task.named(), self.peft), self.task)
            self.entries[cell.id] = Entry(cell.id, "strategy", predictor, adapter=name, labels=labels, info=info)
            return
        with self._active(None):
            predictor = self.run.predictor(cell, self.task)  # its saved fit; prompting strategies are fitted again
        if predictor is None:
            self.log(f"not serving {cell.id}: no saved artifact in {art}")
            return
        self.entries[cell.id] = Entry(cell.id, "strategy", predictor, labels=labels, info=info)

    def _attach(self, model_id: str, path: Path) -> str:
        """Load a LoRA adapter into the shared PeftModel (created over the base weights by the first one)."""
        from peft import PeftModel

        name = re.sub(r"\W", "_", model_id)
        if self.peft is None:
            self.peft = PeftModel.from_pretrained(self.causal.model, path, adapter_name=name).eval()
        else:
            self.peft.load_adapter(path, adapter_name=name)
            self.peft.eval()
        self.peft.set_adapter(name)
        return name

    def add_finetuned(self, model_id: str, path: Path) -> None:
        """Serve an adapter trained by a fine-tuning job as `model_id` (called from the jobs thread)."""
        def attach() -> None:
            name = self._attach(model_id, path)
            self.entries[model_id] = Entry(model_id, "fine-tune", backend=self.causal.with_model(self.peft),
                                           adapter=name, info={"base": self.base_id})

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
    @contextmanager
    def _active(self, entry: Entry | None) -> Iterator[None]:
        if self.peft is None:
            yield
        elif entry is not None and entry.adapter:
            self.peft.set_adapter(entry.adapter)
            yield
        else:
            with self.peft.disable_adapter():
                yield

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

    def generate(self, entry: Entry, prompt: str, params: lm.Params) -> Future:
        def run(prompts: list[str]) -> list[list[lm.Choice]]:
            # Requests queued together run in groups bounded by tokens, not only by count: one long prompt
            # does not multiply the padded width of all the others (backends/context.py).
            lengths = [entry.backend.count_tokens(p) for p in prompts]  # this thread's tokenizer
            out: list[list[lm.Choice]] = []
            with self._active(entry):
                for group in token_batches(lengths, len(prompts), entry.backend.max_batch_tokens, params.n):
                    out += lm.generate(entry.backend, [prompts[i] for i in group], params)
            return out

        return self.worker.submit(("generate", entry.id, params), run, prompt)

    def echo(self, entry: Entry, prompt: str, k: int) -> Future:
        def run() -> dict[str, Any]:
            with self._active(entry):
                return lm.prompt_logprobs(entry.backend, prompt, k)

        return self.worker.call(run)

    def stream(self, entry: Entry, prompt: str, params: lm.Params, streamer) -> Future:
        def run() -> int:
            with self._active(entry):
                return lm.stream(entry.backend, prompt, params, streamer)

        return self.worker.call(run)
