"""Collapsed fine-tuning is caught, the remedies are tried and recorded, and the leaderboard flags what stays
collapsed."""

from __future__ import annotations

import pytest
import torch

from tunewise.backends import load_backend
from tunewise.data import Example, Task
from tunewise.registry import strategy_config
from tunewise.report.leaderboard import leaderboard
from tunewise.strategies.base import FitContext
from tunewise.strategies.finetuning._collapse import balanced_sample, collapse, train_guarded
from tunewise.strategies.finetuning._train import TrainConfig

VALIDATION = [Example(f"v{i}", f"text {i}", "a" if i % 4 else "b") for i in range(100)]  # 75 'a', 25 'b'



def test_collapse_needs_one_answer_for_98_percent_and_several_true_labels():
    targets = ["a"] * 30 + ["b"] * 20
    assert collapse(["a"] * 50, targets) == {"label": "a", "share": 1.0}
    assert collapse(["a"] * 49 + ["b"], targets) == {"label": "a", "share": 0.98}
    assert collapse(["a"] * 48 + ["b"] * 2, targets) is None
    assert collapse(["a"] * 50, ["a"] * 50) is None  # a one-label validation split cannot show collapse


def test_balanced_sample_keeps_the_size_and_equalises_labels():
    rows = [{"i": i} for i in range(100)]
    labels = ["a"] * 90 + ["b"] * 10
    sample = balanced_sample(rows, labels, seed=0)
    assert len(sample) == 100 and sum(r["i"] >= 90 for r in sample) == 50
    assert sample == balanced_sample(rows, labels, seed=0) != balanced_sample(rows, labels, seed=1)


class Scripted:
    """A linear 'model' whose training adds the attempt number to its weights, and a predictor whose answers
    are scripted per attempt: enough to follow the remedy path without training anything."""

    def __init__(self, answers: list[list[str]]):
        self.model = torch.nn.Linear(2, 2)
        self.frozen = torch.nn.Parameter(torch.zeros(1), requires_grad=False)
        self.model.register_parameter("frozen", self.frozen)
        self.initial = self.model.weight.detach().clone()
        self.answers, self.calls = answers, []

    def train(self, rows, cfg, ctx):
        self.calls.append({"rows": rows, "learning_rate": cfg.learning_rate,
                           "frozen_trainable": self.model.frozen.requires_grad})
        with torch.no_grad():
            self.model.weight.copy_(self.initial + len(self.calls))
        self.model.frozen.requires_grad_(True)  # as an unfreezing schedule would; restored before a retry
        ctx.stats["train_tokens"] = 10
        ctx.log({"step": 1, "loss": 1.0})

    def predict(self, examples):
        return self.answers[len(self.calls) - 1][:len(examples)]


def _guard(scripted: Scripted, tmp_path) -> tuple[FitContext, list[dict]]:
    logged: list[dict] = []
    ctx = FitContext(artifact_dir=tmp_path, seed=0, log=logged.append)
    rows = [{"i": i} for i in range(20)]
    train_guarded(scripted.model, rows, ["a"] * 16 + ["b"] * 4, VALIDATION, scripted.train, scripted.predict,
                  TrainConfig(name="t", learning_rate=1e-3), ctx)
    return ctx, logged


def test_remedies_run_until_training_no_longer_collapses(tmp_path):
    good = [e.target for e in VALIDATION]
    s = Scripted([["a"] * 100, ["a"] * 100, good])
    ctx, logged = _guard(s, tmp_path)
    assert [c["learning_rate"] for c in s.calls] == [1e-3, 1e-3, pytest.approx(1e-4)]
    assert not any(c["frozen_trainable"] for c in s.calls)  # every attempt starts from the initial flags
    assert sum(r["i"] >= 16 for r in s.calls[1]["rows"]) == 10  # balanced: half the rows are the rare label
    record = ctx.stats["collapse"]
    assert record["collapsed"] is False and record["first"] == {"label": "a", "share": 1.0}
    assert [t["remedy"] for t in record["tried"]] == ["balanced sampling",
                                                      "balanced sampling with a 10x lower learning rate"]
    assert record["kept"] == "balanced sampling with a 10x lower learning rate"
    assert torch.equal(s.model.weight, s.initial + 3)  # the last attempt's weights stay
    assert ctx.stats["train_tokens"] == 30 and [r.get("attempt") for r in logged] == [None, 1, 2]


def test_when_every_attempt_collapses_the_best_on_validation_is_kept_and_flagged(tmp_path):
    two_right = ["b" if i in (0, 4) else "a" for i in range(100)]  # 98% 'a', but two 'b' found: better macro-F1
    s = Scripted([["b"] * 100, two_right, ["a"] * 100])
    ctx, _ = _guard(s, tmp_path)
    record = ctx.stats["collapse"]
    assert record["collapsed"] is True and record["label"] == "a" and record["share"] == 0.98
    assert [t["collapsed"] for t in record["tried"]] == [True, True]
    assert record["kept"] == "balanced sampling"  # the best on validation macro-F1 is restored
    assert torch.equal(s.model.weight, s.initial + 2)


def test_no_check_below_twenty_validation_examples(tmp_path):
    s = Scripted([["a"] * 100])
    ctx = FitContext(artifact_dir=tmp_path, seed=0)
    train_guarded(s.model, [{"i": 0}], ["a"], VALIDATION[:19], s.train, s.predict, TrainConfig(name="t"), ctx)
    assert len(s.calls) == 1 and "collapse" not in ctx.stats


@pytest.mark.parametrize("name, options", [
    ("head-only", {}),
    ("gradual-unfreeze", {}),  # the encoder path with an unfreezing callback, copied afresh per attempt
    ("gradual-unfreeze", {"model": "causal"}),  # the causal path (`_lm_fit.fit_causal`)
])
def test_a_classifier_that_cannot_tell_inputs_apart_is_retrained_then_flagged(tmp_path, request, name, options):
    """Every input is the same sentence, so any model gives one label to all: collapse, whatever it learns.
    Both shared fine-tuning paths (encoder and causal) go through the guard."""
    same = [Example(f"{split}{i}", "the same sentence every time", "yes" if i % 3 else "no")
            for split in ("t", "v", "x") for i in range(24)]
    task = Task("same", "classification", same[:24], same[24:48], same[48:], "Yes or no?", ["no", "yes"])
    from tunewise.registry import get_strategy

    strategy = get_strategy(name)(strategy_config({"name": name, "epochs": 1, "batch_size": 8, **options}))
    kind = strategy.backend_kind
    model = request.getfixturevalue("tiny_causal" if kind == "causal" else "tiny_encoder")
    ctx = FitContext(artifact_dir=tmp_path, seed=0)
    strategy.fit(load_backend(model, kind, "cpu"), task, ctx)
    record = ctx.stats["collapse"]
    assert record["collapsed"] and record["share"] == 1.0
    lr = strategy.config.learning_rate
    assert [t["learning_rate"] for t in record["tried"]] == [pytest.approx(lr), pytest.approx(lr / 10)]
    result = {"strategy": "head-only", "family": "finetuning", "status": "done",
              "metrics": {"primary": "accuracy", "accuracy": {"value": 0.6, "low": 0.5, "high": 0.7}},
              "cost": {"details": {"collapse": record}}}
    from rich.console import Console

    console = Console(width=250, record=True)
    console.print(leaderboard([result]))
    assert "head-only (collapsed)" in console.export_text()


def test_report_flags_a_collapsed_strategy(tmp_path):
    from test_report import make_run

    from tunewise.report.html import build_report
    from tunewise.store import Store

    run_dir = make_run(tmp_path)
    store = Store(run_dir / "tunewise.db")
    run_id = store.run()["id"]
    lora = next(r for r in store.results(run_id) if r["strategy"] == "lora")
    lora["cost"]["details"]["collapse"] = {"collapsed": True, "label": "positive", "share": 0.99,
                                           "tried": [{"remedy": "balanced sampling"}], "kept": "balanced sampling"}
    store.finish_result(run_id, "lora", lora["metrics"], lora["cost"], None)
    store.close()
    html = build_report(run_dir).html.read_text(encoding="utf-8")
    assert 'class="badge collapsed">collapsed<' in html
    assert "lora&#39;s training collapsed: it answers &#39;positive&#39; for 99% of the validation examples, even " \
           "after trying balanced sampling" in html
