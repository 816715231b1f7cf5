"""The terminal leaderboard: one row per strategy, every number with its unit; trivial baselines and collapsed
training marked, and the primary metric's reason under the table."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table

from tunewise.evaluation.baselines import is_baseline
from tunewise.evaluation.metrics import companions
from tunewise.report import fmt
from tunewise.report.diagnose import collapsed
from tunewise.report.seeds import spread_text


def _pct(m: dict[str, float] | None, metric: str = "accuracy") -> str:
    if not m:
        return "-"
    if metric in fmt.COEFFICIENTS:
        return f"{m['value']:.3f} [{m['low']:.3f}, {m['high']:.3f}]"
    return f"{100 * m['value']:.1f}% [{100 * m['low']:.1f}, {100 * m['high']:.1f}]"


def _params(cost: dict[str, Any]) -> str:
    n = cost.get("trainable_params") or 0
    if not n:
        return "0"
    share = cost.get("trainable_share") or 0
    return f"{n / 1e6:.2f} M ({100 * share:.2f}%)" if n >= 1e4 else f"{n} ({100 * share:.3f}%)"


def sort_results(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def key(r):
        m = r.get("metrics") or {}
        primary = m.get(m.get("primary", ""), {})
        return (r["status"] != "done", -(primary.get("value") or 0))
    return sorted(results, key=key)


def leaderboard(results: list[dict[str, Any]], title: str = "", spread: dict[str, dict[str, Any]] | None = None
                ) -> Table:
    """One row per result; `spread` (report/seeds.py `seed_spread`): a column 'across seeds (mean ± std)' beside
    the primary interval for the strategies run at several seeds."""
    spread = spread or {}
    done = [r for r in results if r["status"] == "done"]
    metrics = done[0]["metrics"] if done else {"primary": "accuracy"}
    primary, beside = metrics["primary"], companions(metrics)
    table = Table(title=title, title_justify="left", caption_justify="left")
    if metrics.get("primary_reason"):
        table.caption = escape(f"ranked on {fmt.metric_name(primary)}: {metrics['primary_reason']}. "
                               "Baselines are trivial references, never recommended.")
    columns = [("strategy", "left"), ("family", "left"), (f"{primary} (95% CI)", "right"),
               *([(f"{primary} across seeds (mean ± std)", "right")] if spread else []),
               *((f"{m} (95% CI)", "right") for m in beside), ("trainable params", "right"), ("train (s)", "right"),
               ("latency (ms/example)", "right"), ("prompt tokens/example", "right"), ("peak RSS (MiB)", "right")]
    for col, justify in columns:
        table.add_column(col, justify=justify, min_width=len(col))
    for r in sort_results(results):
        m, c = r.get("metrics") or {}, r.get("cost") or {}
        if r["status"] != "done":
            table.add_row(r["strategy"], r["family"], f"[red]{r['status']}[/]",
                          escape((r.get("error") or "")[:60]), *[""] * (len(columns) - 4))
            continue
        scores = [_pct(m.get(primary), primary), *([spread_text(spread.get(r["strategy"])) or "-"] if spread else []),
                  *(_pct(m.get(x), x) for x in beside)]
        if is_baseline(r):
            what = (c.get("details") or {}).get("baseline")  # "always answering 'positive' (1)"
            shown = r["strategy"] + (f": {what}" if what else "")
            table.add_row(f"[dim]{escape(shown)}[/]", "[dim]baseline[/]", *scores, "-", "-", "-", "-", "-",
                          style="dim")
            continue
        name = escape(r["strategy"]) + (" [yellow](collapsed)[/]" if collapsed(r) else "")
        table.add_row(
            name, r["family"], *scores, _params(c),
            f"{c.get('train_seconds', 0):.1f}", f"{1000 * c.get('seconds_per_example', 0):.1f}",
            f"{c.get('prompt_tokens_per_example', 0):.0f}", f"{c.get('peak_rss_mb', 0):.0f}")
    cut = [(r["strategy"], (r.get("cost") or {}).get("details", {}).get("truncated_inputs") or 0) for r in done]
    if any(n for _, n in cut):  # a footnote only when some input did not fit
        table.caption = ("truncated inputs (cut to fit the model's context, task.long_inputs): "
                         + ", ".join(f"{sid} {n}" for sid, n in cut if n))
        table.caption_justify = "left"
    return table
