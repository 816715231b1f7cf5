"""Backends: one small interface over a model, with declared capabilities."""

from tunewise.backends.base import Backend, Capabilities, load_backend

__all__ = ["Backend", "Capabilities", "load_backend"]
