"""lm-evaluation-harness in its own virtual environment, for bench/prompt_scoring_vs_lmeval.py.

lm-eval is an optional peer: tunewise never imports it. The environment lives under the bench cache
(`~/.cache/tunewise-bench/lmeval-venv`, or $TUNEWISE_BENCH_CACHE/lmeval-venv) and is built once, with a
message, when absent. It sees this interpreter's site-packages through a .pth file, so the torch and
transformers tunewise runs are the ones lm-eval runs (the same numerics, and no second 1 GiB torch
download); pip installs only what lm-eval adds, into the new environment, and never touches this one.

    python bench/_lmeval_env.py        # build it now (a few minutes), e.g. in the background with nice
"""

from __future__ import annotations

import os
import site
import socket
import subprocess
import sys
import venv
from pathlib import Path

LMEVAL = "lm_eval==0.4.13"  # the release this bench was written against


def cache_dir() -> Path:
    return Path(os.environ.get("TUNEWISE_BENCH_CACHE") or Path.home() / ".cache" / "tunewise-bench")


def venv_dir() -> Path:
    return cache_dir() / "lmeval-venv"


def python() -> Path:
    return venv_dir() / "bin" / "python"


def installed() -> bool:
    if not python().is_file():
        return False
    probe = subprocess.run([str(python()), "-c", "import lm_eval"], capture_output=True)
    return probe.returncode == 0


def online(host: str = "pypi.org", port: int = 443, timeout: float = 5.0) -> bool:
    """Whether the package index answers (the index pip is configured with may be a local mirror)."""
    if os.environ.get("PIP_INDEX_URL", "").startswith("file:"):
        return True
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def ensure(log=print) -> Path | None:
    """The lm-eval environment's python, built when absent; None (with a message) when it cannot be built
    because the package index is unreachable or pip failed (the tail of pip's log names why)."""
    if installed():
        return python()
    if not online():
        log("lm-evaluation-harness is not installed and PyPI is unreachable: skipping the lm-eval side")
        return None
    target = venv_dir()
    log(f"installing {LMEVAL} into {target} (once; a few minutes)")
    venv.EnvBuilder(with_pip=True, clear=True).create(target)
    own = next(Path(p) for p in site.getsitepackages() if p.endswith("site-packages"))
    theirs = next((target / "lib").glob("python*/site-packages"))
    (theirs / "tunewise-bench-base.pth").write_text(f"{own}\n", encoding="utf-8")
    build_log = cache_dir() / "lmeval-install.log"
    with build_log.open("w", encoding="utf-8") as out:
        done = subprocess.run([str(python()), "-m", "pip", "install", "--disable-pip-version-check", LMEVAL],
                              stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0 or not installed():
        tail = build_log.read_text(encoding="utf-8").strip().splitlines()[-1:] or ["(empty log)"]
        log(f"installing lm-eval failed ({tail[0]}); see {build_log}: skipping the lm-eval side")
        return None
    return python()


if __name__ == "__main__":
    sys.exit(0 if ensure() else 1)
