"""A local model's architecture without its weights: built from its config on PyTorch's meta device.

`tunewise validate` checks the module names of a strategy's settings (PEFT `target_modules`, ...) against the
model without loading gigabytes of weights or touching the network: transformers' `AutoConfig` reads the local
folder's config.json and `from_config` under `torch.device("meta")` allocates no memory for the parameters.
"""

from __future__ import annotations

from pathlib import Path


def meta_model(model: str, kind: str = "causal"):
    """The `torch.nn.Module` of a local model (embedded name or folder) on the meta device, or None for models
    that are not local (fake, openai:, hub names) or whose config cannot be read here."""
    if model.startswith(("fake", "openai:")):
        return None
    from tunewise.backends import embedded

    path = Path(embedded.resolve(model))
    if not (path / "config.json").is_file():
        return None
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError):
        return None
    with torch.device("meta"):
        return (AutoModelForCausalLM if kind == "causal" else AutoModel).from_config(config)
