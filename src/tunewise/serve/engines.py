"""How `tunewise serve` runs raw generation of the base model (`--engine`; issue 17, item 2).

- `transformers` (default): the model as the run loaded it, decoded by transformers' `generate()`. Exact:
  the same greedy tokens as the strategies' own generation.
- `int8`: a second copy of the base model whose `torch.nn.Linear` layers are dynamically quantised to int8
  (PyTorch's `torch.ao.quantization.quantize_dynamic`, per-output-channel weight scales, activations
  quantised per call; fbgemm/onednn int8 kernels). Decoding one stream on a CPU reads every weight once per
  token, so 1-byte weights instead of 4 cut the bytes read about 4x. It changes the model noticeably (the
  activations are quantised per tensor, and LLM activations have outliers): on SmolLM2-135M its next-token
  argmax matched fp32's greedy continuation on 37% of 4 x 64 positions (bf16: 98%), and greedy text diverges
  at once (bench/generation_speed.py reports the agreement). Fluent, but another model's text: it is opt-in and
  serves only the base model's `/v1/chat/completions` and `/v1/completions` generation and streams. Prompt
  log-probabilities (`echo`), the strategies, adapters and fine-tuning jobs keep the fp32 model, so no score
  a run reported changes. CPU only (PyTorch's dynamic quantised kernels have no CUDA implementation).
- `llamacpp`: llama.cpp (llama-cpp-python's server, in a process of its own) on a GGUF of the base model:
  the embedded SmolLM2's own Q4_1 file, or `--gguf FILE`; see serve/llamacpp.py. Same plain generation and
  streams as `int8`; requests with log-probabilities or a grammar constraint stay on the transformers model.

Errors: `check_engine` raises `UserError` for an unknown engine, for `int8` on a non-CPU device, for `int8` or
`llamacpp` on an API model (no local weights), and `gguf_for` for `llamacpp` on a base with no known GGUF.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

from tunewise.errors import UserError

ENGINES = ("transformers", "int8", "llamacpp")


def check_engine(engine: str, backend: Any = None) -> None:
    """Raise UserError when `engine` is unknown or cannot run on `backend` (None: check the name only)."""
    if engine not in ENGINES:
        raise UserError(f"--engine {engine}: unknown engine; use one of: {', '.join(ENGINES)}")
    if engine == "transformers" or backend is None:
        return
    if not backend.capabilities.local_weights:
        raise UserError(f"--engine {engine}: the run's model {backend.name} has no local weights (an API model); "
                        "use --engine transformers")
    if engine == "int8" and backend.device.type != "cpu":
        raise UserError(f"--engine {engine}: dynamic int8 runs on the CPU only, not on {backend.device.type}; "
                        "add --device cpu or use --engine transformers")


def int8_model(model: Any) -> Any:
    """A copy of `model` (the original is untouched) with every nn.Linear dynamically quantised to int8
    (per-channel weight scales: `per_channel_dynamic_qconfig`). Weights of the copy: ~1/4 of fp32 Linear bytes."""
    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():  # torch.ao.quantization's deprecation notice is not the user's business
        warnings.simplefilter("ignore")
        copied = copy.deepcopy(model).eval()
        spec = {name: per_channel_dynamic_qconfig for name, module in copied.named_modules()
                if isinstance(module, torch.nn.Linear)}
        return quantize_dynamic(copied, spec, dtype=torch.qint8)


def generation_backend(backend: Any, engine: str) -> Any:
    """The backend that raw generation of the base model runs on under `engine` (checked first)."""
    check_engine(engine, backend)
    if engine == "transformers":
        return backend
    return backend.with_model(int8_model(backend.model))


def gguf_for(engine: str, model: str, gguf: str | None) -> str | None:
    """The GGUF the `llamacpp` engine runs for base `model`: `gguf` if given, else the embedded model's own file;
    None for the other engines. Raises UserError when `llamacpp` has none, or `gguf` is given to another engine."""
    from tunewise.backends.embedded import embedded_gguf

    if engine != "llamacpp":
        if gguf:
            raise UserError(f"--gguf is for --engine llamacpp, not --engine {engine}")
        return None
    found = gguf or embedded_gguf(model)
    if found is None:
        raise UserError(f"--engine llamacpp: {model} is not an embedded model, so give its GGUF with --gguf FILE "
                        "(`tunewise export RUN --gguf FILE --tokenizer-gguf ...` writes one)")
    return str(found)


def external_engine(engine: str, gguf: str | None, threads: int | None = None):
    """The engine that generates outside this process (`llamacpp`: a started LlamaCppEngine), or None."""
    if engine != "llamacpp":
        return None
    from tunewise.serve.llamacpp import LlamaCppEngine

    return LlamaCppEngine(gguf, threads)
