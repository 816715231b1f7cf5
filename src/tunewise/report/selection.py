"""What each strategy's validation selection tried and chose (strategies/_select.py), as text for `tunewise show`
and the HTML report; read from `cost.details.selection` of stored results and the run's `selection:`."""

from __future__ import annotations

from typing import Any

from tunewise.report import fmt


def budget_line(config: dict[str, Any]) -> str:
    """The budget each family had, from the run's resolved config (runs before `selection:` existed: none)."""
    sel = config.get("selection")
    if not sel:
        return "Settings were not chosen on validation in this run (it predates `selection:`)."
    n, m = sel["budget"], sel["examples"]
    if n <= 1:
        return "Settings were not chosen on validation (`selection.budget: 1`): every strategy ran as written."
    return (f"Budget for both families: each strategy tried at most {n} candidate settings, each judged once on the "
            f"same {m} validation examples (at most); a prompting candidate is one validation evaluation, a "
            f"fine-tuning candidate one training and its evaluation. Test examples are never used to choose; "
            "strategies not listed have no setting to choose.")


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    if v is None:
        return "task's own"
    return repr(v) if isinstance(v, str) and len(v) > 24 else str(v)


def settings_text(settings: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_value(v)}" for k, v in settings.items()) or "as written"


def selection_text(sel: dict[str, Any]) -> str:
    """One line: what was chosen, on how many examples, against what else (scores as percentages)."""
    if sel.get("skipped"):
        return sel["skipped"]
    metric = sel.get("metric") or "accuracy"
    tried = sel.get("tried") or []
    win = tried[sel.get("chosen_index", 0)] if tried else {"score": None}
    others = "; ".join(f"{settings_text(t['settings'])}: {fmt.score(metric, t['score'])}"
                       for i, t in enumerate(tried) if i != sel.get("chosen_index", 0))
    return (f"chose {settings_text(sel.get('chosen') or {})} ({fmt.metric_name(metric)} "
            f"{fmt.score(metric, win['score'])} on "
            f"{sel.get('examples')} validation examples; {len(tried)} of {sel.get('budget')} {sel.get('unit')} "
            f"tried{': ' + others if others else ''})")


def selections(results: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(strategy id, selection_text) for each finished result that recorded a selection."""
    out = []
    for r in results:
        sel = ((r.get("cost") or {}).get("details") or {}).get("selection")
        if r.get("status") == "done" and sel:
            out.append((r["strategy"], selection_text(sel)))
    return out
