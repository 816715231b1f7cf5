"""optimize-prompt: automatic instruction refinement from failures (as APE/OPRO/ProTeGi do).

Each round, the current best instruction answers a seeded minibatch of TRAINING examples; an optimiser
model (any causal backend, by default the same one) reads a few of the failures with their expected
answers and proposes rewritten instructions. Every candidate is scored on the VALIDATION split (or, with
no validation split, a slice of the training split kept apart from the minibatches); the best one is
kept. The original instruction is always a candidate and ties keep the earlier one, so the result is
never worse on validation than where it started.

The test split can not leak in: `fit` copies the task without its test examples before anything else,
and everything below works only on that copy. Small models write poor instructions, so proposals are
cleaned (preamble and quotes removed, first paragraph, length capped) and too-short ones are dropped.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re

import torch
from pydantic import Field

from tunewise.backends.context import cut_text
from tunewise.data import Example, Task
from tunewise.evaluation.metrics import per_example_score
from tunewise.registry import register
from tunewise.strategies.base import Strategy, StrategyConfig
from tunewise.strategies.prompting._common import prompt_predictor, system_prompt

META_SYSTEM = "You improve instructions for an AI assistant. Reply with the new instruction only."
_PREAMBLE = re.compile(r"^(?:here(?:'s| is) (?:an?|the|my) )?(?:improved |new |revised |better |updated )?"
                       r"instruction\s*[:\-]\s*", re.IGNORECASE)


class OptimizePromptConfig(StrategyConfig):
    instruction: str | None = Field(None, description="Starting instruction (default: the task's).")
    rounds: int = Field(2, ge=1, le=20, description="Refinement rounds.")
    candidates: int = Field(2, ge=1, le=16, description="Rewritten instructions proposed per round.")
    minibatch: int = Field(8, ge=1, le=256, description="Training examples answered per round to find "
                           "failures (seeded sample).")
    failures_shown: int = Field(3, ge=1, le=16, description="Failures (with expected answers) shown to the "
                                "optimiser model per round.")
    validation_examples: int = Field(32, ge=1, le=2000, description="At most this many validation examples "
                                     "score each candidate (seeded sample).")
    optimizer_model: str | None = Field(None, description="Causal model that writes the candidates (embedded "
                                        "name, hub name, path or 'fake'); default: the strategy's own model.")
    temperature: float = Field(0.7, ge=0, le=2, description="Sampling temperature of the optimiser model "
                               "(0: greedy, one distinct candidate per round).")
    max_proposal_tokens: int = Field(96, gt=0, le=1024, description="Longest proposal in tokens.")
    max_instruction_chars: int = Field(400, ge=40, le=4000, description="Proposals are cut to this length.")
    batch_size: int = Field(16, gt=0, le=512, description="Examples per forward pass when scoring.")
    max_new_tokens: int = Field(64, gt=0, le=4096, description="Generation tasks: longest answer in tokens.")


def without_test(task: Task) -> Task:
    """A copy of the task with no test examples: the only task the optimiser ever sees."""
    return dataclasses.replace(task, test=[], train=list(task.train), validation=list(task.validation))


def clean_instruction(text: str, max_chars: int) -> str:
    """First real paragraph of a proposal, without preamble, quotes or markdown, capped in length."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    while len(paragraphs) > 1 and paragraphs[0].endswith(":"):  # "Here is the improved instruction:"
        paragraphs.pop(0)
    first = paragraphs[0] if paragraphs else ""
    first = _PREAMBLE.sub("", first.strip("*#` \n")).strip()
    first = " ".join(first.strip("\"'“”‘’`* ").split())
    if len(first) > max_chars:
        cut = first[:max_chars]
        end = max(cut.rfind(". "), cut.rfind("! "), cut.rfind("? "))
        first = cut[:end + 1] if end > max_chars // 2 else cut.rsplit(" ", 1)[0]
    return first


def meta_prompt(task: Task, instruction: str, failures: list[tuple[Example, str]]) -> list[dict[str, str]]:
    shown = "\n\n".join(f"Input: {e.input}\nModel answer: {out or '(empty)'}\nCorrect answer: {e.target}"
                        for e, out in failures)
    labels = f"The assistant must answer with one of these labels: {', '.join(task.labels)}.\n\n" \
        if task.is_classification else ""
    user = (f"The assistant was given this instruction:\n\"{instruction}\"\n\n{labels}"
            f"With it, the assistant got these examples wrong:\n\n{shown}\n\n"
            "Write an improved instruction that helps the assistant answer such examples correctly. Keep it "
            "general (do not quote these examples) and under 60 words. Reply with the instruction only.")
    return [{"role": "system", "content": META_SYSTEM}, {"role": "user", "content": user}]


class _Optimiser:
    """The search itself; it receives only the test-free task."""

    def __init__(self, backend, writer, task: Task, config: OptimizePromptConfig, seed: int):
        self.backend, self.writer, self.task, self.c = backend, writer, task, config
        self.rng = random.Random(seed)
        self.tokens = {"prompt": 0, "completion": 0}
        self.tick = lambda: None  # progress: once per candidate scored or rejected
        pool = list(task.train)
        if task.validation:
            self.val, self.val_source = list(task.validation), "validation"
        else:  # hold a train slice apart from the minibatches; never fall back to the test split
            self.rng.shuffle(pool)
            n_val = min(config.validation_examples, max(1, len(pool) // 3)) if len(pool) > 1 else len(pool)
            self.val, pool = pool[:n_val], pool[n_val:] or pool
            self.val_source = "train slice"
        if len(self.val) > config.validation_examples:
            self.val = self.rng.sample(self.val, config.validation_examples)
        self.pool = pool

    def answer(self, instruction: str, examples: list[Example]) -> tuple[float, list[str]]:
        shared = [{"role": "system", "content": system_prompt(self.task, instruction)}]
        predictor = prompt_predictor(self.backend, self.task, shared, batch_size=self.c.batch_size,
                                     max_new_tokens=self.c.max_new_tokens)
        preds = predictor.predict(examples)
        self.tokens["prompt"] += sum(p.prompt_tokens for p in preds)
        self.tokens["completion"] += sum(p.completion_tokens for p in preds)
        scores = [per_example_score(self.task, e, p.output) for e, p in zip(examples, preds, strict=True)]
        return sum(scores) / max(len(scores), 1), [p.output for p in preds]

    def propose(self, instruction: str, failures: list[tuple[Example, str]]) -> list[str]:
        failures = self._fit_failures(instruction, failures)
        prompt = self.writer.render(meta_prompt(self.task, instruction, failures), add_generation_prompt=True)
        outs = self.writer.sample([prompt], n=self.c.candidates, temperature=self.c.temperature,
                                  max_new_tokens=self.c.max_proposal_tokens)[0]
        self.tokens["prompt"] += self.writer.count_tokens(prompt) * len(outs)
        self.tokens["completion"] += sum(n for _, n in outs)
        return [clean_instruction(text, self.c.max_instruction_chars) for text, _ in outs]

    def _fit_failures(self, instruction: str, failures: list[tuple[Example, str]]) -> list[tuple[Example, str]]:
        """Each failing input cut to an equal share of the writer's context (backends/context.py), so long
        inputs cannot push the meta-prompt past it; the instruction, answers and proposal room stay whole."""
        context = self.writer.context_window
        if not context or not failures:
            return failures
        bare = [(dataclasses.replace(e, input=""), o) for e, o in failures]
        used = self.writer.count_tokens(self.writer.render(meta_prompt(self.task, instruction, bare), True))
        share = max((context - self.c.max_proposal_tokens - used) // len(failures), 1)
        return [(dataclasses.replace(e, input=cut_text(self.writer, e.input, share)), o) for e, o in failures]

    def run(self, start: str) -> tuple[str, float, list[dict]]:
        best_score, _ = self.answer(start, self.val)
        self.tick()
        best, seen = start, {start}
        history = [{"round": 0, "instruction": start, "validation_score": best_score, "source": "original"}]
        for r in range(1, self.c.rounds + 1):
            batch = self.rng.sample(self.pool, min(self.c.minibatch, len(self.pool)))
            _, outputs = self.answer(best, batch)
            failures = [(e, o) for e, o in zip(batch, outputs, strict=True)
                        if per_example_score(self.task, e, o) < 1]
            if not failures:
                history.append({"round": r, "note": "no failures in the minibatch; nothing to learn from"})
                for _ in range(self.c.candidates):
                    self.tick()
                continue
            self.rng.shuffle(failures)
            for text in self.propose(best, failures[:self.c.failures_shown]):
                self.tick()
                if len(text) < 12 or len(text.split()) < 3 or text in seen:
                    history.append({"round": r, "instruction": text, "validation_score": None,
                                    "source": "rejected (too short or a repeat)"})
                    continue
                seen.add(text)
                score, _ = self.answer(text, self.val)
                history.append({"round": r, "instruction": text, "validation_score": score, "source": "proposal"})
                if score > best_score:  # strictly better: ties keep the earlier (original first)
                    best, best_score = text, score
        return best, best_score, history


@register
class OptimizePrompt(Strategy):
    name = "optimize-prompt"
    family = "prompting"
    summary = "An LLM rewrites the instruction from training failures; the best on validation is kept."
    Config = OptimizePromptConfig

    def fit(self, backend, task, ctx):
        safe = without_test(task)  # first: nothing below can reach a test example
        c = self.config
        writer = backend
        if c.optimizer_model:
            writer = ctx.backends(c.optimizer_model, "causal")  # the run's copy when it has loaded that model
        torch.manual_seed(ctx.seed)  # proposals are sampled: the same seed gives the same candidates
        optimiser = _Optimiser(backend, writer, safe, c, ctx.seed)
        bar = None
        if ctx.progress is not None:
            bar = ctx.progress.add_task(f"optimize {c.id}", total=1 + c.rounds * c.candidates)
            optimiser.tick = lambda: ctx.progress.advance(bar)
        best, score, history = optimiser.run(c.instruction or safe.instruction)
        if bar is not None:
            ctx.progress.update(bar, visible=False)
        ctx.stats.update({"instruction": best, "validation_score": score, "candidates": history,
                          "validation_source": optimiser.val_source, "validation_examples": len(optimiser.val),
                          "optimizer_model": c.optimizer_model or backend.name,
                          "optimization_tokens": optimiser.tokens})
        ctx.artifact_dir.mkdir(parents=True, exist_ok=True)
        (ctx.artifact_dir / "instruction.json").write_text(json.dumps({"instruction": best}), encoding="utf-8")
        return self._predictor(backend, safe, best)

    def load(self, backend, task, ctx):
        saved = ctx.artifact_dir / "instruction.json"
        if not saved.is_file():
            return None
        instruction = json.loads(saved.read_text(encoding="utf-8"))["instruction"]
        return self._predictor(backend, without_test(task), instruction)

    def _predictor(self, backend, task: Task, instruction: str):
        shared = [{"role": "system", "content": system_prompt(task, instruction)}]
        return prompt_predictor(backend, task, shared, batch_size=self.config.batch_size,
                                max_new_tokens=self.config.max_new_tokens)
