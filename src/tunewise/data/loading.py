"""Load CSV/TSV/JSONL/Parquet files (JSONL also in OpenAI's chat format, see `chat.py`), built-in sources and
Hugging Face datasets into a `Task`.

Every problem with the user's data becomes a one-line `UserError` naming file, row and field.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from tunewise.data.builtin import BUILTIN
from tunewise.data.chat import chat_row, is_chat_row, shared_system
from tunewise.data.chat_format import check_chat
from tunewise.data.config import TaskConfig
from tunewise.data.delimited import read_delimited
from tunewise.data.labels import dataset_rows, resolve_names
from tunewise.data.splits import cap, split_rows
from tunewise.data.task import Example, Task
from tunewise.errors import UserError

Row = dict[str, Any]
INPUT_CANDIDATES = ("text", "input", "question", "sentence", "prompt")
TARGET_CANDIDATES = ("label", "target", "answer", "output", "intent")
SUFFIXES = {".parquet": "parquet", ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl",
            ".csv": ",", ".tsv": "\t", ".txt": "\t"}
SPLIT_NAMES = {"train": "train", "training": "train", "validation": "validation", "valid": "validation",
               "val": "validation", "dev": "validation", "test": "test", "testing": "test"}


def read_rows(source: str, has_header: bool = True, delimiter: str | None = None) -> tuple[list[Row], str]:
    """Rows of a file (or a Hugging Face dataset 'hf:NAME[:CONFIG][@SPLIT]') and the name to cite in
    errors. `delimiter` (one of , ; tab |) is for delimited files; None detects it (see `delimited.py`)."""
    if source.startswith("hf:"):
        return _read_hf(source[3:]), source
    path = Path(source)
    if not path.exists():
        raise UserError(f"{source}: file not found; check the path (relative paths start at the config file)")
    if path.is_dir():
        raise UserError(f"{source}: is a folder; give a CSV, TSV, JSONL or Parquet file")
    suffix = path.suffix.lower()
    fmt = SUFFIXES.get(suffix)
    if fmt is None:  # before reading: a binary .xlsx would otherwise be reported as bad UTF-8
        raise UserError(f"{path}: unknown file type '{suffix or '(none)'}'; "
                        "use .csv, .tsv, .jsonl or .parquet (export spreadsheets as CSV)")
    if fmt == "parquet":
        rows = _read_parquet(path)
        if not rows:
            raise UserError(f"{path}: the Parquet table has no rows; add examples")
        return rows, str(path)
    raw = path.read_bytes().removeprefix(b"\xef\xbb\xbf")  # the BOM first: error offsets then count in `raw`
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise UserError(f"{path}: line {line}: not valid UTF-8 (byte 0x{raw[err.start]:02x}); "
                        "re-save the file as UTF-8") from None
    rows = _read_jsonl(path, text) if fmt == "jsonl" else read_delimited(path, text, fmt, has_header, delimiter)
    if not rows:
        if not text.strip():
            raise UserError(f"{path}: the file is empty; add examples")
        raise UserError(f"{path}: no examples, only a header line; add rows below it")
    return rows, str(path)


def _read_jsonl(path: Path, text: str) -> list[Row]:
    rows: list[tuple[int, Any]] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as err:
            why = getattr(err, "msg", "nested too deeply")
            raise UserError(f"{path}: line {n}: not valid JSON ({why}); fix or remove the line") from None
        if not isinstance(row, dict):
            raise UserError(f"{path}: line {n}: expected a JSON object with named fields (one per line), "
                            f"got {type(row).__name__}")
        rows.append((n, row))
    if rows and all(is_chat_row(row) for _, row in rows):  # a fine-tuning file: the providers' checks, all at once
        report = check_chat(text)
        if report.problems:
            raise UserError(report.describe(str(path)))
    return [{**(chat_row(row, str(path), n) if is_chat_row(row) else row), "__line__": n} for n, row in rows]


def _read_parquet(path: Path) -> list[Row]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises several types for corrupt files
        raise UserError(f"{path}: not a readable Parquet file ({err})") from None
    return [{**row, "__line__": i} for i, row in enumerate(table.to_pylist(), 1)]


def _read_hf(spec: str) -> list[Row]:
    name, _, split = spec.partition("@")
    name, _, config = name.partition(":")
    try:
        import datasets
    except ImportError:
        raise UserError("Hugging Face datasets need `pip install tunewise[hub]`") from None
    try:
        ds = datasets.load_dataset(name, config or None, split=split or "train")
    except Exception as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(
            f"hf:{spec}: could not load the Hugging Face dataset ({first}); this needs network access to "
            "the hub (and HF_HUB_OFFLINE unset), or export it to a local file and give its path") from None
    return dataset_rows(ds)


def _guess(rows: list[Row], wanted: str | None, candidates: tuple[str, ...], role: str, where: str) -> str:
    columns = [c for c in rows[0] if c != "__line__"]
    if wanted is not None:
        if wanted not in columns:
            raise UserError(f"{where}: no column '{wanted}' (columns: {', '.join(columns)}); "
                            f"set task.{role}_column to one of them")
        return wanted
    for c in candidates:
        if c in columns:
            return c
    raise UserError(f"{where}: cannot tell which column is the {role} (columns: {', '.join(columns)}); "
                    f"set task.{role}_column")


def _to_examples(rows: list[Row], where: str, in_col: str, tgt_col: str, prefix: str) -> list[Example]:
    examples = []
    for i, row in enumerate(rows):
        line = row.get("__line__", i + 1)
        for col in (in_col, tgt_col):
            if col not in row:
                raise UserError(f"{where}: row {line}: column '{col}' is missing; add it to every row")
        text, target = row[in_col], row[tgt_col]
        text = "" if text is None else str(text).strip()
        target = "" if target is None else str(target).strip()
        if not text:
            raise UserError(f"{where}: row {line}: column '{in_col}' is empty; fill it or remove the row")
        if not target:
            raise UserError(f"{where}: row {line}: column '{tgt_col}' is empty; fill it or remove the row")
        meta = {k: v for k, v in row.items() if k not in (in_col, tgt_col, "__line__")}
        meta["source"] = f"{where}:{line}"
        examples.append(Example(id=f"{prefix}{line}", input=text, target=target, meta=meta))
    return examples


def load_task(cfg: TaskConfig, seed: int = 0, limit: int | None = None) -> Task:
    """Read the task's rows, map columns, split (seeded, stratified) and validate labels.

    With `train` set, training rows come from that file (or hf split) and `source` is not read; the
    built-in source names ('demo', the default) then do not apply.
    """
    hf = cfg.source.startswith("hf:")
    builtin = None if cfg.train and not hf else BUILTIN.get(cfg.source)
    if cfg.train and not hf and cfg.source not in BUILTIN and _differ(cfg.source, cfg.train):
        raise UserError(f"task.source ({cfg.source}) and task.train ({cfg.train}) both name training data; "
                        "remove task.source or give the same file")
    if builtin is not None:
        cfg = builtin.apply_defaults(cfg)
    kind = cfg.kind or "classification"
    named = {"train": cfg.train, "validation": cfg.validation, "test": cfg.test}
    parts: dict[str, list[Example]] = {}
    if builtin is not None:
        rows, where = builtin.rows(), builtin.where
    elif cfg.train:
        rows, where = [], (f"{cfg.source}@{cfg.train}" if hf else cfg.train)
    else:
        rows, where = read_rows(cfg.source, cfg.has_header, cfg.delimiter)
    class_names = dict(getattr(rows, "class_names", {}))  # Hugging Face ClassLabel names (data/labels.py)
    if rows:
        in_col = _guess(rows, cfg.input_column, INPUT_CANDIDATES, "input", where)
        tgt_col = _guess(rows, cfg.target_column, TARGET_CANDIDATES, "target", where)
        examples = _to_examples(rows, where, in_col, tgt_col, prefix="")
        if cfg.split_column:
            parts = _by_split_column(rows, examples, cfg.split_column, where)
        else:
            parts["all"] = examples
    for split, source in named.items():
        if source:
            spec = f"{cfg.source}@{source}" if hf else source
            srows, swhere = read_rows(spec, cfg.has_header, cfg.delimiter)
            class_names.update(getattr(srows, "class_names", {}))
            in_col = _guess(srows, cfg.input_column, INPUT_CANDIDATES, "input", swhere)
            tgt_col = _guess(srows, cfg.target_column, TARGET_CANDIDATES, "target", swhere)
            parts[split] = _to_examples(srows, swhere, in_col, tgt_col, prefix=f"{split}:")
    train, validation, test = split_rows(parts, kind, cfg.test_size, cfg.validation_size, seed)
    if cfg.max_train_examples:
        train = cap(train, cfg.max_train_examples, kind, seed)
    test_cap = limit or cfg.max_test_examples
    if test_cap:
        test = cap(test, test_cap, kind, seed)
    if not train:
        raise UserError(f"{where}: no training examples after splitting; add rows or lower task.test_size")
    if not test:
        raise UserError(f"{where}: no test examples after splitting; add rows or raise task.test_size")
    labels: list[str] = []
    if kind == "classification":
        labels = sorted(Counter(e.target for e in train), key=_natural)
        _check_labels(labels, validation + test, where)
    elif cfg.label_names is not None:
        raise UserError("task.label_names: names labels of a classification task; remove it for generation")
    names = resolve_names(cfg.label_names, labels, class_names.get(tgt_col)) if labels else {}
    default_name = cfg.train if cfg.train and not hf else cfg.source.removeprefix("hf:")
    name = cfg.name or (builtin.name if builtin else Path(default_name).stem)
    instruction = cfg.instruction or shared_system(train + validation + test) or _default_instruction(
        kind, [names.get(x, x) for x in labels])
    return Task(name=name, kind=kind, train=train, validation=validation, test=test,
                instruction=instruction, labels=labels, max_input_tokens=cfg.max_input_tokens,
                long_inputs=cfg.long_inputs, label_names=names, input_name=cfg.input_name,
                target_name=cfg.target_name)


def _differ(a: str, b: str) -> bool:
    return Path(a).resolve() != Path(b).resolve()


def _natural(label: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", label)]


def _by_split_column(rows: list[Row], examples: list[Example], col: str, where: str) -> dict:
    columns = [c for c in rows[0] if c != "__line__"]
    if col not in columns:
        raise UserError(f"{where}: no column '{col}' (columns: {', '.join(columns)}); "
                        "set task.split_column to one of them or remove it")
    parts: dict[str, list[Example]] = {"train": [], "validation": [], "test": []}
    for row, ex in zip(rows, examples, strict=True):
        raw = row.get(col)
        value = "" if raw is None else str(raw).strip()
        if value.lower() not in SPLIT_NAMES:
            shown = f"'{value}'" if value else "empty"
            raise UserError(f"{where}: row {row['__line__']}: column '{col}' is {shown}; "
                            "use train, validation or test")
        parts[SPLIT_NAMES[value.lower()]].append(ex)
    return {k: v for k, v in parts.items() if v}


def _check_labels(labels: list[str], held_out: list[Example], where: str) -> None:
    known = set(labels)
    if len(known) < 2:
        raise UserError(f"{where}: the training examples have {len(known)} distinct label(s) "
                        f"({', '.join(labels)}); classification needs at least 2: add examples of other "
                        "labels, or set task.kind: generation")
    for ex in held_out:
        if ex.target not in known:
            raise UserError(
                f"{ex.meta['source'].rsplit(':', 1)[0]}: row {ex.meta['source'].rsplit(':', 1)[1]}: label "
                f"'{ex.target}' does not occur in the training data (train labels: {', '.join(labels)}); "
                "add training examples for it or remove the row")


def _default_instruction(kind: str, labels: list[str]) -> str:
    if kind == "classification":
        return "Classify the text into one of these labels: " + ", ".join(labels) + "."
    return "Answer the question. Give only the final answer."
