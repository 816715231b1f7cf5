"""Backends: one small interface over a model, with declared capabilities, found by name."""

from tunewise.backends.base import Backend, Capabilities, CausalBackend, EncoderBackend
from tunewise.backends.registry import load_backend, register_backend

__all__ = ["Backend", "Capabilities", "CausalBackend", "EncoderBackend", "load_backend", "register_backend"]
