"""The verdict: pick one strategy under the user's constraints and say why, with the numbers.

Rules, in order: drop strategies that are not significantly better than the trivial baselines (majority
label, random guess; the same paired test on the primary metric) and strategies that miss a constraint
(quality, latency, monthly budget); when no strategy beats the baselines, say so and what would help; among
the rest, take the best and every strategy statistically tied with it (paired test, p >= 0.05); prefer
prompting among those when the task changes often or needs new knowledge; then take the cheapest at
the user's monthly volume. Evidence is called thin when the winner is tied with another strategy, the
top two intervals overlap, or the test set is small. With several seeds per strategy (`seeds: N`), a leader
whose seeds disagree by more than its lead over the next is not called the winner (report/seeds.py): every
strategy within its seed range is a contender, and the cheapest of them is named.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tunewise.config import ConstraintsConfig
from tunewise.evaluation.compare import ALPHA
from tunewise.report import fmt
from tunewise.report.cost_model import StrategyCost, break_even
from tunewise.report.seeds import doubt_headline, doubt_reason, seed_doubt

MIN_TEST_EXAMPLES = 100  # below this, even a 10-point difference is rarely significant


@dataclass
class Recommendation:
    choice: str | None
    headline: str
    reasons: list[str] = field(default_factory=list)
    caveats: list[str] = field(default_factory=list)
    thin_evidence: bool = False
    rejected: dict[str, str] = field(default_factory=dict)
    contenders: list[str] = field(default_factory=list)


@dataclass
class TrivialCheck:
    """Every strategy against the trivial baselines: `verdicts` from compare.versus_baselines(), `descriptions`
    of the baselines ('always answering ...'), and `hints`: what would help when none beats them."""

    verdicts: dict[str, dict[str, Any]]
    descriptions: dict[str, str]
    hints: list[str] = field(default_factory=list)
    values: dict[str, float] = field(default_factory=dict)  # baseline id -> its primary metric

    def weak(self, strategy: str) -> dict[str, Any] | None:
        verdict = self.verdicts.get(strategy)
        return verdict if verdict and not verdict["beats"] else None

    def text(self, verdict: dict[str, Any], metric: str) -> str:
        what = self.descriptions.get(verdict["baseline"], verdict["baseline"])
        worse = verdict["value"] < verdict["baseline_value"]
        how = ("significantly worse than" if worse and verdict["pvalue"] < ALPHA else
               "no better than" if worse or verdict["value"] == verdict["baseline_value"] else
               "not significantly better than")
        return (f"{how} {what} ({fmt.metric_name(metric)} "
                f"{fmt.score(metric, verdict['value'])} vs {fmt.score(metric, verdict['baseline_value'])}, "
                f"{fmt.pvalue(verdict['pvalue'])})")


def _misses(c: StrategyCost, k: ConstraintsConfig, metric: str) -> list[str]:
    out = []
    if k.min_quality is not None and c.quality < k.min_quality:
        out.append(f"{metric} {fmt.pct(c.quality)} is below your minimum of {fmt.pct(k.min_quality)}")
    if k.max_latency_ms is not None and 1000 * c.latency_s > k.max_latency_ms:
        out.append(f"latency {fmt.ms(c.latency_s)} is above your maximum of {k.max_latency_ms:g} ms")
    monthly = c.monthly(k.monthly_queries, k.horizon_months)
    if k.budget_per_month is not None and monthly > k.budget_per_month:
        out.append(f"{fmt.money(monthly)}/month is above your budget of {fmt.money(k.budget_per_month)}/month")
    return out


def recommend(costs: list[StrategyCost], constraints: ConstraintsConfig, pvalues: dict[tuple[str, str], float],
              n_test: int, metric: str = "accuracy", details: dict[str, dict[str, Any]] | None = None,
              separation: dict[str, Any] | None = None, trivial: TrivialCheck | None = None,
              spread: dict[str, dict[str, Any]] | None = None,
              predicted: dict[str, str] | None = None) -> Recommendation:
    """Pick a strategy. `pvalues[a, b]`: paired test p-value; `separation`: from compare.separation()
    for the two best strategies (with 'first' and 'second' names added); `trivial`: every strategy against
    the trivial baselines (none of `costs` is a baseline: they are never recommended); `spread`: the primary
    metric across seeds per strategy (report/seeds.py `seed_spread`); `predicted`: strategy -> how its quality
    was predicted rather than measured (a pilot's learning curve, report/pilot_verdict.py)."""
    if not costs:
        return Recommendation(None, "No strategy finished, so there is nothing to recommend yet.")
    k = constraints
    weak = {c.strategy: v for c in costs if trivial and (v := trivial.weak(c.strategy))}
    if trivial and len(weak) == len(costs):
        return _nothing_beats(costs, weak, trivial, metric, n_test)
    misses = {c.strategy: ([trivial.text(weak[c.strategy], metric)] if c.strategy in weak else [])
              + _misses(c, k, metric) for c in costs}
    feasible = [c for c in costs if not misses[c.strategy]]
    rejected = {s: "; ".join(m) for s, m in misses.items() if m}
    if not feasible:
        closest = min(costs, key=lambda c: (c.strategy in weak, len(misses[c.strategy]), -c.quality))
        rec = Recommendation(None, f"No strategy meets all your constraints. The closest is {closest.strategy}: "
                             f"{rejected[closest.strategy]}.", rejected=rejected)
        rec.reasons = _numbers(closest, k, metric, n_test)
        return rec
    leader = max(feasible, key=lambda c: c.quality)
    contenders = [c for c in feasible
                  if c is leader or pvalues.get((leader.strategy, c.strategy), 0.0) >= ALPHA]
    doubt = seed_doubt(leader, feasible, spread)
    if doubt:  # another seed could put any of `within` first: all of them contend
        contenders += [c for c in doubt["within"] if c not in contenders]
    pool = contenders
    if k.task_changes_often or k.needs_new_knowledge:
        pool = [c for c in contenders if c.family == "prompting"] or contenders
    choice = min(pool, key=lambda c: (c.monthly(k.monthly_queries, k.horizon_months), -c.quality))
    rec = Recommendation(choice.strategy, _headline(choice, leader, pool, contenders, len(feasible), len(costs),
                                                    len(weak)),
                         rejected=rejected,
                         contenders=[c.strategy for c in contenders])
    if doubt:
        rec.headline, rec.thin_evidence = doubt_headline(doubt, choice), True
    rec.reasons = _first_reasons(choice, k, metric, n_test, predicted, trivial)
    if choice is not leader:
        p = pvalues.get((leader.strategy, choice.strategy))
        rec.reasons.append(doubt_reason(doubt, leader.quality) if doubt and (p is None or p < ALPHA) else
                           f"{leader.strategy} scores {fmt.pct(leader.quality)}, but the difference is not "
                           f"significant ({fmt.pvalue(p)}), so the data cannot tell the two apart.")
    rec.reasons += _payoff(choice, contenders, k)  # break-evens against strategies as good as it
    rec.reasons += _flexibility(choice, k, (details or {}).get(choice.strategy, {}))
    rec.caveats, thin = _evidence(choice, costs, pvalues, n_test, separation)
    rec.thin_evidence = rec.thin_evidence or thin
    for name, why in rejected.items():
        rec.caveats.append(f"{name} was ruled out: {why}.")
    return rec


def _first_reasons(choice: StrategyCost, k: ConstraintsConfig, metric: str, n_test: int,
                   predicted: dict[str, str] | None, trivial: TrivialCheck | None) -> list[str]:
    """The choice's numbers (its quality predicted by a pilot's curve, when it was), then the baselines it beats."""
    reasons = _numbers(choice, k, metric, n_test)
    if predicted and choice.strategy in predicted:
        reasons[0] = f"It {predicted[choice.strategy]}."
    if trivial and choice.strategy in trivial.verdicts:
        beaten = ", ".join(f"{d} ({fmt.score(metric, trivial.values.get(b))})" for b, d in trivial.descriptions.items())
        reasons.insert(1, f"It is significantly better than the trivial baselines: {beaten}.")
    return reasons


def _nothing_beats(costs: list[StrategyCost], weak: dict[str, dict[str, Any]], trivial: TrivialCheck, metric: str,
                   n_test: int) -> Recommendation:
    """No strategy is significantly better than the trivial baselines: recommend none, say so, say what would help."""
    best = max(costs, key=lambda c: c.quality)
    v = weak[best.strategy]
    what = trivial.descriptions.get(v["baseline"], v["baseline"])
    name = fmt.metric_name(metric)
    rec = Recommendation(None, f"No strategy beats {what} on {name}: none of them has shown that it learned the "
                         "task, so none is recommended.",
                         rejected={s: trivial.text(w, metric) for s, w in weak.items()})
    q = {"value": best.quality, "low": best.quality_low, "high": best.quality_high}
    rec.reasons = [f"The best, {best.strategy}, scores {name} {fmt.interval(q, metric)} on {n_test} test examples; "
                   f"{what} scores {fmt.score(metric, v['baseline_value'])} ({v['method']}, "
                   f"{fmt.pvalue(v['pvalue'])})."]
    rec.reasons += [f"What would help — {hint}" for hint in trivial.hints]
    rec.thin_evidence = True
    return rec


def _headline(choice: StrategyCost, leader: StrategyCost, pool, contenders, n_feasible: int, n_finished: int,
              n_weak: int = 0) -> str:
    kind = "prompt engineering" if choice.family == "prompting" else "fine-tuning"
    if n_finished == 1:
        why = "it is the only strategy that finished in this run, so there is nothing to compare it with"
    elif n_feasible == 1 and n_weak == n_finished - 1:
        why = "it is the only strategy significantly better than the trivial baselines"
    elif n_feasible == 1:
        why = ("it is the only strategy that beats the trivial baselines and meets your constraints" if n_weak
               else "it is the only strategy that meets your constraints")
    elif len(contenders) == 1:
        why = "it is significantly better than every other strategy that meets your constraints"
    elif len(pool) < len(contenders):
        why = "it is as good as the best within what this test set can tell, and prompting adapts at once"
    elif choice is leader:
        why = "it scores highest and is the cheapest of those that score as well"
    else:
        why = "it is as good as the best within what this test set can tell, and cheaper at your volume"
    return f"Use {choice.strategy} ({kind}): {why}."


def _numbers(c: StrategyCost, k: ConstraintsConfig, metric: str, n_test: int) -> list[str]:
    q = {"value": c.quality, "low": c.quality_low, "high": c.quality_high}
    monthly = c.monthly(k.monthly_queries, k.horizon_months)
    shown = fmt.metric_name(metric)
    one_off = (f", its one-off cost of {fmt.money(c.one_off_usd)} spread over {k.horizon_months} months "
               "included" if c.one_off_usd >= 1e-4 else "")  # prompting's fit time is not worth a clause
    return [f"It scores {shown} {fmt.interval(q, metric)} on {n_test} test examples.",
            f"At {fmt.count(k.monthly_queries)} queries a month it costs {fmt.money(monthly)} per month "
            f"({fmt.money(c.per_1k_usd)} per 1,000 queries, priced as {c.priced_as}{one_off}).",
            f"It answers in {fmt.ms(c.latency_s)} per query (measured on this run's machine through "
            f"{c.latency_from})."]


def _payoff(choice: StrategyCost, others: list[StrategyCost], k: ConstraintsConfig) -> list[str]:
    out = []
    for other in others:
        n = break_even(choice, other) if other is not choice else None
        if n is None:
            continue
        months = n / k.monthly_queries if k.monthly_queries else float("inf")
        when = ("within the first month at your volume" if months < 1 else
                f"about {months:.1f} months at your volume" if months < 1000 else "not in decades at your volume")
        dear, cheap = (choice, other) if choice.one_off_usd > other.one_off_usd else (other, choice)
        out.append(f"{dear.strategy} costs {fmt.money(dear.one_off_usd - cheap.one_off_usd)} more up front "
                   f"and becomes cheaper than {cheap.strategy} after {fmt.count(n)} queries ({when}).")
    return out[:2]


def _flexibility(c: StrategyCost, k: ConstraintsConfig, details: dict[str, Any]) -> list[str]:
    out = []
    forgetting = details.get("forgetting")
    if forgetting is not None:
        out.append(f"Forgetting: {forgetting_text(forgetting)}.")
    if c.family == "prompting":
        out.append("As a prompting strategy it changes instantly: edit the prompt or the examples and redeploy.")
        if k.needs_new_knowledge:
            out.append("New facts can go straight into the prompt (or be retrieved into it), which is more "
                       "reliable than teaching them through training.")
    else:
        retrain = f"({fmt.duration(c.train_seconds)}, {fmt.money(c.one_off_usd)} each time)"
        out.append(f"As a fine-tuned model it needs retraining {retrain} whenever labels or instructions change"
                   + (", and you said the task changes often." if k.task_changes_often else "."))
        if k.needs_new_knowledge:
            out.append("Fine-tuning teaches format and behaviour more reliably than facts: keep new knowledge "
                       "in the prompt (retrieval) even with a fine-tuned model.")
    return out


def forgetting_text(value: Any) -> str:
    """One phrase for `cost.details.forgetting` (evaluation/forgetting.py: perplexity on general reference
    text before and after fine-tuning, and optionally a second task's score); other shapes are shown as-is."""
    if isinstance(value, dict):
        parts = []
        if isinstance(value.get("ppl_before"), int | float) and isinstance(value.get("ppl_after"), int | float):
            change = value.get("ppl_change_pct", 100 * (value["ppl_after"] / value["ppl_before"] - 1))
            parts.append(f"perplexity on general text went from {value['ppl_before']:.2f} to "
                         f"{value['ppl_after']:.2f} ({change:+.1f}%; higher means more forgotten)")
        if isinstance(value.get("second_task_before"), int | float):
            parts.append(f"{value.get('second_task', 'a second task')} went from "
                         f"{fmt.pct(value['second_task_before'])} to {fmt.pct(value.get('second_task_after'))}")
        if parts:
            return "; ".join(parts)
        before, after = value.get("before"), value.get("after")
        if isinstance(before, int | float) and isinstance(after, int | float):
            return f"{value.get('metric', 'general ability')} went from {fmt.pct(before)} before fine-tuning to " \
                   f"{fmt.pct(after)} after"
        return ", ".join(f"{key} {val}" for key, val in value.items())
    if isinstance(value, int | float):
        return f"general ability changed by {100 * value:+.1f} points"
    return str(value)


def _evidence(choice: StrategyCost, costs: list[StrategyCost], pvalues, n_test: int,
              separation: dict[str, Any] | None) -> tuple[list[str], bool]:
    caveats, thin = [], False
    tied = [c.strategy for c in costs
            if c is not choice and pvalues.get((choice.strategy, c.strategy), 0.0) >= ALPHA]
    if tied:
        thin = True
        caveats.append(f"{choice.strategy} is statistically tied with {', '.join(tied)} "
                       f"(paired test, p ≥ {ALPHA}); on this test set they cannot be told apart.")
    ranked = sorted(costs, key=lambda c: -c.quality)
    if len(ranked) > 1 and ranked[1].quality_high >= ranked[0].quality_low:
        thin = True
        caveats.append(f"The 95% intervals of the top two ({ranked[0].strategy} and {ranked[1].strategy}) "
                       "overlap.")
    top_tied = len(ranked) > 1 and pvalues.get((ranked[0].strategy, ranked[1].strategy), 0.0) >= ALPHA
    if n_test < MIN_TEST_EXAMPLES:
        thin = thin or top_tied  # a small test set can still show a large difference significantly
        caveats.append(f"Only {n_test} test examples were scored; {MIN_TEST_EXAMPLES} or more make the "
                       "estimates firmer.")
    if top_tied and separation:
        caveats.append(_more_examples(separation))
    return caveats, thin


def _more_examples(sep: dict[str, Any]) -> str:
    a, b = sep.get("first"), sep.get("second")
    if sep.get("needed") is None:
        return f"{a} and {b} score the same on average, so more test examples would not separate them."
    if not sep.get("more"):  # the normal approximation and the exact test disagree at the margin
        return (f"The gap between {a} and {b} ({100 * abs(sep['diff']):.1f} points) is at the edge of "
                f"significance: about {sep['needed']:,} test examples would be needed to confirm it.")
    return (f"To separate {a} from {b} — if the observed gap of {100 * abs(sep['diff']):.1f} points holds — about "
            f"{sep['more']:,} more test examples would be needed ({sep['needed']:,} in all; paired normal "
            "approximation, 5% level, 80% power).")
