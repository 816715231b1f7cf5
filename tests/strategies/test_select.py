"""Validation selection (strategies/_select.py): candidates never see a test example, the winner is what
validation prefers and is what a resumed or served fit reloads, the budget caps the candidates, without a
validation split it says so, and fine-tuning candidates are trainings whose winner's artifact is kept."""

from __future__ import annotations

import dataclasses
import json

import numpy as np

from tunewise.backends.fake import FakeBackend
from tunewise.data import Example, Task
from tunewise.registry import strategies, strategy_config
from tunewise.strategies._select import SELECTION_DIR, WORDINGS, grid
from tunewise.strategies.base import STATS_FILE, FitContext, SelectionConfig, chosen, fit_or_load
from tunewise.strategies.prompting.zero_shot import ZeroShotConfig

EXPERT = WORDINGS[2]


def routing_task(validation: bool = True) -> Task:
    words = {"delivery": ["delivery", "parcel late", "delivery status"], "refund": ["refund", "money back"]}
    ex = [Example(id=f"{y}{i}", input=f"customer {i}: {w} please", target=y)
          for y, ws in words.items() for i, w in enumerate(ws * 4)]
    test = [Example(id=f"t{i}", input=f"SECRET-TEST-{i} where is my delivery", target="delivery") for i in range(4)]
    val = ex[::4] if validation else []
    return Task(name="kw", kind="classification", train=[e for e in ex if e not in val], validation=val, test=test,
                instruction="Route it.", labels=["delivery", "refund"])


class Picky(FakeBackend):
    """A fake with local weights (so the plain format is a candidate) whose label scores are right only under
    the 'expert annotator' wording, inverted otherwise; it records every text it is asked to score."""

    def __init__(self):
        super().__init__("fake")
        self.capabilities = dataclasses.replace(self.capabilities, local_weights=True)
        self.seen: list[str] = []

    def score(self, prefix, suffixes, continuations, batch_size=16, on_batch=None):
        self.seen += [prefix, *suffixes]
        right = super().score(prefix, suffixes, continuations, batch_size, on_batch)
        return right if "expert annotator" in prefix + "".join(suffixes) else right[:, ::-1].copy()

    def count_tokens(self, text):
        self.seen.append(text)
        return super().count_tokens(text)


def _ctx(tmp_path, budget: int, examples: int = 64) -> FitContext:
    tmp_path.mkdir(parents=True, exist_ok=True)
    return FitContext(tmp_path, 0, selection=SelectionConfig(budget=budget, examples=examples))


def _strategy(name: str, **options):
    return strategies()[name](strategy_config({"name": name, **options}))


def test_candidates_never_see_a_test_example_and_the_best_on_validation_wins(tmp_path):
    backend, task = Picky(), routing_task()
    strategy = _strategy("zero-shot", prompt_format="chat", calibrate=False)
    predictor, fitted = fit_or_load(strategy, backend, task, _ctx(tmp_path, budget=64))
    assert fitted and len(backend.seen) > 20, "the recorder saw nothing; the test would prove nothing"
    assert not [s for s in backend.seen if "SECRET-TEST" in s]
    sel = json.loads((tmp_path / STATS_FILE).read_text())["selection"]
    assert len(sel["tried"]) == len(grid(strategy.config, task)) == 12  # format x calibrate x 3 wordings
    assert sel["tried"][0]["settings"] == {"prompt_format": "chat", "calibrate": False, "instruction": None}
    assert sel["chosen"]["instruction"] == EXPERT and sel["tried"][sel["chosen_index"]]["score"] == 1.0
    assert sel["tried"][0]["score"] < 0.5 and sel["unit"] == "prompt settings"
    assert [p.output for p in predictor.predict(task.test)] == ["delivery"] * 4  # the winner scores test


def test_a_resumed_or_served_prompting_fit_keeps_the_chosen_settings_without_a_new_search(tmp_path):
    backend, task = Picky(), routing_task()
    strategy = _strategy("zero-shot", prompt_format="chat", calibrate=False)
    fit_or_load(strategy, backend, task, _ctx(tmp_path, budget=64))
    assert chosen(strategy, tmp_path).config.instruction == EXPERT
    backend.seen.clear()
    ctx = _ctx(tmp_path, budget=64)
    predictor, fitted = fit_or_load(strategy, backend, task, ctx)
    assert not fitted and ctx.stats["selection"]["chosen"]["instruction"] == EXPERT
    assert not [s for s in backend.seen if "customer" in s], "a resume must not score validation again"
    assert [p.output for p in predictor.predict(task.test)] == ["delivery"] * 4


def test_the_budget_caps_candidates_nearest_first_and_budget_one_runs_as_written(tmp_path):
    task = routing_task()
    cfg = ZeroShotConfig(name="zero-shot", prompt_format="chat", calibrate=False)
    order = grid(cfg, task)
    assert order[:4] == [{}, {"prompt_format": "plain"}, {"calibrate": True}, {"instruction": WORDINGS[1]}]
    assert all(len(u) <= len(v) for u, v in zip(order, order[1:], strict=False))  # one change, then two, ...
    written = ZeroShotConfig(name="zero-shot", instruction="Route by service.")
    assert not [u for u in grid(written, task) if "instruction" in u]  # a written instruction is kept
    ctx = _ctx(tmp_path / "three", budget=3)
    fit_or_load(_strategy("zero-shot"), Picky(), task, ctx)
    assert len(ctx.stats["selection"]["tried"]) == 3
    one = _ctx(tmp_path / "one", budget=1)
    fit_or_load(_strategy("zero-shot"), Picky(), task, one)
    assert "selection" not in one.stats


def test_without_a_validation_split_it_says_so_and_uses_the_settings_as_written(tmp_path, capsys):
    ctx = _ctx(tmp_path, budget=4)
    fit_or_load(_strategy("zero-shot"), Picky(), routing_task(validation=False), ctx)
    assert "no validation split" in capsys.readouterr().err
    assert ctx.stats["selection"]["skipped"].startswith("no validation split") and not ctx.stats["selection"]["tried"]


def test_validation_sample_is_capped_and_few_shot_varies_its_demonstrations(tmp_path):
    backend, task = Picky(), routing_task()
    ctx = _ctx(tmp_path, budget=4, examples=3)
    fit_or_load(_strategy("few-shot", k=2, prompt_format="chat", calibrate=False), backend, task, ctx)
    sel = ctx.stats["selection"]
    assert sel["examples"] == 3 and len(sel["tried"]) == 4
    assert [t["settings"]["selection"] for t in sel["tried"]] == ["balanced", "balanced", "balanced", "similar"]
    assert not [s for s in backend.seen if "SECRET-TEST" in s]


def test_fine_tuning_candidates_are_trainings_and_the_winner_artifact_is_kept(tmp_path, tiny_encoder):
    from tunewise.backends.hf_local import HFEncoderBackend

    task = routing_task()
    backend = HFEncoderBackend(tiny_encoder, device="cpu")
    strategy = _strategy("head-only", epochs=1.0, batch_size=8)
    ctx = _ctx(tmp_path, budget=2)
    predictor, _ = fit_or_load(strategy, backend, task, ctx)
    sel = ctx.stats["selection"]
    assert sel["unit"] == "trainings" and len(sel["tried"]) == 2
    lrs = [t["settings"]["learning_rate"] for t in sel["tried"]]
    assert np.isclose(lrs[1], lrs[0] / 3)
    assert (tmp_path / "model").is_dir() and not (tmp_path / SELECTION_DIR).exists()
    again, fitted = fit_or_load(strategy, backend, task, _ctx(tmp_path, budget=2))
    assert not fitted  # --resume reloads the winner's saved model
    assert [p.output for p in again.predict(task.test)] == [p.output for p in predictor.predict(task.test)]
