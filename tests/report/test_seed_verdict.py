"""The verdict with seeds: a leader whose seeds disagree by more than its lead over the next is not called the
winner; every strategy within its seed range contends and the cheapest is named, and the sentence says why."""

from __future__ import annotations

from tunewise.config import ConstraintsConfig
from tunewise.report.cost_model import StrategyCost
from tunewise.report.recommend import recommend


def _cost(name, quality, per_1k, family):
    return StrategyCost(name, family, quality, quality - 0.005, quality + 0.005, 0.0, per_1k, 0.01, "CPU")


LORA = _cost("lora", 0.90, 0.30, "finetuning")
FEW = _cost("few-shot", 0.88, 0.10, "prompting")
ZERO = _cost("zero-shot", 0.60, 0.05, "prompting")
SIGNIFICANT = {(a, b): 1e-4 for a in ("lora", "few-shot", "zero-shot") for b in ("lora", "few-shot", "zero-shot")}


def _spread(rng):
    return {"lora": {"metric": "accuracy", "n": 3, "seeds": [0, 1, 2], "values": [0.9, 0.9 - rng, 0.9 - rng / 2],
                     "mean": 0.9 - rng / 2, "std": rng / 2, "min": 0.9 - rng, "max": 0.9, "range": rng}}


def test_seeds_that_disagree_more_than_the_lead_deny_the_win():
    args = ([LORA, FEW, ZERO], ConstraintsConfig(), SIGNIFICANT, 2000)
    assert recommend(*args).choice == "lora"  # without seeds: significantly best
    rec = recommend(*args, spread=_spread(0.05))  # lead 2 points, seeds 5 points apart
    assert rec.choice == "few-shot" and rec.thin_evidence
    assert rec.headline.startswith("No winner on quality: lora leads few-shot by 2.0 points")
    assert "3 seeds disagree by 5.0 points" in rec.headline and "2 strategies within that spread" in rec.headline
    assert any("ranges over 5.0 points" in r for r in rec.reasons)
    assert "zero-shot" not in rec.contenders  # 30 points behind: outside the seed range


def test_seeds_that_agree_within_the_lead_keep_the_winner():
    rec = recommend([LORA, FEW, ZERO], ConstraintsConfig(), SIGNIFICANT, 2000, spread=_spread(0.01))
    assert rec.choice == "lora" and "No winner" not in rec.headline and not rec.thin_evidence
