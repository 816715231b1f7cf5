"""Every PEFT artifact of a run over ONE copy of the base weights, selected per request.

peft keeps one tuner per PeftModel and refuses to mix peft types in it (`PeftModel.add_adapter`), and its
`PeftMixedModel` takes LoRA-like types only (not IA3, not prompt learning). So the base module is shared
three ways (peft's multi-adapter API, https://huggingface.co/docs/peft/developer_guides/mixed_models):
- injection methods (LoRA, DoRA, IA3, ...): one PeftModel per peft type over the base module, each adapter
  of that type added with `load_adapter`. Their layers wrap the base Linear layers in place (an IA3 layer
  wraps a LoRA layer wraps the Linear), so every type runs on the same weight tensors; `activate` switches
  all tuner layers off except those of the wanted adapter (`enable_adapters` / `set_adapter`);
- prompt-learning methods (prefix, prompt, P-tuning): one PeftModel each over the same base module; it
  adds only its prompt encoder (the virtual tokens) and copies no base weight. It runs with every
  injected layer off.
- plain LoRA adapters (not DoRA) can share one forward: peft's mixed-batch inference (`adapter_names=`
  per row, "__base__" for none) through `mixed_rows`.

`tensor_bytes` measures what the process holds: bytes of the unique tensors (by `data_ptr`) reachable
from the served modules, so memory per adapter is measured without the noise of RSS.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BASE = "__base__"  # peft's name for "no adapter" in a mixed batch


def peft_type(path: Path) -> str | None:
    """The `peft_type` of a saved PEFT adapter folder (LORA, IA3, PREFIX_TUNING, ...), None if it is none."""
    config = Path(path) / "adapter_config.json"
    if not config.is_file():
        return None
    return json.loads(config.read_text(encoding="utf-8")).get("peft_type")


@dataclass
class Adapter:
    name: str  # peft adapter name (a Python identifier)
    kind: str  # its peft type
    model: Any  # the PeftModel it lives in (what the strategy's predictor runs on)
    prompt_learning: bool
    mixable: bool  # may share a forward with other mixable adapters (plain LoRA)


class SharedAdapters:
    """PEFT adapters over one base module (`base`: a transformers causal LM, modified in place: peft wraps
    its Linear layers). Not thread-safe: the server calls it from its one model thread only."""

    def __init__(self, base):
        self.base = base
        self.by_type: dict[str, Any] = {}  # peft type -> the PeftModel of the injection method
        self.adapters: dict[str, Adapter] = {}
        self.active: str | None = None
        self._tuners: list[Any] | None = None  # the base's tuner layers (found again after each attach)

    def attach(self, model_id: str, path: Path) -> Adapter:
        """Load the adapter saved at `path` (PEFT format) under a name derived from `model_id`; returns its
        handle (the same one when that name is attached already). Raises peft's errors for a broken folder."""
        from peft import PeftConfig, PeftModel

        name = "tw_" + re.sub(r"\W", "_", model_id)  # never inside a peft prefix such as "lora_"
        if name in self.adapters:
            return self.adapters[name]
        config = PeftConfig.from_pretrained(path)
        kind = str(getattr(config.peft_type, "value", config.peft_type))
        with warnings.catch_warnings():
            # peft warns that a second PeftModel over one module has "multiple adapters": that is the point
            warnings.filterwarnings("ignore", message=".*multiple adapters.*")
            if config.is_prompt_learning:
                model = PeftModel.from_pretrained(self.base, path, adapter_name=name).eval()
            elif kind in self.by_type:
                model = self.by_type[kind]
                model.load_adapter(path, adapter_name=name)
                model.eval()
            else:
                model = self.by_type[kind] = PeftModel.from_pretrained(self.base, path, adapter_name=name).eval()
        mixable = kind == "LORA" and not getattr(config, "use_dora", False)
        self.adapters[name] = Adapter(name, kind, model, config.is_prompt_learning, mixable)
        self.active, self._tuners = "?", None  # loading may switch layers on: the next activate() sets them all
        return self.adapters[name]

    def _layers(self) -> list[Any]:
        from peft.tuners.tuners_utils import BaseTunerLayer

        if self._tuners is None:
            self._tuners = [m for m in self.base.modules() if isinstance(m, BaseTunerLayer)]
        return self._tuners

    def activate(self, name: str | None) -> None:
        """Switch on the injected layers of adapter `name` only (None or a prompt-learning adapter: none)."""
        if name == self.active:
            return
        adapter = self.adapters.get(name) if name else None
        injected = adapter is not None and not adapter.prompt_learning
        for layer in self._layers():
            on = injected and any(name in getattr(layer, attr, {}) for attr in layer.adapter_layer_names)
            layer.enable_adapters(on)
            if on:
                layer.set_adapter(name, inference_mode=True)
        self.active = name

    @contextmanager
    def using(self, name: str | None) -> Iterator[None]:
        self.activate(name)
        yield

    def mixed_rows(self, names: list[str | None]):
        """A context in which the base model's forward applies adapter names[i] to row i (peft's mixed-batch
        inference; None: the base). Only for mixable adapters; a single name needs no mixing."""
        lora = self.by_type.get("LORA")
        if lora is None or len(set(names)) == 1:
            return self.using(names[0])
        self.activate(next(n for n in names if n))  # LoRA layers on; the hook picks each row's adapter
        return lora.base_model._enable_peft_forward_hooks(adapter_names=[n or BASE for n in names])

    def modules(self) -> Iterable[Any]:
        return [self.base, *(a.model for a in self.adapters.values())]


def tensor_bytes(modules: Iterable[Any]) -> int:
    """Bytes of the distinct parameter and buffer tensors (by storage pointer) reachable from `modules`."""
    seen: dict[int, int] = {}
    for module in modules:
        for t in [*module.parameters(), *module.buffers()]:
            seen.setdefault(t.data_ptr(), t.numel() * t.element_size())
    return sum(seen.values())
