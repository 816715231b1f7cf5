"""One run across processes: `accelerate launch` (or `torchrun`) starts N copies of `tunewise run`, and each
local training is data-parallel over them (DDP: the HF Trainer wraps the model, every process trains on its
shard of each batch, gradients are averaged; gloo on CPUs, NCCL on GPUs).

The main process (rank 0) is the run: it alone creates or opens the run folder, writes the store, evaluates,
measures forgetting, saves artifacts and runs the prompting cells. The others are followers: they receive the
run folder and its resolved config from the main process (`torch.distributed` broadcasts through accelerate's
`broadcast_object_list`), then wait for it to announce each cell it is about to train (a strategy that trains
locally, `can_train`, with no finished fit to reload) and join that training only, saving nothing: their
artifacts go to a temporary folder, and the Trainer's checkpoints are the main process's (_train.py). The main
process ends the protocol with `None`, also when it fails, so followers never wait for a run that is gone.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from tunewise.runs.session import Session
from tunewise.strategies.base import fit_or_load

_LEADER: list[bool] = []  # [True] while this process leads a run across processes (the announcements below)


def launched() -> bool:
    """True when this process is one of several started by `accelerate launch` / `torchrun` (WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _device(configured: str) -> str:
    """This process's device: its own GPU (LOCAL_RANK) when the run uses CUDA, else the configured one."""
    import torch

    if configured in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return configured


def _join(device: str) -> None:
    """Initialise the process group (accelerate's PartialState: gloo on CPUs) before the first broadcast."""
    from accelerate import PartialState

    PartialState(cpu=not _device(device).startswith("cuda"))


def _share(message: Any) -> Any:
    """The main process's `message`, in every process."""
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([message], from_process=0)[0]


class Leader:
    """The main process's side: `share(run)` once the run folder exists, `announce(cell)` before each local
    training, `stop()` at the end (in a `finally`)."""

    def __init__(self, device: str):
        _join(device)
        self.shared = False
        _LEADER[:] = [True]

    def share(self, run) -> None:
        _share({"run_dir": str(run.dir), "config": run.config_dict, "yes": run.yes})
        self.shared = True

    def stop(self) -> None:
        _LEADER.clear()
        _share(None)  # before `share`: "no run"; after it: "no more cells"


def announce(cell, strategy) -> None:
    """Called by the main process just before it trains `cell` anew: the followers join that training."""
    if _LEADER and "can_train" in strategy.needs:
        _share({"strategy": cell.strategy, "seed": cell.seed, "train_size": cell.train_size, "id": cell.id})


def follow(device: str) -> None:
    """A follower's whole run: receive the run, then train each announced cell with the main process until it
    says `None`. Writes nothing to the run folder."""
    from tunewise.runs.cell import Cell  # cell.py imports `announce` from here

    _join(device)
    run = _share(None)
    if run is None:  # the main process failed before it had a run
        return
    session = Session(run["config"], f"{run['run_dir']}/config.yaml", yes=run["yes"], announce=False,
                      device=_device(run["config"].get("device", device)))
    while (message := _share(None)) is not None:
        cell = Cell(**message)
        strategy = session.strategy(cell.strategy)
        with tempfile.TemporaryDirectory(prefix="tunewise-follower-") as tmp:
            # the main process's path exactly (label names, every validation-selection candidate), so the
            # processes run the same trainings in the same order; nothing is kept
            fit_or_load(strategy, session.backend_for(strategy), session.task(cell.train_size),
                        session.context(Path(tmp), cell.seed))
