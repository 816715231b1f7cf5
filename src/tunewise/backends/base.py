"""The backend interface and the factory that turns a model name into a backend."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tunewise.errors import CapabilityError


@dataclass(frozen=True)
class Capabilities:
    kind: Literal["causal", "encoder"]
    can_train: bool
    supports_logprobs: bool
    needs_key: bool = False


class Backend:
    """Base of all backends. Subclasses set `name` and `capabilities`."""

    name: str
    capabilities: Capabilities

    def require(self, strategy: str, kind: str, needs: tuple[str, ...]) -> None:
        """Fail before a strategy starts if this backend lacks what it needs."""
        caps = self.capabilities
        if caps.kind != kind:
            raise CapabilityError(
                f"strategy '{strategy}' needs a {kind} model but '{self.name}' is a {caps.kind} model; "
                f"set `{'encoder' if kind == 'encoder' else 'model'}` in the config")
        for need in needs:
            if not getattr(caps, need):
                raise CapabilityError(
                    f"strategy '{strategy}' needs a backend with {need.replace('_', ' ')}, "
                    f"which '{self.name}' does not offer; pick a local Hugging Face model")

    def count_parameters(self) -> int:
        return 0

    def peak_device_memory_mb(self) -> float | None:
        return None


def load_backend(name: str, kind: Literal["causal", "encoder"], device: str = "auto") -> Backend:
    """Resolve a model name (embedded name, hub name, local path or 'fake') to a backend."""
    if name.startswith("openai:"):  # any OpenAI-compatible API; settings in the name or TUNEWISE_OPENAI_*
        if kind != "causal":
            raise CapabilityError(f"'{name}' is an API chat/completion model; set `encoder` to a local encoder")
        from tunewise.backends.openai_compat import OpenAIBackend

        return OpenAIBackend.from_name(name)
    if name.startswith("fake"):
        from tunewise.backends.fake import FakeBackend

        return FakeBackend(name, kind)
    if kind == "causal":
        from tunewise.backends.hf_local import CausalLMBackend

        return CausalLMBackend(name, device=device)
    from tunewise.backends.hf_local import EncoderBackend

    return EncoderBackend(name, device=device)
