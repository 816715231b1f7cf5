"""Prompt building and the two prompt predictors (label scoring, generation) shared by strategies."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from tunewise.backends.context import fit_text, limit_for, name_of
from tunewise.data import Example, Task
from tunewise.errors import UserError
from tunewise.strategies.base import Prediction, Predictor
from tunewise.strategies.prompting._extract import extraction_step
from tunewise.strategies.prompting._plain import formatted
from tunewise.strategies.prompting._structured import Structured, structured_output

Messages = list[dict[str, str]]


def system_prompt(task: Task, instruction: str | None = None, role: str | None = None,
                  list_labels: bool = True) -> str:
    """The instruction, plus the closed label set as an output constraint for classification."""
    parts = [role] if role else []
    parts.append(instruction or task.instruction)
    if task.is_classification and list_labels:
        parts.append("Answer with exactly one of: " + ", ".join(task.labels) + ".")
    return "\n".join(parts)


def demo_messages(demos: Sequence[Example], answer: Callable[[str], str] | None = None) -> Messages:
    """Demonstrations as user/assistant turns; `answer` reshapes each target (e.g. into the output schema)."""
    out: Messages = []
    for ex in demos:
        out += [{"role": "user", "content": ex.input},
                {"role": "assistant", "content": answer(ex.target) if answer else ex.target}]
    return out


def softmax(row: np.ndarray) -> np.ndarray:
    z = np.exp(row - row.max())
    return z / z.sum()


# Content-free inputs for contextual calibration (Zhao et al. 2021, "Calibrate Before Use").
CONTENT_FREE = ("N/A", "", "[MASK]")
# Per-example demonstrations (similarity selection): examples -> the demonstrations shown before each.
DemosFor = Callable[[Sequence[Example]], list[list[Example]]]


def _user(text: str) -> Messages:
    return [{"role": "user", "content": text}]


def _demo_trace(demos: list[Example]) -> list[dict]:
    return [{"step": "demonstrations", "ids": [d.id for d in demos]}]


def prompt_tokens(backend, shared: Messages, query: Messages, scoring: bool) -> int:
    """Tokens of the prompt shared+query as the predictor runs it: split at the cached prefix when scoring
    labels, the whole rendered prompt when generating."""
    if scoring:
        prefix, suffix = backend.split_prompt(shared, query)
        return backend.count_tokens(prefix) + backend.count_tokens(suffix)
    return backend.count_tokens(backend.render(shared + query, add_generation_prompt=True))


def fit_example(backend, task: Task | None, shared: Messages, example: Example, wrap: Callable[[str], Messages],
                reserve: int, scoring: bool) -> tuple[str, dict | None]:
    """The example's text, cut (by `task.long_inputs`) so that shared + wrap(text) and `reserve` answer tokens
    fit the model; and the trace step of the cut, or None. Instruction and demonstrations stay whole."""
    limit = limit_for(backend.context_window, task, reserve)
    return fit_text(backend, limit, name_of(example), example.input,
                    lambda text: prompt_tokens(backend, shared, wrap(text), scoring))


class ScoringPredictor(Predictor):
    """Classification by the log-likelihood of each label after the prompt: no parsing, no failures.

    The shared part of the prompt (system + demonstrations) is encoded once and its KV cache reused.
    With `demos_for` each example gets its own demonstrations: they go to the batched suffixes and only
    the system prompt is cached. With `calibrate`, the label distribution on content-free inputs under the
    same prompt is divided out (contextual calibration): measured once at construction for a fixed prompt,
    per example (and counted in its prompt tokens) when demonstrations differ per example.
    """

    def __init__(self, backend, task: Task, shared: Messages, batch_size: int = 16, calibrate: bool = False,
                 demos_for: DemosFor | None = None):
        self.backend, self.task, self.shared, self.batch_size = backend, task, shared, batch_size
        self.calibrate, self.demos_for = calibrate, demos_for
        self.model = backend.model
        self.continuations = scored_answers(backend, task.labels)
        self.reserve = max(backend.count_tokens(text) for text in self.continuations)  # the answer slot (tokens)
        self.calibration: dict[str, float] | None = None  # label -> content-free probability (fixed prompt)
        self._p_cf: np.ndarray | None = None
        if calibrate and demos_for is None:
            logp, _ = self._score([_user(text) for text in CONTENT_FREE])
            self._p_cf = _content_free_probs(logp)
            self.calibration = {label: float(p) for label, p in zip(task.labels, self._p_cf, strict=True)}

    def _score(self, queries: list[Messages], on_batch: Callable[[int], None] | None = None
               ) -> tuple[np.ndarray, list[int]]:
        """Label log-likelihoods after shared+query, and each prompt's token count. A prefix common to every
        query is cached; otherwise the whole prompts are scored (still batched)."""
        pairs = [self.backend.split_prompt(self.shared, q) for q in queries]
        prefixes = {p for p, _ in pairs}
        prefix = pairs[0][0] if len(prefixes) == 1 else ""
        suffixes = [s if prefix else p + s for p, s in pairs]
        logp = self.backend.score(prefix, suffixes, self.continuations, batch_size=self.batch_size,
                                  on_batch=on_batch)
        prefix_tokens = self.backend.count_tokens(prefix)
        return logp, [prefix_tokens + self.backend.count_tokens(s) for s in suffixes]

    def predict(self, examples: Sequence[Example], on_batch: Callable[[int], None] | None = None
                ) -> list[Prediction]:
        if not examples:
            return []
        demos = self.demos_for(examples) if self.demos_for else [[] for _ in examples]
        fitted = [fit_example(self.backend, self.task, self.shared, e, lambda t, d=d: demo_messages(d) + _user(t),
                              self.reserve, scoring=True) for d, e in zip(demos, examples, strict=True)]
        logp, tokens = self._score([demo_messages(d) + _user(text) for d, (text, _) in zip(demos, fitted, strict=True)],
                                   on_batch)
        p_cf = None if self._p_cf is None else np.broadcast_to(self._p_cf, logp.shape)
        if self.calibrate and self.demos_for:  # the prompt differs per example, so does its calibration
            cf_logp, cf_tokens = self._score([demo_messages(d) + _user(text) for d in demos for text in CONTENT_FREE])
            p_cf = _content_free_probs(cf_logp.reshape(len(examples), len(CONTENT_FREE), -1))
            tokens = [t + sum(cf_tokens[i * len(CONTENT_FREE):(i + 1) * len(CONTENT_FREE)])
                      for i, t in enumerate(tokens)]
        label_tokens = [self.backend.count_tokens(label) for label in self.task.labels]
        preds = []
        for i, row in enumerate(logp):
            probs = softmax(row) if p_cf is None else calibrated(row, p_cf[i])
            best = int(np.argmax(probs))
            preds.append(Prediction(
                output=self.task.labels[best],
                scores={label: float(p) for label, p in zip(self.task.labels, probs, strict=True)},
                prompt_tokens=tokens[i], completion_tokens=label_tokens[best],
                trace=(_demo_trace(demos[i]) if self.demos_for else []) + _cut(fitted[i][1]) or None))
        return preds


def _cut(step: dict | None) -> list[dict]:
    return [step] if step else []


def _content_free_probs(logp: np.ndarray) -> np.ndarray:
    """Mean label distribution over the content-free inputs (the last-but-one axis)."""
    z = np.exp(logp - logp.max(axis=-1, keepdims=True))
    return (z / z.sum(axis=-1, keepdims=True)).mean(axis=-2)


def calibrated(logp_row: np.ndarray, p_cf: np.ndarray) -> np.ndarray:
    """Label probabilities divided by the content-free ones and renormalised. The floor keeps a label the
    content-free prompt never predicts from dominating through a division by ~0."""
    q = softmax(logp_row) / np.maximum(p_cf, 1e-12)
    return q / q.sum()


class GenerationPredictor(Predictor):
    """Free generation (generation tasks, or backends without log-probabilities). With `structured`, the
    answers are generated under its JSON schema and the scored output is its answer field."""

    def __init__(self, backend, shared: Messages, max_new_tokens: int = 64, batch_size: int = 8,
                 postprocess: Callable[[str], str] = str.strip, demos_for: DemosFor | None = None,
                 task: Task | None = None, structured: Structured | None = None):
        self.backend, self.shared, self.demos_for, self.task = backend, shared, demos_for, task
        self.model = backend.model
        self.max_new_tokens, self.batch_size, self.postprocess = max_new_tokens, batch_size, postprocess
        self.structured = structured

    def predict(self, examples: Sequence[Example], on_batch: Callable[[int], None] | None = None
                ) -> list[Prediction]:
        demos = self.demos_for(examples) if self.demos_for else [[] for _ in examples]
        answer = self.structured.demo_answer if self.structured else None  # demonstrations in the schema's shape
        fitted = [fit_example(self.backend, self.task, self.shared, e,
                              lambda t, d=d: demo_messages(d, answer) + _user(t), self.max_new_tokens, scoring=False)
                  for d, e in zip(demos, examples, strict=True)]
        prompts = [self.backend.render(self.shared + demo_messages(d, answer) + _user(text), add_generation_prompt=True)
                   for d, (text, _) in zip(demos, fitted, strict=True)]
        outs = self.backend.generate(prompts, max_new_tokens=self.max_new_tokens, batch_size=self.batch_size,
                                     on_batch=on_batch,
                                     constraint=self.structured.constraint if self.structured else None)
        preds = []
        for d, (_, cut), p, (text, n) in zip(demos, fitted, prompts, outs, strict=True):
            trace = (_demo_trace(d) if self.demos_for else []) + _cut(cut) + \
                ([{"raw": text}] if self.postprocess is not str.strip and not self.structured else [])
            output = self.postprocess(text)
            if self.structured:  # the extraction step comes last: it counts extraction failures
                extracted = self.structured.extract(text)
                trace.append(extraction_step(text, extracted))
                output = extracted or ""
            preds.append(Prediction(output=output, prompt_tokens=self.backend.count_tokens(p),
                                    completion_tokens=n, trace=trace or None))
        return preds


SCORE_BATCH = 32  # prompts per label-scoring forward (memory is bounded by tokens: context.BATCH_TOKENS); SST-2 on
# SmolLM2, 2 CPU cores: 28.8 examples/s at 16, 30.6 at 32, 29.3 at 64
GENERATE_BATCH = 16


def prompt_predictor(backend, task: Task, shared: Messages, batch_size: int | None = None, max_new_tokens: int = 64,
                     calibrate: bool = False, demos_for: DemosFor | None = None, structured: Structured | None = None
                     ) -> Predictor:
    """Label scoring when the task is classification and the backend gives log-probs; else generation.
    `calibrate` needs label scoring (see `can_calibrate`); `demos_for` picks demonstrations per example;
    `structured` (generation only, see `_structured.structured_output`) generates under a JSON schema.
    `batch_size` None: SCORE_BATCH prompts per forward when scoring, GENERATE_BATCH when generating."""
    if uses_scoring(backend, task):
        return ScoringPredictor(backend, task, shared, batch_size=batch_size or SCORE_BATCH, calibrate=calibrate,
                                demos_for=demos_for)
    if calibrate:
        raise ValueError("contextual calibration needs label scoring; check uses_scoring() first")
    return GenerationPredictor(backend, shared, max_new_tokens=max_new_tokens, batch_size=batch_size or GENERATE_BATCH,
                               demos_for=demos_for, task=task, structured=structured)


def scored_answers(backend, labels: Sequence[str]) -> list[str]:
    """What label scoring appends to the prompt for each label: the answer prefix and the label, and the end of
    the answer (`end_of_turn`) only where it is needed to tell labels apart: on a model with local weights
    when no label's tokens begin another's (not "pos" / "positive"), the label alone is scored, as
    lm-evaluation-harness does; else, and on API models, label + end. The end token costs a second forward
    per batch (SST-2, SmolLM2-135M, plain prompt, calibrated: 23.5 vs 29.3 examples/s, 78.7% both ways)."""
    bare = [backend.answer_prefix() + label for label in labels]
    if backend.capabilities.local_weights:
        ids = [tuple(backend.encode(text)) for text in bare]
        if all(a and not (i != j and b[:len(a)] == a) for i, a in enumerate(ids) for j, b in enumerate(ids)):
            return bare
    return [text + backend.end_of_turn() for text in bare]


def label_slot(backend, labels: Sequence[str]) -> int:
    """Tokens of the longest label as label scoring appends it (`scored_answers`)."""
    return max(backend.count_tokens(text) for text in scored_answers(backend, labels))


def answer_reserve(backend, task: Task, max_new_tokens: int) -> int:
    """The answer slot `prompt_predictor` keeps free: the longest label when it scores, else max_new_tokens."""
    return label_slot(backend, task.labels) if uses_scoring(backend, task) else max_new_tokens


def instruction_predictor(backend, task: Task, ctx, cfg,
                          demonstrations: Callable[[], tuple[list[Example], DemosFor | None]] = lambda: ([], None)
                          ) -> Predictor:
    """What zero-shot and few-shot share: `cfg.instruction` (or the task's) with `cfg.role` as the system
    message, then the demonstrations, then the query; label scoring or generation (`prompt_predictor`).

    `cfg` has instruction, role, max_new_tokens, calibrate (true, false or "auto": on where labels are scored),
    output_schema and answer_field (a `_structured.StructuredOutputConfig`), and prompt_format (chat | plain:
    `_plain.PlainFormat`).
    `demonstrations()` returns fixed demonstration examples, or a per-example `DemosFor`. Calibration and
    an output_schema are refused (UserError) before demonstrations are chosen where they cannot work;
    with a fixed prompt the calibration's label distribution goes to `ctx.stats`. With an output_schema the
    system message shows the schema, demonstrations answer in its shape and generation is constrained to it.
    """
    calibrate = uses_scoring(backend, task) if cfg.calibrate == "auto" else cfg.calibrate  # auto: where it works
    if calibrate:
        check_calibrate(cfg.id, backend, task)
    structured = structured_output(cfg, backend, task)
    plain = cfg.prompt_format == "plain"
    backend = formatted(backend, task, cfg.prompt_format, f"strategies.{cfg.id}")
    demos, demos_for = demonstrations()
    system = system_prompt(task, cfg.instruction, cfg.role, list_labels=not plain)  # plain: the cue lists them
    if structured:
        system = f"{system}\n{structured.instruction()}"
    answer = structured.demo_answer if structured else None  # demonstrations answer in the schema's shape
    shared = [{"role": "system", "content": system}] + demo_messages(demos, answer)
    predictor = prompt_predictor(backend, task, shared, max_new_tokens=cfg.max_new_tokens, calibrate=calibrate,
                                 demos_for=demos_for, structured=structured)
    if calibrate and demos_for is None:
        ctx.stats["calibration"] = predictor.calibration
    return predictor


def uses_scoring(backend, task: Task) -> bool:
    return task.is_classification and backend.capabilities.supports_logprobs


def check_calibrate(strategy_id: str, backend, task: Task) -> None:
    """Contextual calibration rescales label probabilities: refuse it, in one line, where there are none."""
    if not uses_scoring(backend, task):
        why = "the task is generation" if not task.is_classification else \
            f"'{backend.name}' gives no log-probabilities"
        raise UserError(f"strategies.{strategy_id}.calibrate: contextual calibration needs label scoring "
                        f"(a classification task on a backend with log-probabilities), but {why}; "
                        "remove calibrate or set it to false")
