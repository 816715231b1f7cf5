"""Finding a backend by model name: a registry of name prefixes, open to plugins.

A name that starts with a registered prefix goes to that prefix's factory (`openai:` -> any
OpenAI-compatible API, `fake` -> the test backend). Any other name is a local Hugging Face model: an
embedded name (`smollm2-135m-instruct`, `minilm-l6`), a local folder, or a hub name. A name shaped
`scheme:...` whose scheme nobody registered is refused in one line (a typo, or a plugin not installed).

Plugins add prefixes with `register_backend`, or through the `tunewise.backends` entry-point group:
the entry point's name is the prefix and its object the factory, e.g. in a plugin's pyproject.toml
`[project.entry-points."tunewise.backends"]` / `"mycloud:" = "mycloud_tunewise:create"`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path

from tunewise.backends.base import Backend, Kind
from tunewise.errors import CapabilityError, UserError

Factory = Callable[[str, Kind, str], Backend]  # (model name, kind, device) -> backend
ENTRY_POINTS = "tunewise.backends"
_PREFIXES: dict[str, Factory] = {}
_plugins_loaded = False
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")  # 'openai:...'; one letter is a Windows drive


def register_backend(prefix: str, factory: Factory | None = None):
    """Make names starting with `prefix` resolve to `factory(name, kind, device)`.

    Use directly (`register_backend("mycloud:", create)`) or as a decorator (`@register_backend("mycloud:")`).
    Raises ValueError when another factory already holds the prefix.
    """
    def add(fn: Factory) -> Factory:
        if _PREFIXES.get(prefix, fn) is not fn:
            raise ValueError(f"backend prefix '{prefix}' is registered twice")
        _PREFIXES[prefix] = fn
        return fn

    return add if factory is None else add(factory)


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in entry_points(group=ENTRY_POINTS):
        register_backend(ep.name, ep.load())


def prefixes() -> list[str]:
    """Registered prefixes, built-in and plugins."""
    _load_plugins()
    return sorted(_PREFIXES)


def resolve(name: str) -> Factory:
    """The factory for `name`: the longest matching prefix, else the local Hugging Face loader.

    Raises UserError (one line) for a `scheme:` name with an unregistered scheme."""
    _load_plugins()
    for prefix in sorted(_PREFIXES, key=len, reverse=True):
        if name.startswith(prefix):
            return _PREFIXES[prefix]
    scheme = _SCHEME.match(name)
    if scheme and len(scheme.group(1)) > 1 and not Path(name).expanduser().exists():
        raise UserError(f"model '{name}': no backend for '{scheme.group(1)}:' (known prefixes: "
                        f"{', '.join(prefixes())}); fix the name, or install the plugin that provides it")
    return _local


def load_backend(name: str, kind: Kind, device: str = "auto") -> Backend:
    """The backend for a model name: a registered prefix (`openai:...`, `fake`, plugins), else an embedded
    name, a local folder or a Hugging Face hub name loaded with transformers on `device` ('auto': a GPU if
    there is one). Raises UserError (one line) for an unknown scheme or a model that cannot be loaded."""
    return resolve(name)(name, kind, device)


def _local(name: str, kind: Kind, device: str) -> Backend:
    from tunewise.backends import hf_local

    if kind == "causal":
        return hf_local.CausalLMBackend(name, device=device)
    return hf_local.HFEncoderBackend(name, device=device)


@register_backend("openai:")
def _openai(name: str, kind: Kind, device: str) -> Backend:
    # any OpenAI-compatible API; settings in the name or TUNEWISE_OPENAI_*
    if kind != "causal":
        raise CapabilityError(f"'{name}' is an API chat/completion model; set `encoder` to a local encoder")
    from tunewise.backends.openai_compat import OpenAIBackend

    return OpenAIBackend.from_name(name)


@register_backend("fake")
def _fake(name: str, kind: Kind, device: str) -> Backend:
    from tunewise.backends import fake

    return fake.FakeBackend(name) if kind == "causal" else fake.FakeEncoder(name)
