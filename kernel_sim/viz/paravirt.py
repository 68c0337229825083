"""Figures for notebook 06 (paravirtualization).

The runs and their numbers come from :mod:`kernel_sim.lessons.paravirt` (re-exported here),
which asks :mod:`kernel_sim.experiments` (cached, so a dashboard that goes back to a setting it
has shown is instant):

* :func:`pv_run` -- the PARAVIRT guest under the ``paravirt`` monitor, for a workload, an
  ``mmu_update`` batch size and a loop count; :func:`native_run` -- the plain guest natively;
* :func:`batch_sweep` -- ``mmu_update`` hypercalls and page-table entries updated, for a list
  of batch sizes.

Figures (each builder returns a ``go.Figure``, or with ``widget=True`` a ``go.FigureWidget``
that a dashboard refills in place with the matching ``fill_*`` inside ``batch_update()``):

* :func:`batch_figure` -- hypercalls and PTE updates against the batch size, the chosen size
  marked;
* :func:`hypercalls_figure` -- one run's hypercalls by name;
* :func:`ring_figure` -- who runs in which ring: native, Xen on 32-bit and on 64-bit x86;
* :func:`slowdown_figure` -- simulated cycles per operation, paravirt over native, workload by
  workload (:func:`per_operation`).

Simulated cycles come from the cost model (:mod:`kernel_sim.costs`): its monitor costs are
model assumptions, not measurements of Xen.
"""
from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go

from ..lessons.paravirt import (  # noqa: F401 (re-exported: notebook 06 imports them here)
    BATCH_WORKLOADS,
    BATCHES,
    batch_sweep,
    hypercall_bars,
    mmu_updates,
    native_run,
    per_operation,
    pte_updates,
    pv_run,
)
from .style import PALETTE, style_figure


# ---- the batch figure -----------------------------------------------------------------------
def batch_title(workload: str) -> str:
    return f"Page-table updates and mmu_update hypercalls: {workload}"


def batch_figure(workload: str, batch: int, count: int | None = None, widget: bool = False):
    """Lines: ``mmu_update`` hypercalls and PTE updates against the batch size (log scale),
    for :data:`BATCHES` and ``batch``; a diamond marks ``batch``."""
    fig = go.FigureWidget() if widget else go.Figure()
    fig.add_scatter(x=[], y=[], mode="lines+markers", name="mmu_update hypercalls",
                    line=dict(color=PALETTE[0]), marker=dict(symbol="circle", size=8),
                    hovertemplate="batch %{x}: %{y:,} hypercalls<extra></extra>")
    fig.add_scatter(x=[], y=[], mode="lines+markers", name="page-table entries updated",
                    line=dict(color=PALETTE[1], dash="dash"), marker=dict(symbol="square"),
                    hovertemplate="batch %{x}: %{y:,} entries<extra></extra>")
    fig.add_scatter(x=[], y=[], mode="markers", name="chosen batch size",
                    marker=dict(symbol="diamond", size=15, color=PALETTE[3]),
                    hovertemplate="batch %{x}: %{y:,} hypercalls<extra></extra>")
    style_figure(fig, batch_title(workload), x_title="batch size (PTE updates per hypercall)",
                 y_title="count", height=400, legend_title="what is counted")
    fig.update_xaxes(type="log", tickvals=list(BATCHES), ticktext=[str(b) for b in BATCHES])
    fig.update_yaxes(rangemode="tozero")
    fill_batch(fig, workload, batch, count)
    return fig


def fill_batch(fig, workload: str, batch: int, count: int | None = None) -> None:
    sweep = batch_sweep(workload, count, BATCHES + (batch,))
    fig.data[0].x, fig.data[0].y = sweep["batch"], sweep["hypercalls"]
    fig.data[1].x, fig.data[1].y = sweep["batch"], sweep["pte_updates"]
    fig.data[2].x, fig.data[2].y = [batch], [mmu_updates(pv_run(workload, batch, count))]
    fig.layout.title.text = batch_title(workload)


# ---- hypercalls of one run ------------------------------------------------------------------
def hypercalls_figure(result, widget: bool = False):
    """Horizontal bars: a paravirt run's hypercalls by name."""
    fig = go.FigureWidget() if widget else go.Figure()
    fig.add_bar(x=[], y=[], orientation="h", marker_color=PALETTE[2], name="hypercalls",
                hovertemplate="%{y}: %{x:,} hypercalls<extra></extra>")
    style_figure(fig, "Hypercalls", x_title="count (hypercalls)", y_title="hypercall",
                 height=400)
    fig.update_yaxes(autorange="reversed")
    fill_hypercalls(fig, result)
    return fig


def fill_hypercalls(fig, result) -> None:
    names, counts = hypercall_bars(result)
    fig.data[0].y, fig.data[0].x = names, counts
    fig.layout.title.text = f"Hypercalls of this run ({sum(counts):,} in all)"


# ---- rings ------------------------------------------------------------------------------------
#: who runs in which ring (rows: ring 0..3) in three systems
RING_USE = {
    "native x86": ("kernel", "(unused)", "(unused)", "applications"),
    "Xen PV, 32-bit x86": ("Xen (hypervisor)", "guest kernel", "(unused)", "applications"),
    "Xen PV, 64-bit x86": ("Xen (hypervisor)", "(unused)", "(unused)",
                           "guest kernel and applications<br>(separate page tables)"),
}
_RING_COLOUR = {"kernel": 0, "Xen (hypervisor)": 3, "guest kernel": 1, "applications": 2,
                "(unused)": None}


def ring_figure():
    """A grid: rows ring 0..3, one column per system; each cell says what runs there."""
    systems = list(RING_USE)
    fig = go.Figure()
    for col, name in enumerate(systems):
        for ring, who in enumerate(RING_USE[name]):
            key = who.split("<br>")[0]
            k = _RING_COLOUR.get(key, 1 if "guest kernel" in key else None)
            colour = "#EEEEEE" if k is None else PALETTE[k]
            fig.add_shape(type="rect", x0=col - 0.45, x1=col + 0.45, y0=ring - 0.42,
                          y1=ring + 0.42, fillcolor=colour, opacity=0.35 if k is None else 0.8,
                          line=dict(color="#444444", width=1))
            fig.add_annotation(x=col, y=ring, text=who, showarrow=False,
                               font=dict(color="#000000" if k in (None, 1, 6) else "#FFFFFF"))
    fig.add_scatter(x=systems, y=[None] * len(systems), mode="markers", showlegend=False,
                    hoverinfo="skip")
    style_figure(fig, "Who runs in which ring", x_title="system", y_title="privilege level",
                 height=360)
    fig.update_yaxes(tickvals=[0, 1, 2, 3], ticktext=[f"ring {r}" for r in range(4)],
                     range=[3.6, -0.6], showgrid=False, zeroline=False)
    fig.update_xaxes(tickvals=list(range(len(systems))), ticktext=systems,
                     range=[-0.6, len(systems) - 0.4], showgrid=False)
    return fig


# ---- native against paravirt, workload by workload ---------------------------------------------
def slowdown_figure(workloads: Sequence[str]):
    """Bars: simulated cycles per operation under paravirt divided by native (model costs)."""
    rows = [per_operation(w) for w in workloads]
    fig = go.Figure()
    fig.add_bar(x=[r["workload"] for r in rows], y=[round(r["ratio"], 2) for r in rows],
                marker_color=PALETTE[0], name="paravirt / native",
                customdata=[[r["native"], r["paravirt"], r["hypercalls"], r["reflected"]]
                            for r in rows],
                hovertemplate="%{x}: %{y:.2f}x native<br>%{customdata[0]:,.0f} vs "
                              "%{customdata[1]:,.0f} cycles per operation<br>"
                              "%{customdata[2]:.1f} hypercalls and %{customdata[3]:.1f} "
                              "reflected traps per operation<extra></extra>")
    fig.add_hline(y=1, line_dash="dot", line_color=PALETTE[7])
    style_figure(fig, "Paravirt against native: simulated cycles per operation (model costs)",
                 x_title="workload", y_title="paravirt / native (cycles per operation)",
                 height=380)
    return fig


__all__ = ["pv_run", "native_run", "batch_sweep", "mmu_updates", "pte_updates",
           "hypercall_bars", "batch_figure", "fill_batch", "hypercalls_figure",
           "fill_hypercalls", "ring_figure", "per_operation", "slowdown_figure", "BATCHES",
           "BATCH_WORKLOADS"]
