"""Module names in a strategy's settings (PEFT `target_modules`, `modules_to_save`, IA3's `feedforward_modules`,
`layers_to_transform`, bottleneck adapters' `target_modules`) checked against the model before training.

peft itself trains whatever matches and ignores a list entry that matches nothing, so
`target_modules: [q_proj, not_a_real_layer]` would silently train q_proj alone. These checks follow peft's own
matching rules (peft.tuners.tuners_utils.check_target_module_exists and peft.utils.other's modules_to_save): a
list entry matches a module whose full name equals it or ends with "." + it (`modules_to_save`: ends with it);
a string is a regular expression matched against the full names (`re.fullmatch`), except peft's special value
'all-linear'; `layers_to_transform` indexes the numbered blocks found under peft's `layers_pattern` names.
Each works on any `torch.nn.Module`, including one built on the meta device from the config alone (what
`tunewise validate` checks, no weights loaded).
"""

from __future__ import annotations

import re
from typing import Any

from tunewise.errors import UserError

SPECIAL = ("all-linear",)
LAYER_NAMES = ("layers", "h", "block", "blocks", "layer")  # peft's default layers_pattern candidates
SHOWN = 40  # module names listed in an error


def layer_types(method: str) -> tuple[type, ...]:
    """The layer types `method` ('lora', 'ia3', 'adapters') can adapt: what its peft tuner (or
    `_bottleneck`) accepts as a target."""
    from torch import nn
    from transformers.pytorch_utils import Conv1D

    if method == "lora":
        return nn.Linear, nn.Embedding, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.MultiheadAttention, Conv1D
    if method == "ia3":
        return nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, Conv1D
    return (nn.Linear,)


def leaf_names(model, types: tuple[type, ...] | None = None) -> list[str]:
    """The distinct last parts of the model's module names (of `types` only, when given): q_proj, k_proj, ..."""
    names = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if n and (types is None or isinstance(m, types))}
    return sorted(names)


def _listing(model, types: tuple[type, ...] | None) -> str:
    names = leaf_names(model, types)
    return ", ".join(names[:SHOWN]) + (f", ... ({len(names)} in all)" if len(names) > SHOWN else "")


def check_modules(model, where: str, value: list[str] | str | None, types: tuple[type, ...] | None = None,
                  suffix_only: bool = False) -> None:
    """UserError naming each entry of `value` that matches no module of `model` (of `types`, when given),
    with the valid names; `where` is the option, e.g. 'strategies.lora.target_modules'. `suffix_only`:
    peft's modules_to_save rule (the name ends with the entry)."""
    if value is None or (isinstance(value, str) and value in SPECIAL):
        return
    modules = [(n, m) for n, m in model.named_modules() if n]
    kind = type(model).__name__
    if isinstance(value, str):
        try:
            pattern = re.compile(value)
        except re.error as err:
            raise UserError(f"{where}: '{value}' is not a valid regular expression ({err}); give module names "
                            f"as a list, e.g. [q_proj, v_proj]") from None
        if not any(pattern.fullmatch(n) and (types is None or isinstance(m, types)) for n, m in modules):
            raise UserError(f"{where}: the pattern '{value}' matches no full module name of {kind} "
                            f"(e.g. {modules[-1][0] if modules else 'none'}); module names: {_listing(model, types)}")
        return
    bad, wrong = [], []
    for entry in value:
        hits = [m for n, m in modules if (n.endswith(entry) if suffix_only else n == entry or n.endswith("." + entry))]
        if not hits:
            bad.append(entry)
        elif types is not None and not any(isinstance(m, types) for m in hits):
            wrong.append(f"{entry} ({type(hits[0]).__name__})")
    if bad:
        names = ", ".join(f"'{b}'" for b in bad)
        raise UserError(f"{where}: {names} {'is not a module' if len(bad) == 1 else 'are not modules'} of {kind}; "
                        f"its module names: {_listing(model, types)}" + (" (or 'all-linear')" if types else ""))
    if wrong:
        raise UserError(f"{where}: {', '.join(wrong)} cannot be adapted by this method; name layers such as: "
                        f"{_listing(model, types)}")


def layer_count(model) -> int:
    """How many numbered blocks the model has under peft's layer names (model.layers.0, transformer.h.0, ...)."""
    found = [re.search(rf"(?:^|\.)(?:{'|'.join(LAYER_NAMES)})\.(\d+)(?:\.|$)", n) for n, _ in model.named_modules()]
    return 1 + max((int(f.group(1)) for f in found if f), default=-1)


def check_layers(model, where: str, value: Any) -> None:
    """UserError when `layers_to_transform` names a block the model does not have."""
    if value is None:
        return
    wanted = [value] if isinstance(value, int) else list(value)
    count = layer_count(model)
    outside = [i for i in wanted if not 0 <= i < count]
    if outside:
        raise UserError(f"{where}: {outside} outside the model's layers: {type(model).__name__} has {count} "
                        f"(0 to {count - 1})")
