"""Bar charts as SVG geometry: numbers in, rectangles, grid lines and label positions out.

Pure functions without any markup: the templates draw the `<svg>` from a `BarChart` (one
`<rect>` per bar with the series' class from office.css, `.bar-topup` / `.bar-payment`), so
the page carries no inline style and the same numbers can be shown as a table beside it.
Coordinates are in the SVG's own units (its `viewBox`); the browser scales the drawing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

#: room for the value labels left of the plot, and the group labels below it
LEFT, RIGHT, TOP, BOTTOM = 76.0, 6.0, 10.0, 26.0
#: the share of a group's width its bars take (the rest is the gap between groups)
GROUP_FILL = 0.8
#: how many grid lines above zero the value axis aims for
STEPS = 4


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    #: which series (0: the first) and which group (0: the leftmost) it stands for
    series: int
    group: int
    value: int


@dataclass(frozen=True)
class Tick:
    """A horizontal grid line at `value` (the same unit as the data)."""

    y: float
    value: int


@dataclass(frozen=True)
class GroupLabel:
    """Where the label of group `group` goes (its centre, below the plot)."""

    x: float
    y: float
    group: int


@dataclass(frozen=True)
class BarChart:
    width: int
    height: int
    left: float
    right: float
    bottom: float
    bars: list[Bar]
    ticks: list[Tick]
    labels: list[GroupLabel]


def nice_step(top: int, unit: int = 1, steps: int = STEPS) -> int:
    """A round step (1, 2, 2.5 or 5 times a power of ten, in multiples of `unit`) so that
    about `steps` of them reach `top`: grid lines people read at a glance."""
    if top <= 0:
        return unit
    raw = -(-top // steps)  # ceiling
    magnitude = unit
    while magnitude * 10 <= raw:
        magnitude *= 10
    for factor_tenths in (10, 20, 25, 50, 100):
        step = magnitude * factor_tenths // 10
        if step >= raw and step % unit == 0:
            return step
    return magnitude * 10


def bar_chart(
    series: Sequence[Sequence[int]],
    *,
    width: int = 600,
    height: int = 240,
    label_every: int = 1,
    unit: int = 1,
) -> BarChart:
    """Grouped bars: `series[s][g]` is the value of series `s` in group `g` (a day, a week).

    Values below zero are drawn as no bar (the table beside the chart has the figure). Every
    `label_every`-th group is labelled, counted from the last (today is always labelled).
    Grid values are multiples of `unit` (100 for cents shown as whole euros).
    """
    groups = max((len(values) for values in series), default=0)
    right, bottom = width - RIGHT, height - BOTTOM
    highest = max((value for values in series for value in values), default=0)
    step = nice_step(highest, unit)
    top_value = step * max(1, -(-highest // step))
    scale = (bottom - TOP) / top_value
    group_width = (right - LEFT) / max(1, groups)
    bar_width = group_width * GROUP_FILL / max(1, len(series))
    bars = []
    for s, values in enumerate(series):
        for g, value in enumerate(values):
            if value <= 0:
                continue
            bar_height = value * scale
            bars.append(
                Bar(
                    x=_round(
                        LEFT + g * group_width + group_width * (1 - GROUP_FILL) / 2 + s * bar_width
                    ),
                    y=_round(bottom - bar_height),
                    width=_round(bar_width),
                    height=_round(bar_height),
                    series=s,
                    group=g,
                    value=value,
                )
            )
    ticks = [
        Tick(y=_round(bottom - value * scale), value=value)
        for value in range(0, top_value + 1, step)
    ]
    labels = [
        GroupLabel(x=_round(LEFT + (g + 0.5) * group_width), y=float(height - 8), group=g)
        for g in range(groups)
        if (groups - 1 - g) % max(1, label_every) == 0
    ]
    return BarChart(width, height, LEFT, right, bottom, bars, ticks, labels)


def _round(value: float) -> float:
    return round(value, 2)
