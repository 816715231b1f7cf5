"""CSV/TSV/pipe files as spreadsheets write them: the delimiter detected (or set), long fields allowed.

Spreadsheets in many locales export `;`-separated "CSV" (the comma is their decimal mark), and a tab or a
pipe is common in other exports, so the file's suffix is only a default. Each of the four delimiters
(comma, semicolon, tab, pipe) is tried with Python's `csv` reader on the first records: it honours quotes,
so a delimiter that occurs only inside quoted values does not count. The one whose records all have the
header's number of fields (two or more) wins; on a tie the suffix's default is kept. `csv.Sniffer` is not
used on its own because it guesses from character frequencies and fails on quoted long texts or one-column
files; its reader-based check here is the same idea made quote-aware. `task.delimiter` overrides detection.

The reader's field limit (128 KB by default) is raised for the parse to the file's own length, which bounds it
(no field can be longer than the file), and put back afterwards.
"""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tunewise.errors import UserError

DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
NAMES = {name: char for char, name in DELIMITERS.items()}
SAMPLE_RECORDS = 200  # records read per candidate when detecting: enough to see a stray delimiter
MAX_FIELD = 2**31 - 1  # the C reader's field limit is a C long: stay within 32 bits everywhere


def delimiter_char(value: str) -> str:
    """The character of a `task.delimiter` value: one of , ; | or a tab, or their names."""
    key = value.strip().lower()
    char = NAMES.get(key, key or value)  # a tab strips to "", so keep the value itself then
    if char not in DELIMITERS:
        raise ValueError(f"task.delimiter '{value}' is not supported; use one of: comma (,), semicolon (;), "
                         "tab, pipe (|)")
    return char


@contextmanager
def field_limit(size: int) -> Iterator[None]:
    """Let `csv` read fields up to `size` characters (at least its default) while inside the block."""
    old = csv.field_size_limit()
    csv.field_size_limit(min(max(old, size + 1), MAX_FIELD))
    try:
        yield
    finally:
        csv.field_size_limit(old)


def _consistency(text: str, delimiter: str) -> tuple[float, int]:
    """(share of the first records with the header's field count, header field count) under `delimiter`."""
    try:
        sample = [r for r in itertools.islice(csv.reader(io.StringIO(text), delimiter=delimiter),
                                              SAMPLE_RECORDS) if any(c.strip() for c in r)]
    except csv.Error:
        return 0.0, 0
    if not sample:
        return 0.0, 0
    width = len(sample[0])
    return sum(len(r) == width for r in sample) / len(sample), width


def detect_delimiter(text: str, default: str) -> str:
    """The delimiter among comma, semicolon, tab and pipe that splits `text` into consistent records.

    A candidate must give the first record two or more fields; the highest share of records with that many
    fields wins, then the suffix's `default`, then the most fields. A one-column file keeps `default`.
    """
    with field_limit(len(text)):
        scores = {d: _consistency(text, d) for d in DELIMITERS}
    usable = {d: s for d, s in scores.items() if s[1] >= 2}
    if not usable:
        return default
    return max(usable, key=lambda d: (usable[d][0], d == default, usable[d][1]))


def read_delimited(path: Path, text: str, default: str, has_header: bool, delimiter: str | None = None
                   ) -> list[dict[str, Any]]:
    """Rows (dicts by header name, plus `__line__`) of a delimited file; `delimiter` None detects it.

    Raises UserError naming the line for an unparsable record, an unclosed quote, a repeated header name, or a
    row with more fields than the header.
    """
    sep = delimiter or detect_delimiter(text, default)
    with field_limit(len(text)):
        records = _records(path, text, sep)
    if not records:
        return []
    first = records[0][1]
    header = [h.strip() for h in first] if has_header else [str(i) for i in range(len(first))]
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise UserError(f"{path}: line 1: column '{dupes[0]}' appears more than once in the header; "
                        "rename the repeats")
    rows = []
    for n, rec in records[1:] if has_header else records:
        if not any(cell.strip() for cell in rec):
            continue
        if len(rec) > len(header) and any(cell.strip() for cell in rec[len(header):]):
            name = DELIMITERS[sep]
            how = "set" if delimiter else "detected; set task.delimiter if wrong"
            raise UserError(f"{path}: row {n}: {len(rec)} fields but the header has {len(header)} ({name}-separated, "
                            f"{how}); put values that contain a {name} in double quotes")
        rows.append({**{h: (rec[i] if i < len(rec) else "") for i, h in enumerate(header)}, "__line__": n})
    return rows


def _records(path: Path, text: str, sep: str) -> list[tuple[int, list[str]]]:
    """(line the record starts on, cells) of every record."""
    reader = csv.reader(io.StringIO(text), delimiter=sep)
    records: list[tuple[int, list[str]]] = []
    start = 1
    try:
        for rec in reader:
            records.append((start, rec))
            start = reader.line_num + 1
    except csv.Error as err:
        raise UserError(f"{path}: line {start}: cannot parse ({err})") from None
    if records and any("\n" in cell for cell in records[-1][1]) and _unclosed_quote(text, sep):
        raise UserError(f"{path}: line {records[-1][0]}: a quoted field is never closed, so the rest of the "
                        "file reads as one value; close or remove the stray '\"'")
    return records


def _unclosed_quote(text: str, delimiter: str) -> bool:
    try:
        for _ in csv.reader(io.StringIO(text), delimiter=delimiter, strict=True):
            pass
    except csv.Error as err:
        return "unexpected end of data" in str(err)
    return False
