"""Inline SVG charts generated in Python: no plotting dependency, no script, crisp at any zoom.

matplotlib would add a heavy dependency for four simple charts and its SVG output embeds fonts as
paths (large files, text that cannot be searched or tested); hand-written SVG stays small and the
browser test can find every label.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html import escape

PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#9c755f",
           "#ff9da7", "#bab0ac"]
ML, MR, MT, MB = 84, 24, 16, 48  # margins: left (tick labels and axis title), right, top, bottom
LINE = 15  # height of a label line, in SVG units
GAP = 6  # least space between two labels on one line, in SVG units


def colors(names: Sequence[str]) -> dict[str, str]:
    """One colour per strategy, the same in every chart of a report."""
    return {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(names)}


@dataclass
class Series:
    name: str
    points: list[tuple[float, float]]
    color: str
    line: bool = True
    markers: bool = True
    dashed: bool = False
    errors: list[tuple[float, float]] | None = None  # (low, high) of y per point
    labels: list[str] | None = None  # text next to each point
    hollow: bool = False


@dataclass
class Mark:
    x: float
    y: float
    text: str
    color: str = "#333"


@dataclass
class Axis:
    lo: float
    hi: float
    log: bool = False
    fmt: Callable[[float], str] = field(default=lambda v: f"{v:g}")

    def frac(self, v: float) -> float:
        if self.log:
            v = max(v, self.lo)
            return (math.log10(v) - math.log10(self.lo)) / (math.log10(self.hi) - math.log10(self.lo))
        return (v - self.lo) / (self.hi - self.lo)

    def ticks(self) -> list[float]:
        if self.log:
            lo, hi = math.floor(math.log10(self.lo)), math.ceil(math.log10(self.hi))
            steps = (1, 2, 5) if math.log10(self.hi / self.lo) <= 2.5 else (1,)
            return [m * 10 ** e for e in range(lo, hi + 1) for m in steps if self.lo <= m * 10 ** e <= self.hi]
        return nice_ticks(self.lo, self.hi)


def nice_ticks(lo: float, hi: float, target: int = 5) -> list[float]:
    """Round tick values (1, 2, 2.5 or 5 times a power of ten) covering [lo, hi]."""
    span = hi - lo
    if span <= 0:
        return [lo]
    raw = span / target
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step - 1e-9) * step
    return [round(start + i * step, 12) for i in range(int((hi - start) / step + 1e-9) + 1)]


def axis_for(values: Sequence[float], log: bool = False, pad: float = 0.08, zero: bool = False,
             fmt: Callable[[float], str] | None = None, bounds: tuple[float, float] | None = None) -> Axis:
    """An axis that holds all values with some padding; log axes round out to powers of ten."""
    vals = [v for v in values if v is not None and math.isfinite(v) and (v > 0 or not log)] or [1.0]
    lo, hi = (min(vals), max(vals)) if bounds is None else bounds
    if log:  # pad by a factor; ticks fall on 1, 2, 5 x powers of ten inside
        lo, hi = (lo / 1.25, hi * 1.25) if bounds is None else (lo, hi)
        hi = hi * 10 if hi <= lo else hi
    else:
        if hi == lo:
            lo, hi = lo - (abs(lo) or 1) * 0.5, hi + (abs(hi) or 1) * 0.5
        span = hi - lo
        lo, hi = (0.0 if zero else lo - pad * span), hi + pad * span
        ticks = nice_ticks(lo, hi)
        step = ticks[1] - ticks[0] if len(ticks) > 1 else span
        lo, hi = math.floor(lo / step + 1e-9) * step, math.ceil(hi / step - 1e-9) * step
    return Axis(lo, hi, log, fmt or (lambda v: f"{v:g}"))


def chart(series: list[Series], x: Axis, y: Axis, xlabel: str, ylabel: str, title: str,
          marks: Sequence[Mark] = (), vlines: Sequence[tuple[float, str]] = (), width: int = 640,
          height: int = 340, legend: bool = True) -> str:
    """One SVG with axes, grid, series, optional marked points and labelled vertical lines."""
    pw, ph = width - ML - MR, height - MT - MB

    def px(v: float) -> float:
        return ML + pw * x.frac(v)

    def py(v: float) -> float:
        return MT + ph * (1 - y.frac(v))

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" '
           f'role="img" aria-label="{escape(title)}" class="chart-svg"><title>{escape(title)}</title>',
           f'<rect x="{ML}" y="{MT}" width="{pw}" height="{ph}" fill="#fff" stroke="#ccc"/>']
    for t in y.ticks():
        out.append(f'<line x1="{ML}" x2="{ML + pw}" y1="{py(t):.1f}" y2="{py(t):.1f}" stroke="#eee"/>'
                   f'<text x="{ML - 6}" y="{py(t) + 4:.1f}" text-anchor="end" class="tick">{escape(y.fmt(t))}</text>')
    for t in x.ticks():
        out.append(f'<line x1="{px(t):.1f}" x2="{px(t):.1f}" y1="{MT}" y2="{MT + ph}" stroke="#eee"/>'
                   f'<text x="{px(t):.1f}" y="{MT + ph + 16}" text-anchor="middle" class="tick">'
                   f'{escape(x.fmt(t))}</text>')
    out.append(f'<text x="{ML + pw / 2}" y="{height - 8}" text-anchor="middle" class="axis">{escape(xlabel)}</text>'
               f'<text transform="translate(14 {MT + ph / 2}) rotate(-90)" text-anchor="middle" class="axis">'
               f'{escape(ylabel)}</text>')
    for xv, text in vlines:
        out.append(f'<line x1="{px(xv):.1f}" x2="{px(xv):.1f}" y1="{MT}" y2="{MT + ph}" stroke="#888" '
                   f'stroke-dasharray="2 3"/><text x="{px(xv) - 4:.1f}" y="{MT + ph - 8}" text-anchor="end" '
                   f'class="note">{escape(text)}</text>')
    for s in series:
        out.append(_series(s, px, py))
    for m in marks:
        out.append(f'<circle cx="{px(m.x):.1f}" cy="{py(m.y):.1f}" r="4" fill="none" stroke="{m.color}" '
                   f'stroke-width="2"/>')
    # Point labels and mark labels are placed together so that none overlaps another.
    out.append(_labels([(px(a), py(b), text, "label") for s in series
                        for (a, b), text in zip(s.points, s.labels or [], strict=False)]
                       + [(px(m.x), py(m.y) + 23, m.text, "note") for m in marks if m.text], width))
    if legend:
        out.append(_legend([s for s in series if s.name], width))
    out.append("</svg>")
    return "".join(out)


def _series(s: Series, px, py) -> str:
    pts = [(px(a), py(b)) for a, b in s.points]
    g = [f'<g class="series" data-name="{escape(s.name)}">']
    if s.errors:
        for (a, _), (lo, hi) in zip(s.points, s.errors, strict=True):
            g.append(f'<line x1="{px(a):.1f}" x2="{px(a):.1f}" y1="{py(lo):.1f}" y2="{py(hi):.1f}" '
                     f'stroke="{s.color}" stroke-width="1.5" opacity="0.6"/>')
    if s.line and len(pts) > 1:
        dash = ' stroke-dasharray="6 4"' if s.dashed else ""
        path = " ".join(f"{a:.1f},{b:.1f}" for a, b in pts)
        g.append(f'<polyline points="{path}" fill="none" stroke="{s.color}" stroke-width="2"{dash}/>')
    if s.markers:
        fill = "#fff" if s.hollow else s.color
        for a, b in pts:
            g.append(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="4.5" fill="{fill}" stroke="{s.color}" stroke-width="2"/>')
    g.append("</g>")
    return "".join(g)


def _labels(items: list[tuple[float, float, str, str]], width: int) -> str:
    """Point labels, each moved down a line while it would overlap one already placed (greedy, top first);
    labels near the right edge go to the left of their point."""
    placed: list[tuple[float, float, float]] = []  # x0, x1, y of placed labels
    out = []
    for x, y, text, cls in sorted(items, key=lambda t: (t[1], t[0])):
        w = 7.2 * len(text)
        left = x + 7 + w > width - MR
        x0 = x - 7 - w if left else x + 7
        ty = y - 7
        while any(x0 - GAP < b1 and b0 < x0 + w + GAP and abs(ty - by) < LINE for b0, b1, by in placed):
            ty += LINE
        placed.append((x0, x0 + w, ty))
        anchor = ' text-anchor="end"' if left else ""
        out.append(f'<text x="{x - 7 if left else x + 7:.1f}" y="{ty:.1f}" class="{cls}"{anchor}>{escape(text)}</text>')
    return "".join(out)


def _legend(series: list[Series], width: int) -> str:
    if len(series) < 2:
        return ""
    items, x = [], ML + 8
    for s in series:
        dash = ' stroke-dasharray="6 4"' if s.dashed else ""
        items.append(f'<line x1="{x}" x2="{x + 18}" y1="{MT + 10}" y2="{MT + 10}" stroke="{s.color}" '
                     f'stroke-width="3"{dash}/><text x="{x + 22}" y="{MT + 14}" class="legend">{escape(s.name)}</text>')
        x += 34 + 7 * len(s.name)
    h = 20
    return f'<g class="legend-box"><rect x="{ML + 2}" y="{MT + 2}" width="{min(x - ML, width - ML - MR - 4)}" ' \
           f'height="{h}" fill="#fff" opacity="0.85"/>{"".join(items)}</g>'
