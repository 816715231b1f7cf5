"""Layers point down only: the import-linter contracts of pyproject.toml hold, and a backwards import breaks
them (so CI fails on one). Each check runs in a fresh interpreter on the source tree it names."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = ("import sys; from importlinter.cli import lint_imports; "
        "sys.exit(lint_imports(config_filename=sys.argv[1], no_cache=True, no_logo=True))")


def _lint(src: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run([sys.executable, "-c", LINT, str(ROOT / "pyproject.toml")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_import_contracts_hold():
    done = _lint(ROOT / "src")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "broken" not in done.stdout.lower().replace("0 broken", "")


def test_a_backwards_import_breaks_the_layers(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(ROOT / "src" / "tunewise", src / "tunewise", ignore=shutil.ignore_patterns("__pycache__"))
    task = src / "tunewise" / "data" / "task.py"
    task.write_text(task.read_text(encoding="utf-8") + "\nfrom tunewise.backends import load_backend  # noqa\n",
                    encoding="utf-8")
    done = _lint(src)
    assert done.returncode == 1
    assert "tunewise.data.task -> tunewise.backends" in done.stdout
    assert re.search(r"Data never imports backends.*BROKEN", done.stdout.replace("\n", " "))


def test_greps_of_the_layering_bar():
    """The issue's bar, as plain text: no consent environment variable (consent is FitContext.yes), no backend
    import in data/, no strategy import in evaluation/, no report import in strategies/."""
    pkg = ROOT / "src" / "tunewise"

    def grep(folder: Path, pattern: str) -> list[str]:
        return [f"{p}:{n}" for p in folder.rglob("*.py")
                for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if re.search(pattern, line)]

    assert grep(pkg, "TUNEWISE_" + "YES") == []  # spelled apart so that a grep of the repository finds none
    assert grep(pkg / "data", r"(from|import) tunewise\.backends") == []
    assert grep(pkg / "evaluation", r"(from|import) tunewise\.strategies") == []
    assert grep(pkg / "strategies", r"(from|import) tunewise\.report") == []
