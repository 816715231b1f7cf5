"""The headline of a learning curve: at how many training examples fine-tuning is predicted to overtake the
best prompt. Each fine-tuning strategy's measured points (curve.json, `tunewise curve` or a pilot) are fitted
with the inverse power law (evaluation/learning_curve.py) and solved for the best prompting score."""

from __future__ import annotations

from typing import Any

from tunewise.evaluation.learning_curve import MIN_SIZES, fit_inverse_power_law
from tunewise.report import fmt


def crossovers(curve: dict[str, Any]) -> list[dict[str, Any]]:
    """Per fine-tuning strategy with MIN_SIZES or more sized points: {'strategy', 'prompt', 'prompt_value',
    'examples' (the crossover in training examples; None when its curve levels off below the prompt),
    'asymptote', 'smallest', 'largest' (the measured sizes)}. Empty without a prompting reference."""
    prompts = [b for b in curve.get("baselines", []) if b.get("family") == "prompting"]
    if not prompts:
        return []
    best = max(prompts, key=lambda b: b["value"])
    points: dict[str, list[tuple[float, float]]] = {}
    for p in curve.get("points", []):
        n = p.get("train_examples") or p.get("size")
        if n:
            points.setdefault(p["strategy"], []).append((float(n), float(p["value"])))
    out = []
    for strategy, xy in points.items():
        if len({n for n, _ in xy}) < MIN_SIZES:
            continue
        sizes, values = zip(*sorted(xy), strict=True)
        try:
            fit = fit_inverse_power_law(sizes, values)
        except (ValueError, RuntimeError):
            continue
        out.append({"strategy": strategy, "prompt": best["strategy"], "prompt_value": best["value"],
                    "examples": fit.reaches(best["value"]), "asymptote": fit.a, "smallest": sizes[0],
                    "largest": sizes[-1], "ahead_at_smallest": values[0] >= best["value"]})
    return sorted(out, key=lambda c: (c["examples"] is None, c["examples"] or 0))


def crossover_lines(curve: dict[str, Any]) -> list[str]:
    """One sentence per fine-tuning strategy, the earliest crossover first (the headline)."""
    metric = curve.get("metric", "accuracy")
    lines = []
    for c in crossovers(curve):
        prompt = f"the best prompt, {c['prompt']} ({fmt.score(metric, c['prompt_value'])})"
        if c["ahead_at_smallest"]:
            lines.append(f"{c['strategy']} is already ahead of {prompt} at {int(c['smallest']):,} training examples.")
        elif c["examples"] is None:
            lines.append(f"{c['strategy']} is not predicted to overtake {prompt}: its learning curve levels off "
                         f"at {fmt.score(metric, c['asymptote'])}.")
        else:
            where = "within" if c["examples"] <= c["largest"] else "beyond"
            lines.append(f"{c['strategy']} is predicted to overtake {prompt} at about "
                         f"{fmt.count(c['examples'])} training examples ({where} the measured "
                         f"{int(c['smallest']):,}–{int(c['largest']):,}; inverse power law fit).")
    return lines
