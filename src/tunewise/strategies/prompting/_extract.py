"""Reading the final answer out of free-text reasoning (chain-of-thought, self-consistency).

The answer segment is the last `\\boxed{...}`, else the last "Final answer: ..." / "final answer is ...",
else the last "Answer: ..." / "the answer is ..." / "#### ...", else (no marker at all) the last
non-empty line. It is then read as a label (exact, case-insensitive, whole label phrase contained, then
the label whose words are most contained), a number (the last one; without any marker, the last number
of the whole text) or plain text. A failure is `None`, never an exception: the predictor then outputs ""
(scored wrong) and records `{"raw", "extracted", "failed"}` in the prediction's trace, which
`extraction_summary` counts for the run's results.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from tunewise.data import Task
from tunewise.evaluation.metrics import last_number

AnswerKind = Literal["label", "number", "text"]

_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
# "answer" must be followed by "is" or a colon/equals sign, so "to answer this, ..." is not a marker.
_ANSWER = re.compile(r"(?P<final>\bfinal\s+)?\banswer\b[*_\s]*(?:is\b|[:：=])[*_\s:：]*(?P<ans>[^\n]*)"
                     r"|####\s*(?P<hashes>[^\n]*)", re.IGNORECASE)
_STRIP = " \t\r\n*_`\"'.,;:!"


def answer_segment(text: str) -> tuple[str | None, bool]:
    """(segment, found_marker): the text that states the final answer, or the last non-empty line."""
    boxed = [m.group(1) for m in _BOXED.finditer(text) if m.group(1).strip()]
    if boxed:
        return boxed[-1].strip(), True
    found = [(bool(m.group("final")), (m.group("ans") if m.group("hashes") is None else m.group("hashes")))
             for m in _ANSWER.finditer(text)]
    found = [(final, ans.strip(_STRIP)) for final, ans in found if ans.strip(_STRIP)]
    if found:
        finals = [ans for final, ans in found if final]
        return (finals or [ans for _, ans in found])[-1], True
    lines = [line.strip(_STRIP) for line in text.splitlines() if line.strip(_STRIP)]
    return (lines[-1] if lines else None), False


def _phrase(text: str) -> str:
    """Lower-case words joined by single spaces, with punctuation and underscores as separators."""
    return " ".join(re.findall(r"[^\W_]+", text.casefold()))


def match_label(segment: str, labels: Sequence[str]) -> str | None:
    """The label a free-text answer names: exact, case-insensitive, whole label contained, most label words."""
    text = segment.strip(_STRIP)
    if text in labels:
        return text
    phrases = {label: _phrase(label) for label in labels if _phrase(label)}
    norm = _phrase(text)
    for label, phrase in phrases.items():
        if phrase == norm:
            return label
    # Whole label phrases in the segment: a longer label wins over one inside it ("billing issue" over
    # "billing"); otherwise the one named first ("negative, not positive").
    padded = f" {norm} "
    hits = {label: padded.find(f" {p} ") for label, p in phrases.items() if f" {p} " in padded}
    hits = {label: at for label, at in hits.items()
            if not any(o != label and f" {phrases[label]} " in f" {phrases[o]} " for o in hits)}
    if hits:
        return min(hits, key=hits.__getitem__)
    # Label words (multi-word or snake_case labels): the single label with the largest share present.
    present = set(norm.split())
    share = {label: sum(w in present for w in p.split()) / len(p.split()) for label, p in phrases.items()}
    best = max(share.values(), default=0.0)
    winners = [label for label, s in share.items() if s == best]
    return winners[0] if best > 0 and len(winners) == 1 else None


def format_number(value: float) -> str:
    """Canonical text of a number, so '18', '18.0' and '18.00' vote together."""
    return str(int(value)) if value.is_integer() else str(value)


class Extractor:
    """`extractor(text) -> answer | None` for one task's answer kind."""

    def __init__(self, kind: AnswerKind, labels: Sequence[str] = ()):
        if kind == "label" and not labels:
            raise ValueError("label extraction needs the label set")
        self.kind, self.labels = kind, list(labels)

    def __call__(self, text: str) -> str | None:
        segment, marked = answer_segment(text)
        if self.kind == "number":
            value = last_number(segment if marked and segment else text)
            return None if value is None else format_number(value)
        if segment is None:
            return None
        return match_label(segment, self.labels) if self.kind == "label" else segment

    def vote_key(self, answer: str) -> str:
        """What makes two answers the same vote (text answers compare case- and space-insensitively)."""
        return " ".join(answer.casefold().split()) if self.kind == "text" else answer


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", "").strip())
    except ValueError:
        return False
    return True


def extractor_for(task: Task, answer: Literal["auto", "number", "text"] = "auto") -> Extractor:
    """Labels for classification; for generation a number when asked, or (auto) when every training target
    is one (maths), else text."""
    if task.is_classification:
        return Extractor("label", task.labels)
    if answer == "auto":
        targets = [e.target for e in task.train + task.validation]
        numeric = bool(targets) and all(_is_number(t) for t in targets)
        answer = "number" if numeric else "text"
    return Extractor(answer)


def extraction_step(raw: str, extracted: str | None, **extra: Any) -> dict[str, Any]:
    """One trace step of a reasoning path; `failed` marks an answer that could not be read."""
    return {"raw": raw, "extracted": extracted or "", "failed": extracted is None, **extra}


def extraction_failed(trace: list[dict[str, Any]] | None) -> bool | None:
    """True/False when the trace records an answer extraction (its last step decides), else None."""
    if not trace or not isinstance(trace[-1], dict) or "failed" not in trace[-1]:
        return None
    return bool(trace[-1]["failed"])


def extraction_summary(traces: Iterable[list[dict[str, Any]] | None]) -> dict[str, Any]:
    """`{"extraction_failures": {"count", "rate", "n"}}` over predictions whose trace records an extraction;
    {} when none does (strategies that do not parse free text)."""
    flags = [f for f in (extraction_failed(t) for t in traces) if f is not None]
    if not flags:
        return {}
    count = sum(flags)
    return {"extraction_failures": {"count": count, "rate": count / len(flags), "n": len(flags)}}
