"""User-facing errors: one line, names the file/row/field and what to do; the CLI exits with code 2."""


class UserError(Exception):
    """A mistake in the user's input or configuration (not a bug in tunewise)."""


class CapabilityError(UserError):
    """A strategy needs something the chosen backend does not offer."""
