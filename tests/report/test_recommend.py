"""The verdict under constraints: winners, ties, flexibility, thin evidence and rejected strategies."""

from __future__ import annotations

from tunewise.config import ConstraintsConfig
from tunewise.report.cost_model import StrategyCost
from tunewise.report.recommend import recommend


def cost(name, quality, one_off, per_1k, family="finetuning", latency=0.01, half=0.03, train_s=60.0):
    return StrategyCost(name, family, quality, quality - half, quality + half, one_off, per_1k, latency, "CPU",
                        train_seconds=train_s)


def pv(**pairs):
    """pv(lora__few=0.3) -> both orders of the pair."""
    out = {}
    for key, p in pairs.items():
        a, b = key.replace("_", "-").split("--")
        out[a, b] = out[b, a] = p
    return out


FEW = cost("few-shot", 0.80, 0.0, 0.80, family="prompting", latency=0.2, train_s=0.0)
LORA = cost("lora", 0.90, 2.0, 0.30)
ZERO = cost("zero-shot", 0.60, 0.0, 0.50, family="prompting", latency=0.1, train_s=0.0)


def test_significant_winner_is_chosen_with_its_numbers():
    rec = recommend([FEW, LORA, ZERO], ConstraintsConfig(monthly_queries=10_000),
                    pv(lora__few_shot=0.001, lora__zero_shot=1e-9, few_shot__zero_shot=1e-6), n_test=500)
    assert rec.choice == "lora" and "significantly better" in rec.headline and "fine-tuning" in rec.headline
    text = " ".join(rec.reasons)
    assert "90.0% (95% CI 87.0%–93.0%)" in text and "500 test examples" in text
    assert "$3.17 per month" in text  # 10 x $0.30 + $2.00 / 12
    assert "10.0 ms" in text and "retraining" in text
    assert not rec.thin_evidence


def test_tie_goes_to_the_cheaper_at_the_users_volume():
    pricey = cost("full-finetune", 0.91, 20.0, 5.0)
    rec = recommend([pricey, LORA], ConstraintsConfig(monthly_queries=100_000), pv(full_finetune__lora=0.4),
                    n_test=300)
    assert rec.choice == "lora"
    assert any("full-finetune scores 91.0%" in r and "not significant (p = 0.400)" in r for r in rec.reasons)
    assert rec.thin_evidence and any("statistically tied with full-finetune" in c for c in rec.caveats)


def test_changing_task_prefers_prompting_among_ties_and_break_even_is_explained():
    rec = recommend([FEW, LORA], ConstraintsConfig(monthly_queries=1000, task_changes_often=True),
                    pv(lora__few_shot=0.2), n_test=200)
    assert rec.choice == "few-shot" and "prompting adapts at once" in rec.headline
    text = " ".join(rec.reasons)
    assert "changes instantly" in text
    # 2.00 + 0.0003 N = 0.0008 N -> 4,000 queries, 4 months at 1,000 a month
    assert "lora costs $2.00 more up front and becomes cheaper than few-shot after 4,000 queries" in text
    assert "about 4.0 months at your volume" in text


def test_constraints_rule_strategies_out():
    k = ConstraintsConfig(min_quality=0.85, max_latency_ms=50, monthly_queries=10_000)
    rec = recommend([FEW, LORA, ZERO], k, pv(lora__few_shot=0.001, lora__zero_shot=1e-9), n_test=500)
    assert rec.choice == "lora"
    assert "below your minimum of 85.0%" in rec.rejected["few-shot"]
    assert "above your maximum of 50 ms" in rec.rejected["few-shot"]
    budget = recommend([FEW, LORA], ConstraintsConfig(monthly_queries=10_000, budget_per_month=3.0),
                       pv(lora__few_shot=0.001), n_test=500)
    assert budget.choice is None and "No strategy meets all your constraints" in budget.headline
    assert "above your budget of $3.00/month" in budget.rejected["lora"]


def test_thin_evidence_estimates_the_examples_needed():
    sep = {"first": "lora", "second": "few-shot", "n": 40, "needed": 151, "more": 111, "diff": 0.1}
    few, lora = cost("few-shot", 0.80, 0.0, 0.80, "prompting", half=0.1), cost("lora", 0.90, 2.0, 0.30, half=0.1)
    rec = recommend([few, lora], ConstraintsConfig(), pv(lora__few_shot=0.3), n_test=40, separation=sep)
    assert rec.thin_evidence
    text = " ".join(rec.caveats)
    assert "Only 40 test examples" in text and "111 more test examples" in text and "151 in all" in text
    assert "overlap" in text


def test_forgetting_and_new_knowledge_are_reported():
    # the shape evaluation/forgetting.py writes into cost.details.forgetting
    details = {"lora": {"forgetting": {"ppl_before": 12.5, "ppl_after": 15.0, "ppl_change_pct": 20.0,
                                       "second_task": "sst2", "second_task_before": 0.8, "second_task_after": 0.7}}}
    rec = recommend([LORA], ConstraintsConfig(needs_new_knowledge=True), {}, n_test=500, details=details)
    text = " ".join(rec.reasons)
    assert "perplexity on general text went from 12.50 to 15.00 (+20.0%" in text
    assert "sst2 went from 80.0% to 70.0%" in text
    assert "keep new knowledge in the prompt" in text
    assert "forgetting" not in " ".join(recommend([LORA], ConstraintsConfig(), {}, n_test=500).reasons).lower()


def test_nothing_finished():
    rec = recommend([], ConstraintsConfig(), {}, n_test=0)
    assert rec.choice is None and "nothing to recommend" in rec.headline


def test_small_but_significant_is_flagged_without_calling_it_thin():
    few, zero = cost("few-shot", 0.40, 0.0, 0.8, "prompting", half=0.05), cost("zero-shot", 0.05, 0.0, 0.5, "prompting")
    rec = recommend([few, zero], ConstraintsConfig(), pv(few_shot__zero_shot=1e-6), n_test=40,
                    separation={"first": "few-shot", "second": "zero-shot", "n": 40, "needed": 15, "more": 0,
                                "diff": 0.35})
    assert rec.choice == "few-shot" and not rec.thin_evidence
    assert any("Only 40 test examples" in c for c in rec.caveats)
    assert not any("test examples would be needed" in c for c in rec.caveats)
