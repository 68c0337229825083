"""Figures of the Virtualization Lab (notebook 07): two configurations side by side.

Three views, each a builder that returns a plain ``go.Figure`` or, with ``widget=True``, a
``go.FigureWidget``, and a ``fill_*`` function that a dashboard calls inside
``fig.batch_update()`` to show a new pair of results:

* :func:`lab_events_figure` -- grouped bars: how often each configuration's monitor had to step
  in, by exit or event reason (Intel's basic exit reasons for hardware assist, the monitor's own
  event names for the software techniques);
* :func:`lab_cycles_figure` -- stacked bars: simulated cycles of native, left and right, split
  by category, with the slowdown against native under each bar;
* :func:`lab_timeline_figure` -- VM exits so far over guest ticks (``exit_timeline``), which
  only hardware assist records.

The titles are constants (:data:`EVENTS_TITLE`, ...), so a test can find each figure on a page.
The two configurations differ by colour *and* by bar pattern / line dash / marker, and every
trace is labelled "left: ..." or "right: ...", so nothing relies on colour alone.
"""
from __future__ import annotations

import plotly.graph_objects as go

from ..experiments import records_exit_timeline
from ..monitors.base import CATEGORIES
from .style import PALETTE, style_figure
from .techniques import CATEGORY_LABELS, category_bars

EVENTS_TITLE = "Exits and monitor events by reason"
CYCLES_TITLE = "Simulated cycles by category: native, left, right"
TIMELINE_TITLE = "Exit timeline: VM exits over guest ticks"

#: the two configurations, in display order
SIDES = ("left", "right")
#: how each side is drawn: colour, bar pattern, line dash, marker symbol
SIDE_STYLE = {"left": dict(color=PALETTE[0], pattern="", dash="solid", symbol="circle"),
              "right": dict(color=PALETTE[1], pattern="/", dash="dash", symbol="x")}
#: how many reasons the events chart shows before grouping the rest as "other"
TOP_REASONS = 14
NO_EVENTS = "(no monitor events)"


def side_label(side: str, result) -> str:
    """``"left: hw_shadow"`` -- the name a configuration goes by in every chart."""
    return f"{side}: {result.technique}"


def lab_event_bars(results: dict[str, object], top: int = TOP_REASONS
                   ) -> tuple[list[str], dict[str, list[int]]]:
    """The reasons to show and each side's count per reason.

    Reasons are ordered by the larger of the two counts (most frequent first, ties by name);
    beyond ``top`` reasons the rest are added up as ``"other"``, so every side's bars still sum
    to its total number of monitor events.
    """
    reasons = set()
    for r in results.values():
        reasons.update(r.monitor_events)
    order = sorted(reasons, key=lambda k: (-max(int(r.monitor_events.get(k, 0))
                                                 for r in results.values()), k))
    if not order:
        return [NO_EVENTS], {s: [0] for s in results}
    shown = order if len(order) <= top else order[:top - 1]
    counts = {s: [int(r.monitor_events.get(k, 0)) for k in shown] for s, r in results.items()}
    if len(order) > top:
        for s, r in results.items():
            counts[s].append(int(sum(r.monitor_events.values())) - sum(counts[s]))
        shown = shown + ["other"]
    return list(shown), counts


def lab_events_figure(results: dict[str, object], widget: bool = False):
    """Grouped horizontal bars, one bar per side and reason."""
    fig = go.FigureWidget() if widget else go.Figure()
    for side in SIDES:
        st = SIDE_STYLE[side]
        fig.add_bar(x=[], y=[], orientation="h", name=side,
                    marker=dict(color=st["color"], pattern_shape=st["pattern"]),
                    hovertemplate="%{y}: %{x:,} events<extra>" + side + "</extra>")
    style_figure(fig, EVENTS_TITLE, x_title="count (exits or monitor events)",
                 y_title="reason", height=480, legend_title="configuration")
    fig.update_layout(barmode="group")
    fig.update_yaxes(autorange="reversed")
    fill_lab_events(fig, results)
    return fig


def fill_lab_events(fig, results: dict[str, object]) -> None:
    """Show ``results`` ({"left": TechniqueResult, "right": ...}) in the events chart."""
    reasons, counts = lab_event_bars(results)
    for k, side in enumerate(SIDES):
        r = results[side]
        fig.data[k].y = reasons
        fig.data[k].x = counts[side]
        fig.data[k].name = (f"{side_label(side, r)} "
                            f"({sum(r.monitor_events.values()):,} in all)")


def cycles_columns(results: dict[str, object], baselines: dict[str, object]
                   ) -> list[tuple[str, object]]:
    """The bars of the cycles chart, as (label, result): native once (twice when the two sides
    run on machines with different TLB sizes, which changes native), then left and right with
    their slowdown against their own native."""
    cols: list[tuple[str, object]] = []
    same_native = baselines["left"].cycles == baselines["right"].cycles
    if same_native:
        cols.append(("native", baselines["left"]))
    else:
        cols += [(f"native ({side}'s TLB)", baselines[side]) for side in SIDES]
    for side in SIDES:
        r, n = results[side], baselines[side]
        cols.append((f"{side_label(side, r)}<br>{slowdown(r, n):.2f}x native", r))
    return cols


def slowdown(result, baseline) -> float:
    """Simulated cycles of ``result`` over native's (1.0: as fast as the bare machine)."""
    return result.cycles / max(baseline.cycles, 1)


def lab_cycles_figure(results: dict[str, object], baselines: dict[str, object],
                      widget: bool = False):
    """Stacked bars: simulated cycles of native, left and right, split by category."""
    fig = category_bars(CYCLES_TITLE, "configuration (slowdown against native)", 480, widget)
    fill_lab_cycles(fig, results, baselines)
    return fig


def fill_lab_cycles(fig, results: dict[str, object], baselines: dict[str, object]) -> None:
    """Show the two results and their native baselines in the cycles chart."""
    cols = cycles_columns(results, baselines)
    labels = [label for label, _ in cols]
    for k, cat in enumerate(CATEGORIES):
        fig.data[k].x = labels
        fig.data[k].y = [int(r.cycles_by_category.get(cat, 0)) for _, r in cols]


def timeline_points(result) -> tuple[list[int], list[int], list[str]]:
    """(guest ticks, exits so far, exit reason) of each recorded VM exit."""
    ticks = [int(t) for t, *_ in result.exit_timeline]
    return ticks, list(range(1, len(ticks) + 1)), [str(e[1]) for e in result.exit_timeline]


def lab_timeline_figure(results: dict[str, object], widget: bool = False):
    """Cumulative VM exits over guest ticks, one stepped line per side."""
    fig = go.FigureWidget() if widget else go.Figure()
    for side in SIDES:
        st = SIDE_STYLE[side]
        fig.add_scatter(x=[], y=[], mode="lines+markers", name=side, line_shape="hv",
                        line=dict(color=st["color"], dash=st["dash"]),
                        marker=dict(symbol=st["symbol"], size=4, color=st["color"]),
                        hovertemplate="tick %{x:,}: exit %{y:,} (%{text})<extra>" + side
                        + "</extra>")
    style_figure(fig, TIMELINE_TITLE, x_title="guest ticks", y_title="VM exits so far (count)",
                 height=380, legend_title="configuration")
    fill_lab_timeline(fig, results)
    return fig


def fill_lab_timeline(fig, results: dict[str, object]) -> None:
    """Show each side's exit timeline; a software technique gets an empty line whose legend
    entry says the timeline is recorded only for hardware assist."""
    for k, side in enumerate(SIDES):
        r = results[side]
        ticks, so_far, reasons = timeline_points(r)
        fig.data[k].x, fig.data[k].y, fig.data[k].text = ticks, so_far, reasons
        if records_exit_timeline(r.technique):
            fig.data[k].name = f"{side_label(side, r)} ({len(ticks):,} exits recorded)"
        else:
            fig.data[k].name = (f"{side_label(side, r)} (no timeline: recorded only for "
                                f"hardware assist)")


__all__ = ["EVENTS_TITLE", "CYCLES_TITLE", "TIMELINE_TITLE", "SIDES", "SIDE_STYLE",
           "lab_event_bars", "lab_events_figure", "fill_lab_events", "cycles_columns",
           "slowdown", "lab_cycles_figure", "fill_lab_cycles", "timeline_points",
           "lab_timeline_figure", "fill_lab_timeline", "side_label"]
