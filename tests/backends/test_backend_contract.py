"""The backend contract: every backend implements its kind's abstract base class, declares what it offers
instead of being probed, refuses what it cannot do in one line, and is found by name through the registry
(plugins included)."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

import tunewise
from tunewise.backends import Backend, Capabilities, CausalBackend, EncoderBackend, load_backend, registry
from tunewise.backends.fake import FakeBackend, FakeEncoder
from tunewise.errors import CapabilityError, UserError


class Echo(CausalBackend):
    """A plugin's backend: the smallest complete causal backend."""

    def __init__(self, name):
        self.name = name
        self.capabilities = Capabilities(kind="causal", can_train=False, supports_logprobs=False)

    def render(self, messages, add_generation_prompt):
        return "\n".join(m["content"] for m in messages)

    def split_prompt(self, shared, query):
        return "", self.render(shared + query, True)

    def end_of_turn(self):
        return "\n"

    def answer_prefix(self):
        return ""

    def encode(self, text):
        return [len(w) for w in text.split()]

    def count_tokens(self, text):
        return len(text.split())

    def score(self, prefix, suffixes, continuations, batch_size=16, on_batch=None):
        return np.zeros((len(suffixes), len(continuations)))

    def generate(self, prompts, max_new_tokens=64, stop=(), batch_size=8, on_batch=None, constraint=None):
        return [(p.splitlines()[-1], 1) for p in prompts]

    def sample(self, prompts, n=1, temperature=0.0, max_new_tokens=64, stop=(), batch_size=8, on_batch=None,
               top_p=1.0):
        return [[out] * n for out in self.generate(prompts)]


@pytest.fixture
def clean_registry(monkeypatch):
    monkeypatch.setattr(registry, "_PREFIXES", dict(registry._PREFIXES))
    monkeypatch.setattr(registry, "_plugins_loaded", False)


def test_a_registered_plugin_backend_is_found_by_name(clean_registry):
    registry.register_backend("echo:", lambda name, kind, device: Echo(name))
    backend = load_backend("echo:v1", "causal")
    assert isinstance(backend, Echo) and backend.name == "echo:v1"
    assert backend.generate(["a\nb"]) == [("b", 1)]
    with pytest.raises(ValueError, match="twice"):
        registry.register_backend("echo:", lambda name, kind, device: Echo(name))


def test_a_plugin_backend_is_found_through_its_entry_point(clean_registry, monkeypatch):
    class EntryPoint:
        name = "echo:"

        def load(self):
            return lambda name, kind, device: Echo(name)

    monkeypatch.setattr(registry, "entry_points",
                        lambda group: [EntryPoint()] if group == "tunewise.backends" else [])
    assert isinstance(load_backend("echo:big", "causal"), Echo)
    assert "echo:" in registry.prefixes()


def test_an_unknown_scheme_is_one_line_naming_the_known_prefixes():
    with pytest.raises(UserError) as err:
        load_backend("ollama:llama3", "causal")
    message = str(err.value)
    assert "\n" not in message and "'ollama:'" in message and "openai:" in message and "fake" in message


def test_built_in_names_resolve_to_their_backends(tiny_causal, tiny_encoder):
    assert isinstance(load_backend("fake", "causal"), FakeBackend)
    assert isinstance(load_backend("fake-nologprobs", "causal"), FakeBackend)
    assert isinstance(load_backend("fake", "encoder"), FakeEncoder)
    causal, encoder = load_backend(tiny_causal, "causal", "cpu"), load_backend(tiny_encoder, "encoder", "cpu")
    assert isinstance(causal, CausalBackend) and isinstance(encoder, EncoderBackend)
    assert causal.capabilities.local_weights and causal.model is not None and causal.context_window == 1024
    with pytest.raises(CapabilityError, match="API chat/completion model"):
        load_backend("openai:gpt-4o-mini", "encoder")


def test_a_backend_missing_a_method_of_the_contract_cannot_be_built():
    class Half(CausalBackend):
        def render(self, messages, add_generation_prompt):
            return ""

    with pytest.raises(TypeError, match="abstract"):
        Half()


def test_backends_without_weights_declare_it_and_refuse_in_one_line():
    fake, fake_encoder = load_backend("fake", "causal"), load_backend("fake", "encoder")
    for backend in (fake, fake_encoder):
        assert backend.model is None and backend.tokenizer is None and backend.context_window is None
        assert not backend.capabilities.local_weights and backend.device == "auto"
    for call in (fake.fresh_model, lambda: fake.with_model(object()), lambda: fake_encoder.classifier(["a"])):
        with pytest.raises(CapabilityError) as err:
            call()
        assert "\n" not in str(err.value) and "'fake'" in str(err.value)
    with pytest.raises(ValueError, match="unknown capability 'can_fly'"):
        fake.require("s", "causal", ("can_fly",))


def test_the_fake_encoder_embeds_shared_words_close_together():
    vectors = FakeEncoder().embed(["refund my money", "my refund", "delivery late"])
    assert vectors.shape == (3, FakeEncoder.DIM)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]


def _probes(tree: ast.AST) -> list[int]:
    """Lines that test a backend for an attribute or a class instead of reading its declared capabilities."""
    lines = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.args):
            continue
        first = ast.unparse(node.args[0])
        if node.func.id in ("hasattr", "getattr") and first.lower().endswith("backend"):
            lines.append(node.lineno)
        if node.func.id == "isinstance" and len(node.args) > 1 and "Backend" in ast.unparse(node.args[1]):
            lines.append(node.lineno)
    return lines


def test_no_code_probes_a_backend_for_what_it_can_do():
    src = Path(tunewise.__file__).parent
    found = {str(p.relative_to(src)): lines for p in sorted(src.rglob("*.py"))
             if (lines := _probes(ast.parse(p.read_text(encoding="utf-8"))))}
    assert found == {}, f"declare a capability or attribute on tunewise.backends.base instead: {found}"


def test_every_capability_a_strategy_needs_is_a_declared_flag():
    from tunewise.registry import strategies

    flags = Capabilities(kind="causal", can_train=True, supports_logprobs=True)
    for cls in strategies().values():
        for need in cls.needs:
            flags.offers(need)  # raises for a name that is no flag
    assert issubclass(CausalBackend, Backend) and issubclass(EncoderBackend, Backend)
