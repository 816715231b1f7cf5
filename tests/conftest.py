"""Shared fixtures: tiny models built from a config inside the test session (seconds), small tasks."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest

from tunewise.config import TaskConfig
from tunewise.data import Example, Task

LABELS = {
    "positive": ["great", "love", "excellent", "wonderful", "happy", "superb", "fantastic", "enjoyed"],
    "negative": ["terrible", "hate", "awful", "broken", "angry", "poor", "disappointing", "refund"],
}
ROOT = Path(__file__).resolve().parent.parent  # the repository (tests live in folders mirroring src/)
CASES = ROOT / "tests" / "cases"  # the shared cases turned into tests

NOUNS = ["product", "service", "delivery", "screen", "battery", "staff", "price", "packaging", "app"]


def make_rows(n_per_label: int = 20, seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for label, words in LABELS.items():
        for _ in range(n_per_label):
            rows.append({"text": f"the {rng.choice(NOUNS)} was {rng.choice(words)} and {rng.choice(words)}",
                         "label": label})
    rng.shuffle(rows)
    return rows


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def sentiment_csv(tmp_path) -> Path:
    return write_csv(tmp_path / "sentiment.csv", make_rows())


@pytest.fixture
def small_task() -> Task:
    rows = make_rows(12)
    ex = [Example(id=str(i), input=r["text"], target=r["label"], meta={"source": f"mem:{i}"})
          for i, r in enumerate(rows)]
    return Task(name="toy", kind="classification", train=ex[:14], validation=ex[14:18], test=ex[18:],
                instruction="Is the review positive or negative?", labels=["negative", "positive"])


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    """The real SmolLM2 tokenizer (with its chat template), read from the embedded GGUF: no network."""
    from transformers import AutoTokenizer

    from tunewise.backends.embedded import EMBEDDED, SMOLLM2, cache_root, package_dir

    cached = cache_root() / "models" / SMOLLM2
    if (cached / "tokenizer_config.json").is_file():
        return AutoTokenizer.from_pretrained(cached)
    module, gguf_file, pip_name = EMBEDDED[SMOLLM2]
    return AutoTokenizer.from_pretrained(package_dir(module, pip_name), gguf_file=gguf_file)


@pytest.fixture(scope="session")
def tiny_causal(tmp_path_factory, smollm2_tokenizer) -> str:
    """A 2-layer Llama with SmolLM2's tokenizer, saved as a local model folder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(smollm2_tokenizer), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=1024, tie_word_embeddings=True,
                         pad_token_id=smollm2_tokenizer.pad_token_id)
    path = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(path)
    smollm2_tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory) -> str:
    """A 2-layer BERT with MiniLM's tokenizer, saved as a local model folder."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from tunewise.backends.embedded import resolve

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(resolve("minilm-l6"))
    config = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=4, max_position_embeddings=512)
    path = tmp_path_factory.mktemp("tiny-bert")
    BertModel(config).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def task_config(path: Path, **kw) -> TaskConfig:
    return TaskConfig(source=str(path), **kw)


def keyword_task(kind: str = "classification", meta: bool = False) -> Task:
    """Four routing messages whose label is a word of the input; test = train. With meta, each example carries
    `channel` and `source` fields (for templates)."""
    texts = [("where is my delivery", "delivery"), ("i want a refund please", "refund"),
             ("delivery is late again", "delivery"), ("refund my money", "refund")]
    ex = [Example(id=str(i), input=t, target=y, meta={"channel": "email", "source": f"mem:{i}"} if meta else {})
          for i, (t, y) in enumerate(texts)]
    return Task(name="kw", kind=kind, train=ex, validation=[], test=ex, instruction="Route it.",
                labels=["delivery", "refund"])
