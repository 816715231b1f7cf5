"""A run folder and its driver: the only writer of the run's store.

RUN/ holds config.yaml (the resolved config), splits.json, tunewise.db (the store), strategies/<cell id>/
(each cell's artifacts, fit.json and train_log.json), and the machine-readable copies results.json and
predictions/<cell id>.jsonl. `Run` is a `Session` over that folder: it makes the cells, hands them to an
executor, and stores what comes back.
"""

from __future__ import annotations

import json
import platform
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tunewise.config import ExperimentConfig, dump_config
from tunewise.data import Task
from tunewise.errors import UserError
from tunewise.evaluation.baselines import FAMILY as BASELINE
from tunewise.evaluation.baselines import baselines
from tunewise.evaluation.metrics import choose_primary, evaluate, per_example_score
from tunewise.foundation import write_atomic
from tunewise.progress import console, make_progress
from tunewise.report.pilot_verdict import load_pilot, predicted_rows
from tunewise.report.seeds import seed_spread
from tunewise.runs.cell import Cell, CellResult
from tunewise.runs.executors import Executor, LocalExecutor
from tunewise.runs.session import Session
from tunewise.store import DB_NAME, Store, open_run
from tunewise.strategies.base import Predictor, chosen, stored_labels


def environment(device: str) -> dict[str, Any]:
    """Versions and hardware a run was measured on (stored with the run)."""
    import peft
    import torch
    import transformers

    return {"python": platform.python_version(), "platform": platform.platform(),
            "torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
            "cpu_count": torch.get_num_threads(), "cuda": torch.cuda.get_device_name(0)
            if torch.cuda.is_available() else None, "device": device}


class Run(Session):
    """A session with a run folder: `Run.create(config)` makes one, `Run.open(folder)` reopens one."""

    dir: Path
    store: Store
    id: str

    @classmethod
    def create(cls, config: ExperimentConfig, *, yes: bool = False) -> Run:
        """Check every strategy against the task, then make RUN = output_dir/<time>-<task> with config.yaml,
        the store and its run row. UserError (no folder made) when a strategy cannot do the task's kind."""
        run = cls(config, yes=yes)
        for cell in run.cells():
            run.check(run.strategy(cell.strategy))
        base = Path(run.config.output_dir) / f"{time.strftime('%Y%m%d-%H%M%S')}-{run.task().name}"
        run_dir, n = base, 1
        while run_dir.exists():
            n += 1
            run_dir = base.with_name(f"{base.name}-{n}")
        run_dir.mkdir(parents=True)
        (run_dir / "config.yaml").write_text(dump_config(run.config), encoding="utf-8")
        store = Store(run_dir / DB_NAME)
        store.create_run(run_dir.name, run.config_dict, environment(run.config.device))
        run._attach(run_dir, store, run_dir.name)
        return run

    @classmethod
    def open(cls, run_dir: str | Path, *, yes: bool = False, device: str | None = None,
             announce: bool = True) -> Run:
        """Reopen a run folder with its own saved config (resume, serve, curve); `device` overrides the
        config's (the server's --device)."""
        store, row = open_run(run_dir)
        try:
            run = cls(row["config"], f"{run_dir}/config.yaml", yes=yes, device=device, announce=announce)
        except UserError:
            store.close()
            raise
        run._attach(Path(run_dir), store, row["id"])
        return run

    def _attach(self, run_dir: Path, store: Store, run_id: str) -> None:
        self.dir, self.store, self.id = run_dir, store, run_id
        self.failures: list[str] = []
        self._advance = lambda: None  # ticks the driver's overall progress bar while cells run

    def close(self) -> None:
        self.store.close()

    # --- cells --------------------------------------------------------------------------------------
    def cells(self) -> list[Cell]:
        """The run's own cells: every strategy of the config on the full training split, at the config's seed
        (result id = strategy id) and, with `seeds: N`, at the next N - 1 seeds too (`<id>@seed=<s>`)."""
        seeds = [self.seed + k for k in range(self.config.seeds)]
        return [Cell.of(s.model_dump(mode="json"), self.seed, seed) for s in self.config.strategies for seed in seeds]

    def cell(self, strategy_id: str, seed: int | None = None, train_size: int | None = None) -> Cell:
        """The cell of a config strategy at `seed` (default: the run's) and `train_size` (default: all)."""
        return Cell.of(self.entry(strategy_id), self.seed, seed, train_size)

    def status(self, cell: Cell) -> str | None:
        return self.store.result_status(self.id, cell.id)

    def stored(self, cell: Cell) -> list[dict[str, Any]]:
        """The cell's prediction rows already in the store (a resumed cell scores only the rest)."""
        return self.store.predictions(self.id, cell.id)

    def prediction_sink(self, cell: Cell):
        """Where an in-process cell puts each scored chunk: straight into the store (durable)."""
        return lambda rows: self.store.add_predictions(self.id, cell.id, rows)

    def execute(self, cells: Sequence[Cell], executor: Executor | None = None, resume_hint: str | None = None
                ) -> list[str]:
        """Run the cells not yet done (LocalExecutor by default) and return one line per failed cell.

        On Ctrl-C the interrupt goes on after saying how to continue: for the run's own matrix (no
        `resume_hint`) the run is marked interrupted and resumed with `tunewise run --resume`; extra cells
        (a curve) leave the run's status alone and name their own command in `resume_hint`."""
        todo = [c for c in cells if self.status(c) != "done"]
        self.failures = []
        try:
            with make_progress() as progress:
                bar = progress.add_task("strategies", total=len(cells), completed=len(cells) - len(todo))
                self._advance = lambda: progress.advance(bar)
                (executor or LocalExecutor()).execute(self, todo, progress)
        except KeyboardInterrupt:
            if resume_hint is None:
                self.store.set_run_status(self.id, "interrupted")
            console.print(f"\n[yellow]interrupted[/]: finished work is saved; continue with "
                          f"`{resume_hint or f'tunewise run --resume {self.dir}'}`")
            raise
        finally:
            self._advance = lambda: None
        return list(self.failures)

    # --- what executors report (the only writes to the store) ----------------------------------------
    def cell_started(self, cell: Cell) -> None:
        strategy = self.strategy(cell.strategy)
        kind = strategy.backend_kind
        self.store.start_result(self.id, cell.id, strategy.name, strategy.family, self.model_for(kind), kind,
                                cell.seed, cell.train_size)

    def cell_finished(self, cell: Cell, result: CellResult) -> None:
        if result.predictions:
            self.store.add_predictions(self.id, cell.id, result.predictions)
        if result.train_log is not None:
            self.store.clear_train_log(self.id, cell.id)
            for record in result.train_log:
                self.store.log_train(self.id, cell.id, record)
        if result.status == "done":
            self.store.finish_result(self.id, cell.id, result.metrics, result.cost, result.artifact)
            primary = result.metrics[result.metrics["primary"]]
            cut = result.cost.get("details", {}).get("truncated_inputs")
            n_test = len(self.task(cell.train_size).test)
            console.print(f"[green]done[/] {cell.id}: {result.metrics['primary']} {primary['value']:.3f} "
                          f"[{primary['low']:.3f}, {primary['high']:.3f}]"
                          + (f" [yellow]({cut} of {n_test} test inputs truncated to fit the model)[/]" if cut else ""))
        else:
            self.store.fail_result(self.id, cell.id, result.error or "failed")
            self.failures.append(f"{cell.id}: {result.error}")
            console.print(f"[red]failed[/] {cell.id}: {result.error} (the other strategies go on)")
        self._advance()
        self.export()

    def cell_aborted(self, cell: Cell, error: BaseException) -> None:
        if isinstance(error, UserError):
            self.store.fail_result(self.id, cell.id, str(error))
        else:
            self.store.fail_result(self.id, cell.id, "interrupted by the user", status="interrupted")

    def finish(self) -> None:
        """The run's final status (failed when any cell failed) and the machine-readable copies."""
        self.store.set_run_status(self.id, "failed" if self.failures else "done")
        self.export()

    # --- files next to the store -----------------------------------------------------------------------
    def write_splits(self) -> None:
        task = self.task()
        splits = {"task": task.name, "kind": task.kind, "labels": task.labels, "label_names": task.label_names,
                  "instruction": task.instruction,
                  **{name: [e.id for e in getattr(task, name)] for name in ("train", "validation", "test")}}
        (self.dir / "splits.json").write_text(json.dumps(splits, indent=1), encoding="utf-8")

    def write_baselines(self) -> None:
        """Score the trivial baselines (evaluation/baselines.py) on the test split and store them as results of
        family 'baseline' at zero cost, at the run's seed on the full training split; already stored ones are
        kept (resume). They are not cells: nothing fits them, serves them or draws them on a curve. Raises
        UserError first when the config's `metric:` does not apply to the task's kind."""
        task = self.task()
        choose_primary(task.kind, [e.target for e in task.test], self.config.metric)  # a wrong `metric:` fails now
        for b in baselines(task, self.seed):
            if self.store.result_status(self.id, b.id) == "done":
                continue
            metrics = evaluate(task, task.test, b.outputs, seed=self.seed, metric=self.config.metric)
            self.store.start_result(self.id, b.id, b.id, BASELINE, seed=self.seed)
            self.store.add_predictions(self.id, b.id, [
                {"example_id": e.id, "position": i, "input": e.input, "target": e.target, "output": out,
                 "score": per_example_score(task, e, out), "prompt_tokens": 0, "completion_tokens": 0,
                 "latency_s": 0.0} for i, (e, out) in enumerate(zip(task.test, b.outputs, strict=True))])
            cost = {**dict.fromkeys(("trainable_params", "total_params", "trainable_share", "train_seconds",
                                     "train_tokens", "train_examples", "prompt_tokens_per_example",
                                     "completion_tokens_per_example", "seconds_per_example", "peak_rss_mb",
                                     "artifact_mb"), 0), "details": {"baseline": b.description}}
            self.store.finish_result(self.id, b.id, metrics, cost, None)
        self.export()

    def export(self) -> None:
        """results.json and predictions/<cell id>.jsonl next to the database; a strategy run at several seeds
        carries `seed_spread` (report/seeds.py: mean, std, range of its primary metric) on its own row."""
        results = self.store.results(self.id)
        spread = seed_spread(results, self.seed)
        for r in results:
            if r["strategy"] in spread and r.get("seed") in (None, self.seed):
                r["seed_spread"] = spread[r["strategy"]]
        pilot = load_pilot(self.dir)  # a pilot's predictions at the full size, as rows of status 'predicted'
        # Atomic: a crash while exporting leaves the previous copy whole (the store is the truth; resume rewrites).
        write_atomic(self.dir / "results.json", json.dumps(results + (predicted_rows(pilot) if pilot else []),
                                                            indent=1))
        pred_dir = self.dir / "predictions"
        pred_dir.mkdir(exist_ok=True)
        for r in results:
            if r["status"] == "done":
                write_atomic(pred_dir / f"{r['strategy']}.jsonl", "".join(
                    json.dumps({k: p[k] for k in p if k != "run_id"}) + "\n"
                    for p in self.store.predictions(self.id, r["strategy"])))

    # --- finished cells, for serving ---------------------------------------------------------------------
    def backend_kind(self, cell: Cell) -> str:
        """The backend kind a cell runs on: as the store recorded it (else, for an older store, its strategy's)."""
        row = next((r for r in self.store.results(self.id) if r["strategy"] == cell.id), None)
        return (row or {}).get("backend_kind") or self.strategy(cell.strategy).backend_kind

    def predictor(self, cell: Cell, task: Task | None = None) -> Predictor | None:
        """A finished cell's predictor: its saved artifact reloaded; a prompting strategy, which saves nothing
        to reload, is fitted again (instantly) in a temporary folder; None when a fine-tune's artifact is gone.
        `task`: the same task with other settings (the server's long_inputs: truncate); default the cell's."""
        art = self.dir / "strategies" / cell.id
        strategy = chosen(self.strategy(cell.strategy), art)  # the settings its validation selection chose
        backend = self.backend_for(strategy)
        task = task or self.task(cell.train_size)
        shown = task.named()  # labels by name, answers in stored labels (strategies/base.py: StoredLabels)
        predictor = strategy.load(backend, shown, self.context(art, cell.seed))
        if predictor is None and strategy.family == "prompting":
            with tempfile.TemporaryDirectory(prefix="tunewise-serve-") as tmp:
                predictor = strategy.fit(backend, shown, self.context(Path(tmp), cell.seed))
        return stored_labels(predictor, task)
