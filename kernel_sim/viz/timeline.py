"""Figures for notebook 01: the history timeline and the VMM / guest / host picture.

* :func:`timeline_figure` draws :data:`kernel_sim.lessons.history.EVENTS` on a time axis, one row per
  category.  Every category has its own Okabe-Ito colour *and* its own marker symbol, so the rows
  stay distinguishable without colour.  Events whose date is approximate or not yet checked in a
  primary source are drawn with **open** markers, a "≈" before their label and "(approx.)" in
  their hover text; a legend entry explains the open marker.
* :func:`show_categories` hides or shows rows of a timeline figure (the category filter widget
  calls it inside ``batch_update``).
* :func:`vmm_models_figure` draws the layers of a virtualized computer twice: the hypervisor
  model (type 1) and the host model (type 2), naming the VMM, the guests and the host.
"""
from __future__ import annotations

import textwrap
from collections.abc import Iterable

import plotly.graph_objects as go

from ..lessons import history
from .style import PALETTE, style_figure

#: Colour and marker symbol of every category (colour + shape: readable without colour vision).
CATEGORY_STYLE: dict[str, tuple[str, str]] = {
    "mainframe": (PALETTE[0], "circle"),             # blue
    "theory": (PALETTE[6], "diamond"),                # yellow: all its dates are checked (filled)
    "emulation": (PALETTE[2], "square"),              # bluish green
    "full virtualization": (PALETTE[3], "triangle-up"),  # vermillion
    "paravirtualization": (PALETTE[4], "pentagon"),   # reddish purple
    "hardware assist": (PALETTE[5], "hexagon"),       # sky blue
    "host-KVM": (PALETTE[7], "star"),                 # black
    "containers": (PALETTE[1], "triangle-down"),      # orange
}
assert set(CATEGORY_STYLE) == set(history.CATEGORIES)

APPROX_LEGEND = "open marker, ≈: date approximate or not yet checked"
OUTLINE = PALETTE[7]   # black outlines and labels
MIN_GAP = 0.45   # years: markers closer than this in one row are spread apart for readability


def _wrap(text: str, width: int = 64) -> str:
    return "<br>".join(textwrap.wrap(text, width))


def _row_label(category: str) -> str:
    return f"{category}<br>{history.CATEGORY_ZH[category]}"


def _hover(e: history.Event) -> str:
    approx = "" if e.verified else " <i>(approx.: not yet checked in a primary source)</i>"
    return (f"<b>{e.name}</b><br>{e.date_label}{approx}<br>{_wrap(e.description)}"
            f"<br><i>Source:</i> {_wrap(e.citation)}")


def _positions(events) -> list:
    """x positions (years) of a row's events, spread so that no two markers overlap."""
    xs, last = [], None
    for e in events:
        x = e.when
        if last is not None and x - last < MIN_GAP:
            x = last + MIN_GAP
        xs.append(x)
        last = x
    return xs


#: The two panels of the broken time axis (years).  No event of the table falls between them.
ERAS = ((1962.0, 1978.0), (1992.0, 2016.5))


def timeline_figure(categories: Iterable[str] | None = None, widget: bool = False,
                    height: int = 600, width: int | None = None):
    """The history of virtualization as an interactive timeline.

    The time axis is broken in two panels (:data:`ERAS`: the mainframe era and 1992 onwards)
    because nothing in the table happens in between; both panels are in years.  Each category has
    a legend entry (click it to hide or show the row) and its markers in both panels share its
    ``legendgroup``.  Rows not in ``categories`` start hidden, so a widget can show them again.
    Hover over a marker for the event, its date and its source.  ``widget=True`` returns a
    ``go.FigureWidget`` for use with ipywidgets (give it a ``width`` in pixels: a FigureWidget
    does not stretch to the notebook's width the way a static figure does).
    """
    from plotly.subplots import make_subplots

    shown = set(history.CATEGORIES if categories is None else categories)
    unknown = shown - set(history.CATEGORIES)
    if unknown:
        raise ValueError(f"unknown categories {sorted(unknown)}; "
                         f"known: {', '.join(history.CATEGORIES)}")
    spans = [b - a for a, b in ERAS]
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.025,
                        column_widths=[w / sum(spans) for w in spans])
    for category in history.CATEGORIES:
        colour, symbol = CATEGORY_STYLE[category]
        visible = category in shown
        # legend entry: the filled marker of the category (data traces below have no legend)
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=category,
                                 legendgroup=category, visible=visible, hoverinfo="skip",
                                 marker=dict(size=14, color=colour, symbol=symbol,
                                             line=dict(color=OUTLINE, width=1))), row=1, col=1)
        events = history.events_by_category(category)
        xs = _positions(events)
        for col, (lo, hi) in enumerate(ERAS, start=1):
            idx = [i for i in range(len(events)) if lo <= xs[i] < hi]
            if not idx:
                continue
            pts = [(events[i], xs[i], "top center" if i % 2 == 0 else "bottom center")
                   for i in idx]
            fig.add_trace(go.Scatter(
                x=[x for _, x, _ in pts],
                y=[_row_label(category)] * len(pts),
                mode="markers+text",
                name=category,
                legendgroup=category,
                showlegend=False,
                visible=visible,
                text=[("≈ " if not e.verified else "") + e.short for e, _, _ in pts],
                textposition=[pos for _, _, pos in pts],
                textfont=dict(size=11, color=OUTLINE),
                hovertext=[_hover(e) for e, _, _ in pts],
                hoverinfo="text",
                customdata=[e.key for e, _, _ in pts],
                marker=dict(size=15, color=colour,
                            symbol=[symbol if e.verified else symbol + "-open"
                                    for e, _, _ in pts],
                            line=dict(color=[OUTLINE if e.verified else colour
                                             for e, _, _ in pts],
                                      width=[1 if e.verified else 2.5 for e, _, _ in pts])),
            ), row=1, col=col)
        if history.events_by_category(category) and not any(
                t.legendgroup == category and t.showlegend is False for t in fig.data):
            raise AssertionError(f"no events drawn for {category}")  # pragma: no cover
    # legend-only entry that explains the open markers
    fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=APPROX_LEGEND,
                             marker=dict(size=13, color=OUTLINE, symbol="circle-open",
                                         line=dict(width=2.5, color=OUTLINE)),
                             hoverinfo="skip"), row=1, col=1)
    style_figure(fig, "Virtualization from CP-40 to containers (hover a marker for details)",
                 x_title="year", y_title=None, height=height,
                 legend_title="category (colour + symbol):")
    rows = [_row_label(c) for c in history.CATEGORIES]
    fig.update_yaxes(categoryorder="array", categoryarray=rows[::-1], type="category",
                     range=[-0.7, len(rows) - 0.3], showgrid=True)
    fig.update_yaxes(title_text="category", row=1, col=1)
    for col, (lo, hi) in enumerate(ERAS, start=1):
        fig.update_xaxes(range=[lo, hi], dtick=5 if col == 2 else 4, row=1, col=col)
    fig.update_xaxes(title_text=f"year (axis break: {ERAS[0][1]:.0f} → {ERAS[1][0]:.0f})",
                     row=1, col=2)
    if width is not None:
        fig.update_layout(width=width)
    fig.update_layout(hoverlabel=dict(align="left"), margin=dict(l=170, b=150),
                      legend=dict(orientation="h", yanchor="top", y=-0.2, xanchor="left", x=0))
    return go.FigureWidget(fig) if widget else fig


def show_categories(fig, categories: Iterable[str]) -> None:
    """Show only the rows of ``categories`` in a figure made by :func:`timeline_figure`.

    Raises ValueError (and changes nothing) for an unknown category or an empty selection.
    """
    chosen = set(categories)
    unknown = chosen - set(history.CATEGORIES)
    if unknown:
        raise ValueError(f"unknown categories {sorted(unknown)}; "
                         f"known: {', '.join(history.CATEGORIES)}")
    if not chosen:
        raise ValueError("choose at least one category")
    with fig.batch_update():
        for trace in fig.data:
            if trace.legendgroup in history.CATEGORIES:
                trace.visible = trace.legendgroup in chosen


# --------------------------------------------------------------------------------------------
# VMM / guest / host: two models as stacked layers
# --------------------------------------------------------------------------------------------
def _box(fig, x0, x1, y0, y1, colour, text):
    fig.add_shape(type="rect", x0=x0, x1=x1, y0=y0, y1=y1, line=dict(color=OUTLINE, width=1.5),
                  fillcolor=colour, opacity=0.35, layer="below")
    fig.add_annotation(x=(x0 + x1) / 2, y=(y0 + y1) / 2, text=text, showarrow=False,
                       font=dict(size=12, color="#000000"), align="center")


def vmm_models_figure(height: int = 430):
    """Two stacks of layers: hypervisor model (type 1) and host model (type 2).

    Left, the VMM runs directly on the hardware and guests run on it.  Right, a host operating
    system owns the hardware, the VMM is a module of its kernel, and each guest VM is a process of
    the host next to ordinary applications.  Rings are noted where the seed text puts them.
    """
    fig = go.Figure()
    hw, vmm, guest, host, app = PALETTE[7], PALETTE[0], PALETTE[2], PALETTE[1], PALETTE[5]
    # left: hypervisor model
    _box(fig, 0, 10, 0, 1, hw, "physical hardware: CPU, memory, disks, network")
    _box(fig, 0, 10, 1, 2, vmm,
         "<b>VMM</b> (虚拟机监视器 / 虚拟化平台), ring 0<br>owns all hardware")
    for x0, n in ((0, 1), (5.1, 2)):
        _box(fig, x0, x0 + 4.9, 2, 4, guest,
             f"<b>guest VM {n}</b> (客户机)<br>guest OS kernel<br>+ its applications (ring 3)")
    # right: host model
    _box(fig, 12, 22, 0, 1, hw, "physical hardware: CPU, memory, disks, network")
    _box(fig, 12, 22, 1, 2, host,
         "<b>host OS</b> kernel (宿主机), ring 0<br>+ <b>VMM</b> as a kernel module (e.g. kvm)")
    _box(fig, 12, 16.9, 2, 4, guest,
         "<b>guest VM</b> (客户机)<br>= a process of the host<br>(e.g. QEMU) running<br>"
         "guest OS + applications")
    _box(fig, 17.1, 22, 2, 4, app, "ordinary host<br>applications (ring 3)")
    fig.add_annotation(x=5, y=4.35, text="<b>hypervisor model</b> (type 1, bare metal)",
                       showarrow=False, font=dict(size=14))
    fig.add_annotation(x=17, y=4.35,
                       text="<b>host model</b> (type 2, hosted; the seed puts KVM here)",
                       showarrow=False, font=dict(size=14))
    style_figure(fig, "Who is who: VMM, guest and host in two VMM models", height=height)
    fig.update_xaxes(visible=False, range=[-0.3, 22.3])
    fig.update_yaxes(visible=False, range=[-0.2, 4.7])
    fig.update_layout(showlegend=False, margin=dict(l=20, r=20, t=60, b=20))
    return fig


__all__ = ["CATEGORY_STYLE", "APPROX_LEGEND", "ERAS", "timeline_figure", "show_categories",
           "vmm_models_figure"]
