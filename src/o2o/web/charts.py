"""Charts as inline SVG, drawn on the server (no JavaScript library): horizontal bars, grouped
horizontal bars, stacked columns by day and a funnel.

Each function returns ``Markup`` ready to put in a template. Every chart is an ``<svg role="img">``
with a ``<title>`` and a ``<desc>`` (its figures in words, for screen readers), prints the number
next to every bar (colour is never the only carrier of meaning), escapes every text it is given,
and scales with its container (``viewBox``; ``width="100%"``). Bar lengths are proportional to the
values (the largest value fills the plot); all-zero or empty data draws empty plots, never divides
by zero. Colours meet WCAG AA (≥ 4.5:1) against white.

    bar_chart("各渠道支付订单", [BarItem("微信首页入口", 12, "12 单"), ...])
    funnel_chart("微信首页入口", [FunnelStep("访问", 120), FunnelStep("独立访客", 80, "66.7%"), ...])
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

# Text and series colours, all ≥ 4.5:1 on white.
TEXT = "#1f2329"
MUTED = "#5c6370"
GRID = "#e3e5e8"
O2O_COLOUR = "#c2410c"  # orange, 5.2:1
GOODS_COLOUR = "#1d4ed8"  # blue, 6.7:1
FUNNEL_COLOUR = "#0f766e"  # teal, 5.5:1
SERIES_COLOURS = (O2O_COLOUR, GOODS_COLOUR, FUNNEL_COLOUR, "#7c3aed", "#b42318")
FONT = 12

_ids = itertools.count(1)


@dataclass(frozen=True)
class BarItem:
    label: str
    value: int
    # What is printed next to the bar (e.g. "¥1,234.00"); the value itself when empty.
    text: str = ""


@dataclass(frozen=True)
class Series:
    """One series of a grouped or stacked chart: its name, colour and one value per group."""

    name: str
    values: Sequence[int]
    colour: str
    # Printed values, one per group (default: the numbers).
    texts: Sequence[str] = ()


@dataclass(frozen=True)
class FunnelStep:
    label: str
    value: int
    # The conversion printed beside the step, e.g. "访客→结算 40.0%" (empty for the first step).
    rate: str = ""


def _e(text: object) -> str:
    return str(escape(str(text)))


def _n(x: float) -> str:
    """A coordinate: at most one decimal, no trailing zeros."""
    return f"{x:.1f}".rstrip("0").rstrip(".")


def scale(value: int, largest: int, length: float) -> float:
    """The length of a bar for ``value`` when ``largest`` fills ``length`` (0 if nothing to
    scale by; negative values draw nothing)."""
    if largest <= 0 or value <= 0:
        return 0.0
    return length * value / largest


def _text_width(text: str, size: int = FONT) -> float:
    """A rough width of ``text`` in px: CJK characters are square, Latin ones about half."""
    return sum(size if ord(c) > 0x2E80 else size * 0.6 for c in text)


def _clip(text: str, width: float, size: int = FONT) -> str:
    """``text`` shortened with "…" to fit ``width`` px (the full text stays in the desc)."""
    if _text_width(text, size) <= width:
        return text
    while text and _text_width(text + "…", size) > width:
        text = text[:-1]
    return text + "…"


def _svg(width: float, height: float, title: str, desc: str, body: list[str], css: str) -> Markup:
    uid = f"chart{next(_ids)}"
    # Safe: every text given by callers went through _e() (escaped); the rest is numbers.
    return Markup(  # noqa: S704
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart {_e(css)}" role="img" '
        f'width="100%" viewBox="0 0 {_n(width)} {_n(height)}" '
        f'preserveAspectRatio="xMinYMin meet" aria-labelledby="{uid}-t {uid}-d" '
        f'font-size="{FONT}" fill="{TEXT}">'
        f'<title id="{uid}-t">{_e(title)}</title><desc id="{uid}-d">{_e(desc)}</desc>'
        + "".join(body)
        + "</svg>"
    )


def _empty_note(width: float, y: float) -> str:
    return (
        f'<text x="{_n(width / 2)}" y="{_n(y)}" text-anchor="middle" fill="{MUTED}">暂无数据</text>'
    )


def bar_chart(
    title: str,
    items: Sequence[BarItem],
    *,
    colour: str = GOODS_COLOUR,
    width: int = 360,
    label_width: int = 96,
    value_width: int = 84,
    bar_height: int = 18,
    gap: int = 10,
) -> Markup:
    """Horizontal bars, one per item: label on the left, the number right after the bar."""
    plot = width - label_width - value_width
    largest = max((i.value for i in items), default=0)
    body: list[str] = []
    y = 8
    for item in items:
        length = scale(item.value, largest, plot)
        text = item.text or str(item.value)
        mid = y + bar_height / 2
        body.append(
            f'<g class="bar"><text x="{label_width - 6}" y="{_n(mid)}" text-anchor="end" '
            f'dominant-baseline="central">{_e(_clip(item.label, label_width - 8))}</text>'
            f'<rect x="{label_width}" y="{y}" width="{_n(length)}" height="{bar_height}" '
            f'fill="{_e(colour)}" data-value="{item.value}"><title>{_e(item.label)}：{_e(text)}'
            f"</title></rect>"
            f'<text class="value" x="{_n(label_width + length + 4)}" y="{_n(mid)}" '
            f'dominant-baseline="central">{_e(text)}</text></g>'
        )
        y += bar_height + gap
    if not items:
        body.append(_empty_note(width, 24))
        y = 40
    desc = "；".join(f"{i.label} {i.text or i.value}" for i in items) or "暂无数据"
    return _svg(width, y, title, desc, body, "chart-bars")


def grouped_bar_chart(
    title: str,
    groups: Sequence[str],
    series: Sequence[Series],
    *,
    width: int = 360,
    label_width: int = 96,
    value_width: int = 96,
    bar_height: int = 14,
    gap: int = 12,
) -> Markup:
    """Horizontal bars grouped by ``groups`` (e.g. categories), one bar per series side by side
    (e.g. O2O and 电商), with a legend on top and the number after each bar."""
    plot = width - label_width - value_width
    largest = max((v for s in series for v in s.values), default=0)
    body = _legend(series, width)
    y = 30
    desc_parts = []
    for g, group in enumerate(groups):
        block = bar_height * len(series)
        body.append(
            f'<text x="{label_width - 6}" y="{_n(y + block / 2)}" text-anchor="end" '
            f'dominant-baseline="central" font-weight="600">{_e(_clip(group, label_width - 8))}'
            "</text>"
        )
        texts = []
        for s in series:
            value = s.values[g] if g < len(s.values) else 0
            text = s.texts[g] if g < len(s.texts) else str(value)
            length = scale(value, largest, plot)
            body.append(
                f'<rect x="{label_width}" y="{y}" width="{_n(length)}" height="{bar_height - 2}" '
                f'fill="{_e(s.colour)}" data-value="{value}"><title>{_e(group)} {_e(s.name)}：'
                f"{_e(text)}</title></rect>"
                f'<text class="value" x="{_n(label_width + length + 4)}" '
                f'y="{_n(y + (bar_height - 2) / 2)}" dominant-baseline="central" '
                f'font-size="{FONT - 1}">{_e(text)}</text>'
            )
            texts.append(f"{s.name} {text}")
            y += bar_height
        desc_parts.append(f"{group}：{'，'.join(texts)}")
        y += gap
    if not groups:
        body.append(_empty_note(width, y + 14))
        y += 30
    return _svg(width, y, title, "；".join(desc_parts) or "暂无数据", body, "chart-grouped")


def _legend(series: Sequence[Series], width: int) -> list[str]:
    parts, x = [], 0.0
    for s in series:
        parts.append(
            f'<g class="legend"><rect x="{_n(x)}" y="4" width="12" height="12" fill="{_e(s.colour)}"/>'
            f'<text x="{_n(x + 16)}" y="10" dominant-baseline="central">{_e(s.name)}</text></g>'
        )
        x += 28 + _text_width(s.name)
    return parts


def stacked_column_chart(
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    totals: Sequence[str] = (),
    height: int = 220,
    column: int = 22,
    min_width: int = 360,
    axis_text: str = "",
    max_ticks: int = 12,
) -> Markup:
    """Vertical columns, one per label (e.g. a day), each stacked from ``series`` (O2O below,
    电商 above). The total (``totals``, default the sums) is printed above each non-empty
    column — turned upright when there are many columns; every segment has its figure in a
    tooltip and the desc. At most ``max_ticks`` x-axis labels are printed (evenly spaced)."""
    n = len(labels)
    step = column + 6
    sums = [sum(s.values[i] if i < len(s.values) else 0 for s in series) for i in range(n)]
    totals = [totals[i] if i < len(totals) else str(sums[i]) for i in range(n)]
    # Upright totals when a level one would not fit over its column.
    upright = any(_text_width(t, FONT - 2) > step - 2 for t in totals)
    left, top, bottom = (
        8,
        (30 + int(max(map(_text_width, totals), default=0)) if upright else 44),
        34,
    )
    height += top - 30
    width = max(min_width, left * 2 + n * step)
    plot_h = height - top - bottom
    largest = max(sums, default=0)
    body = _legend(series, width)
    base = top + plot_h
    body.append(
        f'<line x1="{left}" y1="{base}" x2="{_n(width - left)}" y2="{base}" stroke="{MUTED}"/>'
    )
    if axis_text:
        body.append(
            f'<text x="{_n(width - left)}" y="10" text-anchor="end" fill="{MUTED}" '
            f'dominant-baseline="central">{_e(axis_text)}</text>'
        )
    every = max(1, -(-n // max_ticks))
    desc_parts = []
    for i, label in enumerate(labels):
        x = left + i * step + 3
        y = float(base)
        parts = []
        for s in series:
            value = s.values[i] if i < len(s.values) else 0
            text = s.texts[i] if i < len(s.texts) else str(value)
            h = scale(value, largest, plot_h)
            y -= h
            body.append(
                f'<rect x="{_n(x)}" y="{_n(y)}" width="{column}" height="{_n(h)}" '
                f'fill="{_e(s.colour)}" data-value="{value}"><title>{_e(label)} {_e(s.name)}：'
                f"{_e(text)}</title></rect>"
            )
            parts.append(f"{s.name} {text}")
        total = totals[i]
        if sums[i] > 0 and upright:
            cx, cy = x + column / 2, y - 4
            body.append(
                f'<text class="value" x="{_n(cx)}" y="{_n(cy)}" dominant-baseline="central" '
                f'transform="rotate(-90 {_n(cx)} {_n(cy)})" font-size="{FONT - 2}">'
                f"{_e(total)}</text>"
            )
        elif sums[i] > 0:
            body.append(
                f'<text class="value" x="{_n(x + column / 2)}" y="{_n(y - 4)}" '
                f'text-anchor="middle" font-size="{FONT - 2}">{_e(total)}</text>'
            )
        if i % every == 0:
            body.append(
                f'<text x="{_n(x + column / 2)}" y="{base + 16}" text-anchor="middle" '
                f'fill="{MUTED}" font-size="{FONT - 1}">{_e(label)}</text>'
            )
        desc_parts.append(f"{label}：{'，'.join(parts)}，合计 {total}")
    if n == 0:
        body.append(_empty_note(width, top + plot_h / 2))
    return _svg(width, height, title, "；".join(desc_parts) or "暂无数据", body, "chart-columns")


def _funnel_value(value: int, centre: float, length: float, mid: float) -> str:
    """The number in white inside a bar wide enough for it, else in dark text just after it."""
    if length >= _text_width(str(value)) + 10:
        x, anchor, fill = centre, "middle", "#ffffff"
    else:
        x, anchor, fill = centre + length / 2 + 4, "start", TEXT
    return (
        f'<text class="value" x="{_n(x)}" y="{_n(mid)}" text-anchor="{anchor}" '
        f'dominant-baseline="central" font-weight="700" fill="{fill}">{value}</text>'
    )


def funnel_chart(
    title: str,
    steps: Sequence[FunnelStep],
    *,
    colour: str = FUNNEL_COLOUR,
    width: int = 360,
    label_width: int = 64,
    bar_height: int = 20,
    gap: int = 18,
) -> Markup:
    """A funnel: one centred bar per step, widths proportional to the values (the largest
    step fills the plot), the number on the left and the conversion under each later bar."""
    plot = width - label_width - 8
    largest = max((s.value for s in steps), default=0)
    body: list[str] = []
    y = 6
    centre = label_width + plot / 2
    for i, step in enumerate(steps):
        length = scale(step.value, largest, plot)
        if i:
            if step.rate:
                body.append(
                    f'<text class="rate" x="{_n(centre)}" y="{_n(y + gap / 2)}" '
                    f'text-anchor="middle" dominant-baseline="central" fill="{MUTED}" '
                    f">↓ {_e(step.rate)}</text>"
                )
            y += gap
        mid = y + bar_height / 2
        body.append(
            f'<text x="{label_width - 6}" y="{_n(mid)}" text-anchor="end" '
            f'dominant-baseline="central">{_e(_clip(step.label, label_width - 8))}</text>'
            f'<rect x="{_n(centre - length / 2)}" y="{y}" width="{_n(length)}" '
            f'height="{bar_height}" fill="{_e(colour)}" data-value="{step.value}">'
            f"<title>{_e(step.label)}：{step.value}</title></rect>"
            + _funnel_value(step.value, centre, length, mid)
        )
        y += bar_height
    if not steps:
        body.append(_empty_note(width, 24))
        y = 40
    desc = (
        "；".join(f"{s.label} {s.value}" + (f"（{s.rate}）" if s.rate else "") for s in steps)
        or "暂无数据"
    )
    return _svg(width, y + 6, title, desc, body, "chart-funnel")
