"""`tunewise agents optimize-prompt`: prompt optimisation as an agent team.

Three participants speak in turn, `rounds` times:
- `engineer` (the model) proposes one instruction, on a line starting with INSTRUCTION:;
- `evaluator` (no model: it runs the `evaluate_instruction` tool) scores the proposal on the VALIDATION
  split with tunewise's own scoring (label log-likelihood for classification) and reports the accuracy
  and a few failures on a seeded TRAINING minibatch, the same split of roles as `optimize-prompt`;
- `critic` (the model) reads the failures and says what the instruction should change.

The test split never reaches the team: the task is copied without it before anything runs. The original
instruction is scored first and ties keep the earlier candidate, so the best is never worse on validation
than the start. The result (best instruction, every candidate with its score, the conversation and its
tokens) is returned and written to a JSON file.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunewise.agents.team import Role, TeamSpec, Turn, run_teams
from tunewise.data import Example, Task
from tunewise.evaluation.metrics import per_example_score
from tunewise.runs import Session
from tunewise.strategies.prompting._common import prompt_predictor, system_prompt
from tunewise.strategies.prompting.optimize_prompt import clean_instruction, without_test

ENGINEER = ("You are a prompt engineer. You write the instruction an AI assistant follows for this task: "
            "{instruction}{labels} Propose ONE improved instruction of at most 50 words, on a single line "
            "starting with 'INSTRUCTION:'. Use the evaluator's scores and the critic's advice.")
CRITIC = ("You are a critic. Read the evaluator's report of the assistant's failures and say in one or two "
          "sentences what the instruction should add or change. Do not write the instruction yourself.")
_MARKER = re.compile(r"instruction\s*:\s*", re.IGNORECASE)


def _unrepeated(text: str) -> str:
    """Small models loop ("X. X. X."): keep each sentence once, in order."""
    sentences = re.split(r"(?<=[.!?])\s+", text)
    return " ".join(dict.fromkeys(s for s in sentences if s))


class Evaluator:
    """The `evaluate_instruction` tool: validation accuracy and training-minibatch failures of a candidate."""

    def __init__(self, backend, task: Task, validation_examples: int, minibatch: int, seed: int):
        self.backend, self.task, self.rng = backend, task, random.Random(seed)
        if task.validation:
            self.val, self.source, pool = list(task.validation), "validation", list(task.train)
        else:  # a training slice held apart from the minibatches; never the test split
            pool = list(task.train)
            self.rng.shuffle(pool)
            cut = max(1, len(pool) // 3)
            self.val, pool, self.source = pool[:cut], pool[cut:] or pool, "train slice"
        if len(self.val) > validation_examples:
            self.val = self.rng.sample(self.val, validation_examples)
        self.pool, self.minibatch = pool, minibatch
        self.candidates: list[dict[str, Any]] = []
        self.tokens = {"prompt": 0, "completion": 0}

    def _answer(self, instruction: str, examples: list[Example]) -> list[str]:
        shared = [{"role": "system", "content": system_prompt(self.task, instruction)}]
        preds = prompt_predictor(self.backend, self.task, shared).predict(examples)
        self.tokens["prompt"] += sum(p.prompt_tokens for p in preds)
        self.tokens["completion"] += sum(p.completion_tokens for p in preds)
        return [p.output for p in preds]

    def evaluate_instruction(self, instruction: str, source: str = "proposal") -> str:
        """Score an instruction on the validation split; report the score and a few training failures."""
        outputs = self._answer(instruction, self.val)
        score = sum(per_example_score(self.task, e, o) for e, o in zip(self.val, outputs, strict=True))
        score /= max(len(self.val), 1)
        best = max((c["validation_score"] for c in self.candidates), default=None)
        self.candidates.append({"instruction": instruction, "validation_score": score, "source": source})
        batch = self.rng.sample(self.pool, min(self.minibatch, len(self.pool)))
        failures = [(e, o) for e, o in zip(batch, self._answer(instruction, batch), strict=True)
                    if per_example_score(self.task, e, o) < 1][:3]
        shown = "\n".join(f"- Input: {e.input[:200]}\n  Assistant: {o or '(empty)'}\n  Correct: {e.target}"
                          for e, o in failures) or "(none in this sample)"
        best_note = "" if best is None else f" (best so far {best:.2f})"
        return (f"Validation accuracy of \"{instruction}\": {score:.2f}{best_note} on {len(self.val)} examples."
                f"\nFailures on training examples:\n{shown}")

    def __call__(self, conversation: list[tuple[str, str]]) -> str:
        proposal = next((text for who, text in reversed(conversation) if who == "engineer"), "")
        found = _MARKER.split(proposal, maxsplit=1)
        candidate = _unrepeated(clean_instruction(found[-1], 400))
        if len(candidate.split()) < 3:
            return "No instruction found: write one line starting with 'INSTRUCTION:'."
        if any(c["instruction"] == candidate for c in self.candidates):
            return f"\"{candidate}\" was already scored; propose a different instruction."
        return self.evaluate_instruction(candidate)

    def best(self) -> dict[str, Any]:
        return max(self.candidates, key=lambda c: c["validation_score"])  # max keeps the first of ties


def optimize_prompt(config_path: str | Path, rounds: int = 3, validation_examples: int = 32, minibatch: int = 8,
                    output: str | Path | None = None, on_turn: Callable[[Turn], None] | None = None,
                    max_new_tokens: int = 96) -> dict[str, Any]:
    """Run the prompt-optimisation team on the config's task and model; returns and saves the result."""
    session = Session.from_file(config_path)  # the run API: config, task and model, each resolved once
    cfg = session.config
    task = without_test(session.task()).named()  # first: no test example; labels by name (data/labels.py)
    backend = session.backend("causal")
    evaluator = Evaluator(backend, task, validation_examples, minibatch, cfg.seed)
    start = time.perf_counter()
    report = evaluator.evaluate_instruction(task.instruction, source="original")
    labels = f" The assistant must answer with one of: {', '.join(task.labels)}." if task.labels else ""
    spec = TeamSpec(roles=(
        Role("engineer", ENGINEER.replace("{instruction}", task.instruction).replace("{labels}", labels),
             "Proposes instructions."),
        Role("evaluator", "", "Scores an instruction on the validation split.", function=evaluator),
        Role("critic", CRITIC, "Analyses failures.")), max_messages=3 * rounds, max_new_tokens=max_new_tokens)
    opening = f"The current instruction is scored by the evaluator.\n{report}\nPropose a better instruction."
    run = run_teams(backend, [(spec, opening)], on_turn=(lambda _, t: on_turn(t)) if on_turn else None,
                    concurrency=1)[0]
    best = evaluator.best()
    result = {"task": task.name, "model": cfg.model, "validation_source": evaluator.source,
              "validation_examples": len(evaluator.val), "original": evaluator.candidates[0], "best": best,
              "candidates": evaluator.candidates, "conversation": run.trace(),
              "tokens": {"team": {"prompt": run.prompt_tokens, "completion": run.completion_tokens},
                         "evaluation": evaluator.tokens},
              "seconds": time.perf_counter() - start}
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(output) if output else Path(cfg.output_dir) / f"agents-optimize-{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1), encoding="utf-8")
    result["path"] = str(path)
    return result
