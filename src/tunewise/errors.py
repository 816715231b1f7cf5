"""User-facing errors: one line, names the file/row/field and what to do; the CLI exits with code 2.

The classes live in the foundation layer (`tunewise.foundation`); this module keeps their usual name."""

from tunewise.foundation import CapabilityError, UserError

__all__ = ["CapabilityError", "UserError"]
