"""Bottleneck adapters (Houlsby et al. 2019; Pfeiffer et al. 2020) without an extra library.

The maintained `adapters` package (1.3.0) pins transformers 4.57 and does not import under transformers 5
(`HfFolder` is gone from huggingface_hub), so this small module does the one thing we need: after chosen
output projections of each layer (the MLP's down projection for Pfeiffer; also the attention output
projection for Houlsby) it adds a residual `h + up(act(down(h)))`. The up projection starts at zero, so
the adapted model computes exactly what the base model does until training moves it.

Adapters attach as a child module `adapter` of the wrapped Linear plus a forward hook, so every base
parameter keeps its name: the base checkpoint still loads, and only `*.adapter.*` tensors are saved.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from tunewise.errors import UserError

# Output projections per placement, as module-name suffixes across common architectures
# (Llama/Mistral/Qwen/SmolLM: o_proj/down_proj; GPT-2: attn.c_proj/mlp.c_proj; OPT: out_proj/fc2).
TARGETS = {
    "pfeiffer": ["mlp.down_proj", "mlp.c_proj", "fc2", "mlp.dense_4h_to_h"],
    "houlsby": ["self_attn.o_proj", "attn.c_proj", "self_attn.out_proj", "attention.dense",
                "mlp.down_proj", "mlp.c_proj", "fc2", "mlp.dense_4h_to_h"],
}
ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}
CONFIG_FILE, WEIGHTS_FILE = "bottleneck_config.json", "bottleneck.safetensors"


class Bottleneck(nn.Module):
    """h -> h + scale * up(act(down(h))), with `up` zero-initialised (an identity at the start)."""

    def __init__(self, dim: int, size: int, activation: str = "relu", scale: float = 1.0, dropout: float = 0.0):
        super().__init__()
        self.down = nn.Linear(dim, size)
        self.act = ACTIVATIONS[activation]()
        self.dropout = nn.Dropout(dropout)
        self.up = nn.Linear(size, dim)
        self.scale = scale
        # A zero down bias puts every unit on its active side for about half the tokens: with the default
        # random bias, a ReLU unit can start dead on all inputs (small hidden states) and never learn.
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.scale * self.up(self.dropout(self.act(self.down(h))))


def _apply_adapter(module: nn.Module, inputs, output):
    # A module-level function (not a closure) so that hooked models deep-copy and pickle.
    return module.adapter(output)


def _matches(name: str, suffixes: list[str]) -> bool:
    return any(name == s or name.endswith("." + s) for s in suffixes)


def add_bottlenecks(model: nn.Module, placement: str = "pfeiffer", reduction_factor: int = 16,
                    activation: str = "relu", scale: float = 1.0, dropout: float = 0.0,
                    target_modules: list[str] | None = None) -> list[str]:
    """Freeze `model`, attach a trainable bottleneck after each target Linear; return the targets' names."""
    suffixes = target_modules or TARGETS[placement]
    targets = [(n, m) for n, m in model.named_modules()
               if isinstance(m, nn.Linear) and _matches(n, suffixes) and not hasattr(m, "adapter")]
    if not targets:
        raise UserError(f"no Linear module of {type(model).__name__} ends with any of {suffixes}; set "
                        "target_modules to the output projections' names (e.g. [mlp.down_proj])")
    for p in model.parameters():
        p.requires_grad = False
    for _, linear in targets:
        dim = linear.out_features
        adapter = Bottleneck(dim, max(1, dim // reduction_factor), activation, scale, dropout)
        linear.adapter = adapter.to(device=linear.weight.device, dtype=linear.weight.dtype)
        linear.register_forward_hook(_apply_adapter)
    return [n for n, _ in targets]


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if ".adapter." in n}


def save_bottlenecks(model: nn.Module, path: Path, settings: dict) -> None:
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    save_file(adapter_state(model), str(path / WEIGHTS_FILE))
    (path / CONFIG_FILE).write_text(json.dumps(settings, indent=1), encoding="utf-8")


def load_bottlenecks(model: nn.Module, path: Path) -> nn.Module | None:
    """Re-create the adapters described in `path` on a fresh base model and load their weights."""
    from safetensors.torch import load_file

    if not (path / CONFIG_FILE).is_file() or not (path / WEIGHTS_FILE).is_file():
        return None
    settings = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
    add_bottlenecks(model, **settings)
    weights = load_file(str(path / WEIGHTS_FILE), device=str(next(model.parameters()).device))
    _, unexpected = model.load_state_dict(weights, strict=False)
    wanted = set(adapter_state(model))
    if unexpected or wanted - set(weights):
        raise UserError(f"{path}: saved adapters do not match the model (missing "
                        f"{sorted(wanted - set(weights))[:3]}, unexpected {unexpected[:3]}); delete the folder "
                        "to retrain")
    return model.eval()
