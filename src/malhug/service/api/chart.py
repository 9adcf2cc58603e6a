"""The overview's verdicts-over-time chart, laid out on the server as SVG shapes.

Only numbers and day labels reach the template (no script, no inline style: colours come from
the stylesheet's classes), so the chart works under a strict Content-Security-Policy.
"""
from __future__ import annotations

from dataclasses import dataclass

STACK = ("malicious", "suspicious", "inconclusive", "clean")  # drawn bottom-up in this order
WIDTH = 720
HEIGHT = 180
LEFT = 40  # room for the scale
BOTTOM = 20  # room for the day labels


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    verdict: str
    title: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: tuple[Bar, ...]
    top: int  # the largest day's total (the scale)
    labels: tuple[tuple[float, str], ...]  # (x, day)
    plot_bottom: float
    left: int


def verdict_chart(days: list[dict]) -> Chart:
    """Stacked bars, one per day, from queries.verdicts_over_time."""
    top = max((sum(day.get(v, 0) for v in STACK) for day in days), default=0)
    plot_height = HEIGHT - BOTTOM - 10
    slot = (WIDTH - LEFT) / max(len(days), 1)
    bar_width = max(slot * 0.8, 1.0)
    bars = []
    for index, day in enumerate(days):
        x = LEFT + index * slot + (slot - bar_width) / 2
        base = HEIGHT - BOTTOM
        for verdict in STACK:
            count = int(day.get(verdict, 0))
            if not count or not top:
                continue
            height = plot_height * count / top
            base -= height
            bars.append(Bar(round(x, 2), round(base, 2), round(bar_width, 2), round(height, 2), verdict,
                            f"{day['day']}: {count} {verdict}"))
    step = max(len(days) // 6, 1)
    labels = tuple((round(LEFT + i * slot + slot / 2, 2), days[i]["day"][5:]) for i in range(0, len(days), step))
    return Chart(WIDTH, HEIGHT, tuple(bars), top, labels, HEIGHT - BOTTOM, LEFT)
