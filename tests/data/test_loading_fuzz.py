"""The data loaders fuzzed with Hypothesis: random bytes, CSV/TSV, JSONL and YAML configs each either load or
raise `UserError` (one line, naming the file), never another exception. Bounded (a fixed number of examples per
kind, derandomized so every run tries the same inputs, no example database written) and quick."""

from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunewise.config import load_config
from tunewise.data.config import TaskConfig
from tunewise.data.loading import load_task
from tunewise.errors import UserError

FUZZ = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])
# Cells drawn from the characters that break parsers: delimiters, quotes, line ends, NUL, a BOM, non-ASCII.
CELL = st.text(st.sampled_from(list("ab ,;\t|\"'\r\n\x00\ufeffé€")), max_size=12) | \
    st.sampled_from(["positive", "negative", "text", "label", "train", "test"])
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                    max_leaves=8)


def _loads_or_user_error(name: str, data: bytes, **task) -> None:
    """Load `data` saved as `name` as a task: a Task, or a one-line UserError naming the file."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        try:
            loaded = load_task(TaskConfig(source=str(path), **task), seed=0)
        except UserError as err:
            assert "\n" not in str(err).strip() and name in str(err), str(err)
            return
        assert loaded.train and loaded.test


@FUZZ
@given(st.binary(max_size=300), st.sampled_from(["data.csv", "data.tsv", "data.jsonl", "data.parquet"]))
def test_random_bytes(data, name):
    _loads_or_user_error(name, data)


@FUZZ
@given(st.lists(st.lists(CELL, min_size=1, max_size=4), min_size=1, max_size=12),
       st.sampled_from([",", "\t", ";"]), st.booleans(), st.booleans())
def test_csv(rows, delimiter, header, quote_all):
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL)
    writer.writerows(([["text", "label"]] if header else []) + rows)
    _loads_or_user_error("data.tsv" if delimiter == "\t" else "data.csv", out.getvalue().encode("utf-8"))


@FUZZ
@given(st.lists(JSON | st.fixed_dictionaries({"text": JSON, "label": JSON}) |
                st.fixed_dictionaries({"messages": st.lists(st.dictionaries(
                    st.sampled_from(["role", "content", "weight"]), JSON | st.sampled_from(
                        ["user", "assistant", "system", "tool"])), max_size=3)}), min_size=1, max_size=10),
       st.sampled_from(["classification", "generation"]))
def test_jsonl(lines, kind):
    _loads_or_user_error("data.jsonl", "\n".join(json.dumps(x) for x in lines).encode("utf-8"), kind=kind)


TASK_KEYS = st.sampled_from(["source", "kind", "test_size", "input_column", "has_header", "max_input_tokens",
                             "long_inputs", "train", "unknown"])
CONFIG = st.dictionaries(st.sampled_from(["task", "model", "strategies", "seed", "metric", "output_dir", "prices"]),
                         JSON | st.dictionaries(TASK_KEYS, JSON, max_size=4) |
                         st.lists(st.text(max_size=8) | st.dictionaries(st.sampled_from(["name", "k", "epochs"]),
                                                                        JSON, max_size=2), max_size=3), max_size=5)


@FUZZ
@given(st.one_of(CONFIG.map(lambda d: yaml.safe_dump(d).encode("utf-8")), st.binary(max_size=200),
                 st.text(st.sampled_from(list("task: -[]{}&*!|>'\"#\n\t%@`x1")), max_size=60).map(str.encode)))
def test_yaml_config(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "exp.yaml"
        path.write_bytes(data)
        try:
            load_config(path)
        except UserError as err:
            assert "\n" not in str(err).strip() and "exp.yaml" in str(err), str(err)
