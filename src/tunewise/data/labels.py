"""Label names: what a model is shown for each stored label, and the check that labels are not bare codes.

A stored label is what the data holds (`Example.target`, also what results, predictions and metrics keep);
its name is what prompts, chains, agents, API calls and causal fine-tuning answers show the model.
`task.label_names` gives the names as a list (one per distinct stored label, in the task's label order:
labels sorted naturally, so 0, 1, 2, ..., 10) or as a mapping {stored label: name}. A Hugging Face
`ClassLabel` column brings its own names (`features[column].names`), used when `task.label_names` is unset.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from tunewise.errors import UserError

# numbers (0, -1, 3.5), LABEL_2-style codes, one or two letters with digits (c1), any single character,
# and short upper-case abbreviations (ABBR, DESC, HUM, NUM: TREC's question types)
_CODE = re.compile(r"(label[_ ]?)?[-+]?\d+(\.\d+)?|[a-z]{1,2}\d*|\w", re.IGNORECASE)
_ABBREVIATION = re.compile(r"[A-Z]{2,4}")


def looks_like_codes(labels: Sequence[str]) -> bool:
    """Labels a model cannot read as words: all numbers, LABEL_n, single characters, or upper-case
    abbreviations of at most 4 letters (ABBR, LOC, NUM). Lower-case words of 3 or more letters are names."""
    def code(label: str) -> bool:
        label = label.strip()
        if _ABBREVIATION.fullmatch(label):
            return True
        return bool(_CODE.fullmatch(label)) and not (label.isalpha() and len(label) > 2)
    return bool(labels) and all(code(label) for label in labels)


def class_label_names(features: Any) -> dict[str, list[str]]:
    """{column: names} for every `datasets.ClassLabel` feature of a dataset's `features` (an integer label i
    is stored as the string 'i' and named names[i])."""
    out = {}
    for column, feature in dict(features or {}).items():
        names = getattr(feature, "names", None)
        if type(feature).__name__ == "ClassLabel" and names:
            out[column] = [str(n) for n in names]
    return out


class Rows(list):
    """Rows of a dataset with the ClassLabel names of its columns ({column: names})."""

    class_names: dict[str, list[str]]


def dataset_rows(ds: Any) -> Rows:
    """The rows of a `datasets.Dataset` (each with its 1-based `__line__`) and, in `.class_names`, the names of
    its ClassLabel columns: what `hf:` sources load through, offline-testable with a Dataset built in memory."""
    rows = Rows({**row, "__line__": i} for i, row in enumerate(ds, 1))
    rows.class_names = class_label_names(getattr(ds, "features", None))
    return rows


def resolve_names(given: list[str] | dict[str, str] | None, labels: list[str],
                  class_names: list[str] | None = None) -> dict[str, str]:
    """{stored label: name} for the task's `labels` (natural order) from `task.label_names` (`given`) or else
    a ClassLabel's `class_names` (index i names stored label 'i'); {} when neither is set.

    Raises UserError naming task.label_names when a list has the wrong length, a mapping names an unknown
    label or misses one, a name is empty, or two labels share a name."""
    if given is None:
        if class_names and all(label.isdigit() and int(label) < len(class_names) for label in labels):
            return _checked({label: class_names[int(label)] for label in labels})
        return {}
    shown = ", ".join(labels)
    if isinstance(given, list):
        if len(given) != len(labels):
            raise UserError(f"task.label_names: {len(given)} names for {len(labels)} labels ({shown}); give one "
                            f"name per label in this order: {shown} (or a mapping {{label: name}})")
        names = dict(zip(labels, given, strict=True))
    else:
        names = {str(k): v for k, v in given.items()}
        unknown = [k for k in names if k not in labels]
        if unknown:
            raise UserError(f"task.label_names: '{unknown[0]}' is not a label of the training data (labels: "
                            f"{shown}); remove it or fix its spelling")
        missing = [label for label in labels if label not in names]
        if missing:
            raise UserError(f"task.label_names: no name for label(s) {', '.join(missing)}; give every label "
                            "a name")
    return _checked(names)


def _checked(names: dict[str, str]) -> dict[str, str]:
    names = {k: str(v).strip() for k, v in names.items()}
    empty = [k for k, v in names.items() if not v]
    if empty:
        raise UserError(f"task.label_names: the name of label '{empty[0]}' is empty; give it a name")
    seen: dict[str, str] = {}
    for label, name in names.items():
        if name in seen:
            raise UserError(f"task.label_names: '{name}' names both '{seen[name]}' and '{label}'; give each "
                            "label its own name")
        seen[name] = label
    return names


def code_warning(labels: Sequence[str], names: dict[str, str], strategies: Sequence[str]) -> str | None:
    """One line when `labels` look like codes, none has a name, and `strategies` (ids of strategies that
    show labels to a language model as text) is not empty; None otherwise."""
    if names or not strategies or not looks_like_codes(labels):
        return None
    few = list(labels[:6]) + (["..."] if len(labels) > 6 else [])
    quoted = " and ".join(f"'{x}'" for x in labels[:2]) + (" ..." if len(labels) > 2 else "")
    fix = ", ".join(f"<name of {x}>" for x in few)
    return (f"labels look like codes ({', '.join(few)}): prompting strategies ({', '.join(strategies)}) will "
            f"score the strings {quoted}; name them with task.label_names: [{fix}]")
