"""Figures for comparing virtualization techniques: events by reason, cycles by category.

Both builders return a plain ``go.Figure`` or, with ``widget=True``, a ``go.FigureWidget`` that a
dashboard updates in place with the matching ``fill_*`` function (inside ``batch_update()``).
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import plotly.graph_objects as go

from ..monitors.base import CATEGORIES
from .style import PALETTE, PATTERNS, style_figure

#: how many reasons an events chart shows before grouping the rest as "other"
TOP_REASONS = 12

CATEGORY_LABELS = {"guest": "guest work", "transitions": "entering/leaving the monitor",
                   "emulation": "emulation in the monitor", "memory": "memory virtualization",
                   "devices": "device emulation"}


def event_bars(result, top: int = TOP_REASONS) -> Tuple[List[str], List[int]]:
    """(reasons, counts) of a result's monitor events, most frequent first, the rest grouped."""
    items = sorted(result.monitor_events.items(), key=lambda kv: (-kv[1], kv[0]))
    if len(items) > top:
        rest = sum(v for _, v in items[top - 1:])
        items = items[:top - 1] + [("other", rest)]
    return [k for k, _ in items], [int(v) for _, v in items]


def events_figure(result, widget: bool = False):
    """Horizontal bars: how often the monitor had to step in, by reason."""
    fig = go.FigureWidget() if widget else go.Figure()
    fig.add_bar(x=[], y=[], orientation="h", marker_color=PALETTE[0], name="events",
                hovertemplate="%{y}: %{x:,} events<extra></extra>")
    style_figure(fig, "Events the monitor handled", x_title="count (events)",
                 y_title="reason", height=420)
    fig.update_yaxes(autorange="reversed")
    fill_events(fig, result)
    return fig


def fill_events(fig, result) -> None:
    reasons, counts = event_bars(result)
    if not reasons:
        reasons, counts = ["(no monitor events)"], [0]
    fig.data[0].y = reasons
    fig.data[0].x = counts
    fig.layout.title.text = (f"Events the {result.technique} monitor handled "
                             f"({sum(result.monitor_events.values()):,} in all)")


def category_bars(title: str, x_title: str, height: int, widget: bool = False):
    """An empty stacked-bar figure with one trace per cycle category (colour and pattern each,
    so the stack reads without colour); the caller fills the bars' x and y."""
    fig = go.FigureWidget() if widget else go.Figure()
    for k, cat in enumerate(CATEGORIES):
        fig.add_bar(x=[], y=[], name=CATEGORY_LABELS[cat],
                    marker=dict(color=PALETTE[k % len(PALETTE)],
                                pattern_shape=PATTERNS[k % len(PATTERNS)]),
                    hovertemplate="%{x}: %{y:,} cycles<extra>" + CATEGORY_LABELS[cat]
                    + "</extra>")
    style_figure(fig, title, x_title=x_title, y_title="simulated cycles",
                 legend_title="category", height=height)
    fig.update_layout(barmode="stack")
    return fig


def cycles_figure(results: Dict[str, object], widget: bool = False):
    """Stacked bars: simulated cycles of each technique, split by category."""
    fig = category_bars("Simulated cycles by category", "technique", 420, widget)
    fill_cycles(fig, results)
    return fig


def fill_cycles(fig, results: Dict[str, object]) -> None:
    names = list(results)
    for k, cat in enumerate(CATEGORIES):
        fig.data[k].x = names
        fig.data[k].y = [int(results[n].cycles_by_category.get(cat, 0)) for n in names]
