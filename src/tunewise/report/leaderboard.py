"""The terminal leaderboard: one row per strategy, every number with its unit."""

from __future__ import annotations

from typing import Any

from rich.table import Table


def _pct(m: dict[str, float] | None) -> str:
    if not m:
        return "-"
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


def leaderboard(results: list[dict[str, Any]], title: str = "") -> Table:
    done = [r for r in results if r["status"] == "done"]
    primary = done[0]["metrics"]["primary"] if done else "accuracy"
    second = "macro_f1" if primary == "accuracy" else "token_f1"
    table = Table(title=title, title_justify="left")
    for col, justify in [("strategy", "left"), ("family", "left"),
                         (f"{primary} (95% CI)", "right"), (f"{second} (95% CI)", "right"),
                         ("trainable params", "right"), ("train (s)", "right"),
                         ("latency (ms/example)", "right"), ("prompt tokens/example", "right"),
                         ("peak RSS (MiB)", "right")]:
        table.add_column(col, justify=justify, min_width=len(col))
    for r in sort_results(results):
        m, c = r.get("metrics") or {}, r.get("cost") or {}
        if r["status"] != "done":
            table.add_row(r["strategy"], r["family"], f"[red]{r['status']}[/]", (r.get("error") or "")[:60],
                          "", "", "", "", "")
            continue
        table.add_row(
            r["strategy"], r["family"], _pct(m.get(primary)), _pct(m.get(second)), _params(c),
            f"{c.get('train_seconds', 0):.1f}", f"{1000 * c.get('seconds_per_example', 0):.1f}",
            f"{c.get('prompt_tokens_per_example', 0):.0f}", f"{c.get('peak_rss_mb', 0):.0f}")
    cut = [(r["strategy"], (r.get("cost") or {}).get("details", {}).get("truncated_inputs") or 0) for r in done]
    if any(n for _, n in cut):  # a footnote only when some input did not fit
        table.caption = ("truncated inputs (cut to fit the model's context, task.long_inputs): "
                         + ", ".join(f"{sid} {n}" for sid, n in cut if n))
        table.caption_justify = "left"
    return table
