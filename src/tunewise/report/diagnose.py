"""What the report says beyond the ranking: per-class truth for the leading strategies, collapsed training,
and, when nothing beats the trivial baselines, what would help, from what the run measured.

Every sentence here is built from the run's own numbers (per-class metrics, learning curve, collapse checks,
labels); nothing is a fixed piece of advice.
"""

from __future__ import annotations

from typing import Any

from tunewise.data.labels import looks_like_codes
from tunewise.report import fmt

FAILS_BELOW_F1 = 0.5  # a class the strategy gets wrong more often than right, on precision and recall together
RISING = 0.01  # a learning curve still rises when its last step gains at least this much (1 point)


def failing_classes(per_class: dict[str, dict[str, float]]) -> list[str]:
    """'label' (recall r%, precision p%) for every class with F1 below FAILS_BELOW_F1, worst first."""
    bad = sorted((v["f1"], label) for label, v in per_class.items() if v.get("support") and v["f1"] < FAILS_BELOW_F1)
    return [f"'{label}' (recall {fmt.pct(per_class[label]['recall'], 0)}, precision "
            f"{fmt.pct(per_class[label]['precision'], 0)})" for _, label in bad]


def per_class_truth(results: list[dict[str, Any]], names: list[str]) -> list[dict[str, Any]]:
    """For each named finished strategy: its per-class precision, recall, F1 and support, and where it fails."""
    by = {r["strategy"]: r for r in results if r["status"] == "done"}
    out = []
    for sid in names:
        pc = (by.get(sid, {}).get("metrics") or {}).get("per_class")
        if pc:
            out.append({"strategy": sid, "rows": [{"label": k, **v} for k, v in pc.items()],
                        "fails": failing_classes(pc)})
    return out


def collapsed(result: dict[str, Any]) -> dict[str, Any] | None:
    """The collapse record of a fine-tuned classifier (strategies/finetuning/_collapse.py) when its final model
    still answers one label for nearly all validation examples; None otherwise."""
    record = ((result.get("cost") or {}).get("details") or {}).get("collapse")
    return record if isinstance(record, dict) and record.get("collapsed") else None


def collapse_text(sid: str, record: dict[str, Any]) -> str:
    tried = record.get("tried") or []
    remedies = (f"even after trying {', '.join(t['remedy'] for t in tried)}" if tried
                else "and no remedy was tried")
    return (f"{sid}'s training collapsed: it answers '{record.get('label')}' for "
            f"{fmt.pct(record.get('share'), 0)} of the validation examples, {remedies}")


def what_would_help(a, best: str | None) -> list[str]:
    """Suggestions when no strategy beats the trivial baselines, each from a measurement of this run.

    `a` is the run's Analysis; `best` the strongest non-baseline strategy on the primary metric."""
    out = []
    out += _curve_hint(a)
    for r in a.done:
        record = collapsed(r)
        if record:
            out.append(collapse_text(r["strategy"], record) + "; more training examples of the rare classes, or "
                       "a larger model, give training a signal to learn from.")
    models = sorted({m for m in (a.model_of(r) for r in a.done if r["family"] != "baseline") if m})
    if models:
        out.append(f"A larger model: this run used {', '.join(models)}; small models often cannot do a task from "
                   "an instruction or a few hundred examples.")
    labels = a.labels
    if a.kind == "classification" and looks_like_codes(labels) and not a.label_names:
        out.append(f"Label names: the labels ({', '.join(labels[:6])}) look like codes, so prompting strategies "
                   "read nothing from them; name them with task.label_names (e.g. [no, yes] for 0, 1).")
    fails = next((t["fails"] for t in per_class_truth(a.results, [best] if best else []) if t["fails"]), None)
    if fails:
        out.append(f"A different formulation: the best strategy, {best}, fails on {', '.join(fails[:3])}; define "
                   "those classes in the instruction, merge classes that overlap, or add examples of them.")
    elif a.kind == "classification":
        out.append("A different formulation: a clearer instruction that defines each class, or fewer classes.")
    return out


def _curve_hint(a) -> list[str]:
    points = [p for p in (a.curve or {}).get("points", []) if p.get("train_examples")]
    tuned = {r["strategy"] for r in a.done if r["family"] == "finetuning"}
    if not points:
        if not tuned:
            return []
        return [f"More training examples may help: measure it with `tunewise curve {a.run_dir} --sizes 100,400` "
                "(fine-tuning at fewer examples shows whether the score still rises)."]
    by: dict[str, list[dict[str, Any]]] = {}
    for p in sorted(points, key=lambda p: p["train_examples"]):
        by.setdefault(p["strategy"], []).append(p)
    rising = [(s, ps[-2], ps[-1]) for s, ps in by.items()
              if len(ps) > 1 and ps[-1]["value"] - ps[-2]["value"] >= RISING]
    if rising:
        s, before, last = rising[0]
        return [f"More training examples: {s}'s learning curve still rises ({fmt.pct(before['value'])} at "
                f"{before['train_examples']:,} examples, {fmt.pct(last['value'])} at {last['train_examples']:,})."]
    return ["More training examples alone are unlikely to help: the learning curves of this run are flat at "
            "their largest sizes."]
