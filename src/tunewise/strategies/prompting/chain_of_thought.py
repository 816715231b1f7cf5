"""chain-of-thought: the model reasons in free text, then states its answer on a last "Answer:" line.

Zero-shot mode (Kojima et al. 2022) opens the answer with a trigger ("Let's think step by step.");
few-shot mode (Wei et al. 2022) first shows k worked examples: training rows whose `meta` has a
`rationale` (a `rationale` column; GSM8K's builtin loader provides one), or `rationales` written in the
config. The answer is read by `_extract.py`; when it cannot be, the output is "" (scored wrong) and the
trace step says `failed`. `ReasoningPredictor` also serves self-consistency (n sampled paths and a vote).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Literal

from pydantic import Field, model_validator

from tunewise.backends.context import fit_text, limit_for, name_of
from tunewise.data import Example, Task
from tunewise.errors import UserError
from tunewise.foundation import Strict
from tunewise.registry import register
from tunewise.strategies.base import Prediction, Predictor, Strategy, StrategyConfig
from tunewise.strategies.prompting._common import Messages, system_prompt
from tunewise.strategies.prompting._extract import Extractor, extraction_step, extractor_for
from tunewise.strategies.prompting.few_shot import select_demos

ANSWER_FORMAT = "Reason step by step, then give the final answer on its own last line as 'Answer: <answer>'."
_CALCULATOR = re.compile(r"<<[^<>]*>>")  # GSM8K's calculator annotations, e.g. "<<48/2=24>>"


class Rationale(Strict):
    input: str = Field(min_length=1, description="The worked example's input.")
    rationale: str = Field(min_length=1, description="The reasoning that leads from the input to the answer.")
    answer: str = Field(min_length=1, description="The final answer (one of the labels for classification).")


class ChainOfThoughtConfig(StrategyConfig):
    mode: Literal["zero-shot", "few-shot"] = Field(
        "zero-shot", description="zero-shot: only the trigger; few-shot: k worked examples (input, reasoning, "
        "answer) before the query.")
    trigger: str = Field("Let's think step by step.", description="Text that opens every answer (and every "
                         "worked example's reasoning); empty for none.")
    k: int = Field(4, gt=0, le=32, description="few-shot mode: worked examples taken from training rows that "
                   "have a `rationale` field (ignored when `rationales` is given).")
    selection: Literal["balanced", "random"] = Field(
        "balanced", description="few-shot mode: how training rows with rationales are picked.")
    rationales: list[Rationale] | None = Field(
        None, min_length=1, description="few-shot mode: worked examples written here, each {input, rationale, "
        "answer}, used instead of the training data's rationales.")
    instruction: str | None = Field(None, description="Replaces the task's instruction.")
    role: str | None = Field(None, description="A role/system line put before the instruction.")
    answer: Literal["auto", "number", "text"] = Field(
        "auto", description="Generation tasks: read the answer as a number (maths: the last number) or as the "
        "answer line's text; auto picks number when every training target is a number. Classification always "
        "maps the answer to the closest label.")
    max_new_tokens: int = Field(256, gt=0, le=4096, description="Longest reasoning plus answer, in tokens.")
    batch_size: int = Field(8, gt=0, le=256, description="Prompts generated together.")

    @model_validator(mode="after")
    def _rationales_need_few_shot(self) -> ChainOfThoughtConfig:
        if self.rationales and self.mode != "few-shot":
            raise ValueError("rationales are only used with mode: few-shot; set mode: few-shot or remove them")
        return self


def _worked(trigger: str, rationale: str, answer: str) -> str:
    reasoning = " ".join(part for part in (trigger, _CALCULATOR.sub("", rationale).strip()) if part)
    return f"{reasoning}\nAnswer: {answer}"


def worked_examples(config: ChainOfThoughtConfig, task: Task, seed: int) -> tuple[Messages, list[str]]:
    """The few-shot messages and where they came from (training ids or config entries)."""
    if config.rationales:
        for i, r in enumerate(config.rationales):
            if task.is_classification and r.answer not in task.labels:
                raise UserError(f"strategies.{config.id}.rationales[{i}].answer: '{r.answer}' is not one of the "
                                f"labels ({', '.join(task.labels)}); use one of them")
        pairs = [(r.input, _worked(config.trigger, r.rationale, r.answer)) for r in config.rationales]
        sources = [f"rationales[{i}]" for i in range(len(pairs))]
    else:
        pool = [e for e in task.train if str(e.meta.get("rationale") or "").strip()]
        if not pool:
            raise UserError(f"strategies.{config.id}: mode few-shot needs worked examples, but no training row has "
                            "a 'rationale' field; add a rationale column to the data or write `rationales:` "
                            "({input, rationale, answer}) in the strategy's config")
        demos = select_demos(pool, config.k, config.selection, seed, task.is_classification)
        pairs = [(e.input, _worked(config.trigger, str(e.meta["rationale"]), e.target)) for e in demos]
        sources = [e.id for e in demos]
    messages: Messages = []
    for user, assistant in pairs:
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    return messages, sources


def reasoning_system(task: Task, instruction: str | None, role: str | None) -> str:
    text = system_prompt(task, instruction, role, list_labels=False)
    if task.is_classification:
        text += "\nThe final answer must be exactly one of: " + ", ".join(task.labels) + "."
    return f"{text}\n{ANSWER_FORMAT}"


def vote(answers: Sequence[str | None], key: Callable[[str], str] = str) -> tuple[str | None, dict[str, int]]:
    """Majority over the answers that were read (failures do not vote); a tie goes to the first seen."""
    counts: Counter[str] = Counter()
    first: dict[str, str] = {}
    for a in answers:
        if a is not None:
            counts[key(a)] += 1
            first.setdefault(key(a), a)
    if not counts:
        return None, {}
    best = max(counts.values())
    winner = next(k for k in first if counts[k] == best)  # dicts keep insertion order: first seen wins
    return first[winner], {first[k]: n for k, n in counts.items()}


class ReasoningPredictor(Predictor):
    """Generates reasoning (n paths: greedy when n == 1 and temperature 0, else sampled), reads each path's
    answer and, with several paths, takes the majority. Tokens are counted over all paths."""

    def __init__(self, backend, task: Task, shared: Messages, trigger: str, extractor: Extractor, n: int = 1,
                 temperature: float = 0.0, top_p: float = 1.0, max_new_tokens: int = 256, batch_size: int = 8,
                 seed: int = 0):
        self.backend, self.task, self.shared, self.trigger, self.extractor = backend, task, shared, trigger, extractor
        self.n, self.temperature, self.top_p, self.seed = n, temperature, top_p, seed
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size
        self.model = backend.model

    def prompt(self, example: Example, text: str | None = None) -> str:
        """The prompt for `example`, with `text` in place of its input when given (a cut input)."""
        rendered = self.backend.render(self.shared + [{"role": "user", "content": example.input if text is None
                                                       else text}], add_generation_prompt=True)
        return rendered + self.backend.answer_prefix() + self.trigger if self.trigger else rendered

    def fit_prompt(self, example: Example) -> tuple[str, dict | None]:
        """The prompt, its input cut by `task.long_inputs` so it fits with max_new_tokens; and the cut's step."""
        limit = limit_for(self.backend.context_window, self.task, self.max_new_tokens)
        text, cut = fit_text(self.backend, limit, name_of(example), example.input,
                             lambda t: self.backend.count_tokens(self.prompt(example, t)))
        return self.prompt(example, text), cut

    def predict(self, examples: Sequence[Example], on_batch: Callable[[int], None] | None = None
                ) -> list[Prediction]:
        fitted = [self.fit_prompt(e) for e in examples]
        prompts = [p for p, _ in fitted]
        if self.temperature > 0 and self.model is not None:
            import torch

            torch.manual_seed(self.seed)  # the same paths on a rerun or a resumed run
        paths = self.backend.sample(prompts, n=self.n, temperature=self.temperature, top_p=self.top_p,
                                    max_new_tokens=self.max_new_tokens, batch_size=self.batch_size,
                                    on_batch=on_batch)
        preds = [self._prediction(prompt, outs) for prompt, outs in zip(prompts, paths, strict=True)]
        for p, (_, cut) in zip(preds, fitted, strict=True):
            if cut:
                p.trace = [cut] + (p.trace or [])
        return preds

    def _prediction(self, prompt: str, outs: list[tuple[str, int]]) -> Prediction:
        answers = [self.extractor(text) for text, _ in outs]
        prompt_tokens = self.backend.count_tokens(prompt) * len(outs)
        completion_tokens = sum(n for _, n in outs)
        if len(outs) == 1:
            trace = [extraction_step(outs[0][0], answers[0], step="reasoning")]
            return Prediction(output=answers[0] or "", prompt_tokens=prompt_tokens,
                              completion_tokens=completion_tokens, trace=trace)
        winner, votes = vote(answers, self.extractor.vote_key)
        trace = [extraction_step(text, a, step=f"path {i}", tokens={"prompt": prompt_tokens // len(outs),
                                                                       "completion": n})
                 for i, ((text, n), a) in enumerate(zip(outs, answers, strict=True), 1)]
        trace.append({"step": "vote", "votes": votes, "extracted": winner or "", "failed": winner is None,
                      "paths_failed": sum(a is None for a in answers)})
        scores = None
        if self.task.is_classification:  # vote shares among the paths that gave a label
            valid = sum(votes.values())
            scores = {label: votes.get(label, 0) / valid if valid else 0.0 for label in self.task.labels}
        return Prediction(output=winner or "", scores=scores, prompt_tokens=prompt_tokens,
                          completion_tokens=completion_tokens, trace=trace)


@register
class ChainOfThought(Strategy):
    name = "chain-of-thought"
    family = "prompting"
    summary = "Reason step by step (zero-shot trigger or worked examples), then read the final answer."
    Config = ChainOfThoughtConfig

    def fit(self, backend, task, ctx):
        return self.reasoning_predictor(backend, task, ctx)

    def reasoning_predictor(self, backend, task, ctx, n: int = 1, temperature: float = 0.0, top_p: float = 1.0
                            ) -> ReasoningPredictor:
        c = self.config
        shared: Messages = [{"role": "system", "content": reasoning_system(task, c.instruction, c.role)}]
        if c.mode == "few-shot":
            demos, sources = worked_examples(c, task, ctx.seed)
            shared += demos
            ctx.stats["demonstrations"] = sources
        extractor = extractor_for(task, c.answer)
        ctx.stats["answer_kind"] = extractor.kind
        return ReasoningPredictor(backend, task, shared, c.trigger, extractor, n=n, temperature=temperature,
                                  top_p=top_p, max_new_tokens=c.max_new_tokens, batch_size=c.batch_size,
                                  seed=ctx.seed)
