"""Server-rendered SVG charts: geometry here, markup and number formatting in the templates.

No JavaScript and no build step: the view computes rectangles and polylines in a fixed viewBox, the template
draws them with a <title>/<desc> and a data table next to the picture, and formats every number and date in
the reader's locale. Charts scale with CSS (the viewBox keeps proportions).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

WIDTH = 640
HEIGHT = 220
LEFT = 64  # room for the y-axis labels
RIGHT = 8
TOP = 10
BOTTOM = 26  # room for the x-axis labels
X_LABELS = 6  # at most this many labels under the x-axis
BAR_HEIGHT = 22  # horizontal bar charts: one row per item
LABEL_WIDTH = 150


@dataclass(frozen=True, slots=True)
class Series:
    key: str  # a CSS class suffix (chart-s-<key>) that picks the colour
    label: Any  # shown in the legend and the table header


@dataclass(frozen=True, slots=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    series: str
    value: float


@dataclass(frozen=True, slots=True)
class Line:
    """A run of consecutive values: a polyline through them and a marker on each (a lone value shows too)."""

    series: str
    markers: list[tuple[float, float]]

    @property
    def points(self) -> str:
        return " ".join(f"{x},{y}" for x, y in self.markers)


@dataclass(frozen=True, slots=True)
class Tick:
    position: float  # y for value ticks, x for time labels
    value: Any


@dataclass(frozen=True, slots=True)
class HBar:
    label: Any
    y: float
    width: float
    value: float
    height: int = BAR_HEIGHT
    bar_x: int = LABEL_WIDTH

    @property
    def text_y(self) -> float:
        return round(self.y + BAR_HEIGHT * 0.7, 1)

    @property
    def label_x(self) -> int:
        return LABEL_WIDTH - 6

    @property
    def value_x(self) -> float:
        return round(LABEL_WIDTH + self.width + 6, 1)


@dataclass
class Chart:
    """One chart: what the SVG draws and the table that says the same in words."""

    id: str
    title: Any
    desc: Any
    kind: str  # "columns" (stacked), "lines" or "hbars"
    series: list[Series] = field(default_factory=list)
    rects: list[Rect] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)
    y_ticks: list[Tick] = field(default_factory=list)
    x_ticks: list[Tick] = field(default_factory=list)
    hbars: list[HBar] = field(default_factory=list)
    rows: list[tuple[Any, list[float | None]]] = field(
        default_factory=list
    )  # (x label, one value per series)
    x_is_time: bool = True
    unit: str = ""  # "%", "ms", "usd" or "" — how the template formats values
    width: int = WIDTH
    height: int = HEIGHT
    empty: bool = False

    @property
    def plot_left(self) -> int:
        return LEFT

    @property
    def plot_right(self) -> int:
        return self.width - RIGHT

    @property
    def baseline(self) -> int:
        return self.height - BOTTOM

    @property
    def plot_top(self) -> int:
        return TOP


def nice_ceiling(value: float) -> float:
    """Round an axis maximum up to 1, 2, 2.5 or 5 times a power of ten (and at least 1)."""
    if value <= 1:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power:
            return float(step * power)
    return float(10 * power)  # pragma: no cover - the loop always returns


def _y_ticks(top: float) -> list[Tick]:
    plot = HEIGHT - BOTTOM - TOP
    return [Tick(position=round(HEIGHT - BOTTOM - plot * f, 1), value=top * f) for f in (0, 0.5, 1)]


def _x_ticks(starts: Sequence[datetime], slot: float) -> list[Tick]:
    every = max(1, math.ceil(len(starts) / X_LABELS))
    return [
        Tick(position=round(LEFT + slot * (i + 0.5), 1), value=s)
        for i, s in enumerate(starts)
        if i % every == 0
    ]


def columns(
    *,
    id: str,
    title: Any,
    desc: Any,
    starts: Sequence[datetime],
    series: Sequence[Series],
    values: dict[str, Sequence[float]],
    unit: str = "",
) -> Chart:
    """Stacked columns over time: one column per bucket, one segment per series."""
    totals = [sum(values[s.key][i] for s in series) for i in range(len(starts))]
    top = nice_ceiling(max(totals, default=0))
    slot = (WIDTH - LEFT - RIGHT) / max(1, len(starts))
    plot = HEIGHT - BOTTOM - TOP
    rects = []
    for i in range(len(starts)):
        y = float(HEIGHT - BOTTOM)
        for s in series:
            value = values[s.key][i]
            if not value:
                continue
            height = plot * value / top
            y -= height
            rects.append(
                Rect(
                    x=round(LEFT + slot * i + slot * 0.1, 1),
                    y=round(y, 1),
                    width=round(slot * 0.8, 1),
                    height=round(height, 1),
                    series=s.key,
                    value=value,
                )
            )
    return Chart(
        id=id,
        title=title,
        desc=desc,
        kind="columns",
        series=list(series),
        rects=rects,
        y_ticks=_y_ticks(top),
        x_ticks=_x_ticks(starts, slot),
        rows=[(start, [values[s.key][i] for s in series]) for i, start in enumerate(starts)],
        unit=unit,
        empty=not any(totals),
    )


def lines(
    *,
    id: str,
    title: Any,
    desc: Any,
    starts: Sequence[datetime],
    series: Sequence[Series],
    values: dict[str, Sequence[float | None]],
    unit: str = "",
) -> Chart:
    """Lines over time; a bucket without a value breaks the line (no invented zeros)."""
    present = [v for s in series for v in values[s.key] if v is not None]
    top = nice_ceiling(max(present, default=0))
    slot = (WIDTH - LEFT - RIGHT) / max(1, len(starts))
    plot = HEIGHT - BOTTOM - TOP
    drawn = []
    for s in series:
        segment: list[tuple[float, float]] = []
        for i, value in enumerate([*values[s.key], None]):  # a trailing None closes the last segment
            if value is None:
                if segment:
                    drawn.append(Line(series=s.key, markers=segment))
                segment = []
                continue
            segment.append(
                (round(LEFT + slot * (i + 0.5), 1), round(HEIGHT - BOTTOM - plot * value / top, 1))
            )
    return Chart(
        id=id,
        title=title,
        desc=desc,
        kind="lines",
        series=list(series),
        lines=drawn,
        y_ticks=_y_ticks(top),
        x_ticks=_x_ticks(starts, slot),
        rows=[(start, [values[s.key][i] for s in series]) for i, start in enumerate(starts)],
        unit=unit,
        empty=not present,
    )


def hbars(
    *,
    id: str,
    title: Any,
    desc: Any,
    items: Sequence[tuple[Any, float]],
    label: Any,
    unit: str = "",
    top: float | None = None,
) -> Chart:
    """Horizontal bars, one per item (largest first as given); `top` fixes the scale (100 for percentages)."""
    scale = top if top is not None else nice_ceiling(max((v for _, v in items), default=0))
    span = WIDTH - LABEL_WIDTH - 90  # leave room for the value after the bar
    bars = [
        HBar(
            label=name,
            y=TOP + i * (BAR_HEIGHT + 6),
            width=round(span * min(value, scale) / scale, 1) if scale else 0,
            value=value,
        )
        for i, (name, value) in enumerate(items)
    ]
    return Chart(
        id=id,
        title=title,
        desc=desc,
        kind="hbars",
        series=[Series("a", label)],
        hbars=bars,
        rows=[(name, [value]) for name, value in items],
        x_is_time=False,
        unit=unit,
        height=TOP * 2 + max(1, len(items)) * (BAR_HEIGHT + 6),
        empty=not items,
    )


# --- the dashboards' charts -------------------------------------------------------------------------------
def _outcome_series() -> list[Series]:
    from apps.chat.models import Outcome

    return [Series(o.value, o.label) for o in (Outcome.ANSWERED, Outcome.ACTION, Outcome.FALLBACK,
                                               Outcome.HANDOFF, Outcome.ERROR)]  # fmt: skip


def activity_charts(dashboard: Any) -> list[Chart]:
    """Conversations and turns by outcome over time (tenant and platform dashboards alike)."""
    from django.utils.translation import gettext as _

    step = dashboard.window.step_label
    return [
        columns(
            id="chart-conversations",
            title=_("Conversations started (%(step)s)") % {"step": step},
            desc=_("New conversations in each interval of the chosen period."),
            starts=dashboard.starts,
            series=[Series("conversations", _("Conversations"))],
            values={"conversations": dashboard.conversations},
        ),
        columns(
            id="chart-outcomes",
            title=_("Turns by outcome (%(step)s)") % {"step": step},
            desc=_("Answered, action, fallback, handoff and error turns in each interval, stacked."),
            starts=dashboard.starts,
            series=_outcome_series(),
            values=dashboard.turns_by_outcome,
        ),
    ]


def tenant_charts(dashboard: Any) -> dict[str, Chart]:
    """Every chart of a tenant's dashboard, by name."""
    from django.utils.translation import gettext as _

    conversations, outcomes = activity_charts(dashboard)
    return {
        "conversations": conversations,
        "outcomes": outcomes,
        "latency": lines(
            id="chart-latency",
            title=_("Answer latency p50 and p95 in ms (%(step)s)") % {"step": dashboard.window.step_label},
            desc=_("Median and 95th percentile of the time to answer a turn, in milliseconds."),
            starts=dashboard.starts,
            series=[Series("p50", _("p50")), Series("p95", _("p95"))],
            values={"p50": dashboard.p50, "p95": dashboard.p95},
            unit="ms",
        ),
        "cost_region": hbars(
            id="chart-cost-region",
            title=_("Cost by region"),
            desc=_("LLM cost in US dollars in the chosen period, per conversation region."),
            items=dashboard.cost_by("region"),
            label=_("Cost (USD)"),
            unit="usd",
        ),
        "cost_channel": hbars(
            id="chart-cost-channel",
            title=_("Cost by channel"),
            desc=_("LLM cost in US dollars in the chosen period, per channel kind."),
            items=dashboard.cost_by("channel_kind"),
            label=_("Cost (USD)"),
            unit="usd",
        ),
        "cost_model": hbars(
            id="chart-cost-model",
            title=_("Cost by model"),
            desc=_("LLM cost in US dollars in the chosen period, per model."),
            items=dashboard.cost_by("model"),
            label=_("Cost (USD)"),
            unit="usd",
        ),
        "coverage": hbars(
            id="chart-coverage",
            title=_("Translation coverage"),
            desc=_("Share of articles with a current published text, per locale, over all knowledge bases."),
            items=[(row.locale, row.percent) for row in dashboard.coverage],
            label=_("Published and current"),
            unit="%",
            top=100,
        ),
        "csat_channel": hbars(
            id="chart-csat-channel",
            title=_("CSAT by channel"),
            desc=_(
                "Average satisfaction rating (1 to 5) after handoffs in the chosen period, per channel kind."
            ),
            items=[(row.key, row.average or 0.0) for row in dashboard.handoffs.by_channel],
            label=_("Average rating"),
            top=5,
        ),
    }


def platform_charts(dashboard: Any) -> dict[str, Chart]:
    """Every chart of the operators' dashboard, by name."""
    from django.utils.translation import gettext as _

    conversations, outcomes = activity_charts(dashboard)
    return {
        "conversations": conversations,
        "outcomes": outcomes,
        "cost_region": hbars(
            id="chart-cost-region",
            title=_("Cost by region"),
            desc=_("LLM cost in US dollars in the chosen period, per conversation region."),
            items=dashboard.cost_by("region"),
            label=_("Cost (USD)"),
            unit="usd",
        ),
        "cost_channel": hbars(
            id="chart-cost-channel",
            title=_("Cost by channel"),
            desc=_("LLM cost in US dollars in the chosen period, per channel kind."),
            items=dashboard.cost_by("channel_kind"),
            label=_("Cost (USD)"),
            unit="usd",
        ),
    }
