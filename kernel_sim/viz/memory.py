"""Runs, tables and figures for notebook 08 (memory virtualization: shadow paging against EPT).

The two-dimensional walk (from :func:`kernel_sim.lessons.pagewalk.pagewalk`, which runs one cold TLB
miss through the jitted MMU and records every memory reference):

* :func:`walk_grid` -- where each reference of a walk sits in a grid (which guest entry the
  walk is looking for, which table it reads), in the order the hardware makes them;
* :func:`walk_figure` -- that grid drawn, each reference numbered by its order; with
  ``widget=True`` a ``go.FigureWidget`` that :func:`fill_walk` refills in place;
* :func:`reference_counts` and :func:`references_figure` -- the measured reference count of
  a cold walk for every guest depth n (1..4) and nested depth m (0..4), a heat map.

Whole runs of the guest under ``hw_shadow`` and ``hw_ept`` (:func:`mode_run`, from
:mod:`kernel_sim.lessons.memory`, re-exported here):

* :func:`modes_figure` -- simulated cycles by category, relative to native, mode by mode and
  workload by workload; :func:`modes_table` -- exits, TLB misses and walk references;
* :func:`tlb_sweep` and :func:`tlb_figure` -- cycles of both modes against the TLB size;
* :func:`vpid_table` -- TLB misses and cycles with and without VPID;
* :func:`ept_levels_table` -- what the nested table's depth costs.

Simulated cycles come from the cost model (:mod:`kernel_sim.costs`): a VM exit, a shadow-table
fill, a walk reference... each has a cost that is a **model assumption**, not a measurement of
any processor.  Counts (exits, TLB misses, references) are exact for the simulated machine.
"""
from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

import plotly.graph_objects as go

from ..lessons.memory import (  # noqa: F401 (re-exported: notebook 08 imports them here)
    MODE_WORKLOADS,
    MODES,
    TLB_SIZES,
    exits,
    mode_run,
    tlb_sweep,
)
from ..lessons.pagewalk import expected_references, pagewalk
from ..monitors.base import CATEGORIES  # cost categories, bottom to top in the bars
from .style import PALETTE, PATTERNS, style_figure

#: the largest depths the walk figure accepts (as the pagewalk module)
MAX_GUEST_LEVELS, MAX_NESTED_LEVELS = 4, 4


# --------------------------------------------------------------------------------------------
# the two-dimensional walk
# --------------------------------------------------------------------------------------------

def _row(level: int) -> str:
    return f"guest L{level} entry" if level else "data page"


def walk_grid(walk) -> list[dict]:
    """Every reference of a :class:`~kernel_sim.lessons.pagewalk.PageWalk`, placed in a grid.

    Returns one dict per reference, in order: ``order`` (1, 2, ...), ``row`` (what the walk is
    looking up: ``"guest L3 entry"``, ..., ``"data page"``), ``column`` (the table read:
    ``"nested L4"`` ... ``"nested L1"``, or ``"guest table"``), plus the step's ``dimension``,
    ``level``, ``address`` and ``purpose``.  The row follows from the order alone: the nested
    reads before a guest read find that guest entry; the guest read of level L ends row L; the
    nested reads after the last guest read find the data page.
    """
    native = walk.nested_levels == 0
    row = walk.guest_levels
    out = []
    for i, s in enumerate(walk.steps, 1):
        if s["dimension"] == "nested":
            column = f"nested L{s['level']}"
        else:
            column = "page table" if native else "guest table"
        out.append({"order": i, "row": _row(row), "column": column,
                    "dimension": s["dimension"], "level": s["level"],
                    "address": s["address"], "purpose": s["purpose"]})
        if s["dimension"] == "guest":
            row = s["level"] - 1
    return out


def walk_title(guest_levels: int, nested_levels: int, references: int) -> str:
    """The walk figure's title (the reference count is part of it)."""
    if nested_levels == 0:
        return (f"Native TLB miss, {guest_levels}-level page table: "
                f"{references} memory references")
    return (f"Nested TLB miss, {guest_levels}-level guest over {nested_levels}-level nested "
            f"table: {references} memory references")


def _walk_axes(guest_levels: int, nested_levels: int):
    rows = [_row(level) for level in range(guest_levels, -1 if nested_levels else 0, -1)]
    if nested_levels:
        columns = [f"nested L{level}" for level in range(nested_levels, 0, -1)] + ["guest table"]
    else:
        columns = ["page table"]
    return rows, columns


#: the walk figure's x-axis title, with and without nesting
X_TITLE_NESTED = "table read (nested levels, then the guest's own table)"
X_TITLE_NATIVE = "table read (the page table, one entry per level)"


def fill_walk(fig, guest_levels: int, nested_levels: int, walk=None):
    """Redraw ``fig`` (made by :func:`walk_figure`) for a walk; returns the PageWalk drawn."""
    walk = walk if walk is not None else pagewalk(guest_levels, nested_levels)
    grid = walk_grid(walk)
    rows, columns = _walk_axes(walk.guest_levels, walk.nested_levels)
    for trace, dim in zip(fig.data, ("nested", "guest"), strict=True):
        cells = [g for g in grid if g["dimension"] == dim]
        trace.x = [g["column"] for g in cells]
        trace.y = [g["row"] for g in cells]
        trace.text = [str(g["order"]) for g in cells]
        trace.customdata = [f"{g['address']:#010x}: {g['purpose']}" for g in cells]
    fig.data[0].visible = bool(walk.nested_levels)
    fig.update_layout(title_text=walk_title(walk.guest_levels, walk.nested_levels,
                                            walk.references))
    fig.update_xaxes(categoryorder="array", categoryarray=columns, range=[-0.5, len(columns) - 0.5],
                     title_text=X_TITLE_NESTED if walk.nested_levels else X_TITLE_NATIVE)
    fig.update_yaxes(categoryorder="array", categoryarray=rows[::-1], range=[-0.5, len(rows) - 0.5])
    return walk


def walk_figure(guest_levels: int = 4, nested_levels: int = 4, widget: bool = False):
    """The references of one cold TLB miss in a grid, each numbered by its order.

    Columns are the tables read (the nested table's levels, then the guest's table), rows what
    the walk is looking for (each guest level's entry, then the data page).  Squares: nested
    references; circles: guest references.  Hover for each reference's address and purpose.
    """
    fig = go.FigureWidget() if widget else go.Figure()
    marker = dict(size=30, line=dict(width=1, color="#000000"))
    fig.add_scatter(name="nested-table reference", mode="markers+text",
                    marker=dict(marker, symbol="square", color=PALETTE[5]),
                    textfont=dict(color="#000000"),
                    hovertemplate="step %{text}: %{customdata}<extra></extra>")
    fig.add_scatter(name="guest-table reference", mode="markers+text",
                    marker=dict(marker, symbol="circle", color=PALETTE[1]),
                    textfont=dict(color="#000000"),
                    hovertemplate="step %{text}: %{customdata}<extra></extra>")
    style_figure(fig, "walk", X_TITLE_NESTED, "what the walk is looking for", height=420,
                 legend_title="reference")
    fig.update_layout(legend=dict(orientation="h", y=-0.2))
    fill_walk(fig, guest_levels, nested_levels)
    return fig


def reference_counts(guest_levels: Iterable[int] = range(1, 5),
                     nested_levels: Iterable[int] = range(0, 5)) -> dict[tuple[int, int], int]:
    """``{(n, m): references}`` of one cold walk, *measured* by running it (m = 0: native).

    Raises RuntimeError if a measured count differs from ``(n+1)(m+1) - 1``: the formula of
    Bhargava et al. (2008) and the simulated MMU must agree.
    """
    out = {}
    for n in guest_levels:
        for m in nested_levels:
            refs = pagewalk(n, m).references
            if refs != expected_references(n, m):
                raise RuntimeError(f"walk {n} over {m}: measured {refs} references, "
                                   f"formula {expected_references(n, m)}")
            out[(n, m)] = refs
    return out


def references_figure():
    """Heat map of :func:`reference_counts`: guest levels n against nested levels m."""
    counts = reference_counts()
    ns, ms = range(1, 5), range(0, 5)
    z = [[counts[(n, m)] for m in ms] for n in ns]
    fig = go.Figure(go.Heatmap(
        z=z, x=[("native" if m == 0 else str(m)) for m in ms], y=[str(n) for n in ns],
        text=z, texttemplate="%{text}", colorscale="Cividis", colorbar=dict(title="references"),
        hovertemplate="n=%{y}, m=%{x}: %{z} references<extra></extra>"))
    style_figure(fig, "References of one cold TLB miss: (n+1)(m+1) - 1, measured",
                 "nested-table levels m (native = no nesting)", "guest page-table levels n",
                 height=360)
    fig.update_xaxes(type="category")
    fig.update_yaxes(type="category")
    return fig


# --------------------------------------------------------------------------------------------
# whole runs: hw_shadow against hw_ept
# --------------------------------------------------------------------------------------------

def modes_figure(workloads: Sequence[str] = tuple(MODE_WORKLOADS), cpu: str = "nehalem",
                 tlb_size: int = 64):
    """Stacked bars: each mode's simulated cycles by category, divided by native's cycles."""
    xs = [[], []]
    parts = {c: [] for c in CATEGORIES}
    for w in workloads:
        native = mode_run(w, "native", tlb_size=tlb_size).cycles
        for mode in MODES:
            r = mode_run(w, mode, cpu, tlb_size=tlb_size)
            xs[0].append(w)
            xs[1].append(mode.removeprefix("hw_"))
            for c in CATEGORIES:
                parts[c].append(r.cycles_by_category.get(c, 0) / native)
    fig = go.Figure()
    for i, c in enumerate(CATEGORIES):
        fig.add_bar(name=c, x=xs, y=parts[c], marker_color=PALETTE[i],
                    marker_pattern_shape=PATTERNS[i],
                    hovertemplate=f"{c}: %{{y:.2f}}x native<extra></extra>")
    style_figure(fig, f"Shadow paging against EPT, {cpu} preset, {tlb_size}-entry TLB",
                 "workload and memory mode", "simulated cycles / native cycles",
                 height=420, legend_title="cost category")
    fig.update_layout(barmode="stack")
    return fig


class HtmlTable:
    """A small table that renders as HTML in a notebook and as text elsewhere; ``rows`` holds
    the values (one dict per row) for code and tests."""

    def __init__(self, caption: str, columns: Sequence[str], rows: list[dict]):
        self.caption, self.columns, self.rows = caption, list(columns), rows

    @staticmethod
    def _fmt(v) -> str:
        if isinstance(v, float):
            return f"{v:,.2f}"
        if isinstance(v, int) and not isinstance(v, bool):
            return f"{v:,}"
        return str(v)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(self._fmt(r[c]))}</td>"
                                        for c in self.columns) + "</tr>" for r in self.rows)
        return (f"<table><caption>{html.escape(self.caption)}</caption>"
                f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")

    def __repr__(self) -> str:
        widths = [max(len(c), *(len(self._fmt(r[c])) for r in self.rows)) for c in self.columns]
        pairs = list(zip(self.columns, widths, strict=True))
        lines = [self.caption, "  ".join(c.rjust(w) for c, w in pairs)]
        lines += ["  ".join(self._fmt(r[c]).rjust(w) for c, w in pairs) for r in self.rows]
        return "\n".join(lines)


def modes_table(workloads: Sequence[str] = tuple(MODE_WORKLOADS), cpu: str = "nehalem",
                tlb_size: int = 64) -> HtmlTable:
    """Per workload and mode: VM exits, TLB misses, walk references (all, and nested), cycles
    over native, and which mode needed fewer cycles."""
    rows = []
    for w in workloads:
        native = mode_run(w, "native", tlb_size=tlb_size).cycles
        runs = {m: mode_run(w, m, cpu, tlb_size=tlb_size) for m in MODES}
        best = min(MODES, key=lambda m: runs[m].cycles)
        for m in MODES:
            r = runs[m]
            rows.append({"workload": w, "mode": m, "VM exits": exits(r),
                         "TLB misses": int(r.events["tlb_misses"]),
                         "walk refs": int(r.events["walk_refs"]),
                         "nested refs": int(r.events["nested_refs"]),
                         "x native": r.cycles / native, "cheaper": "yes" if m == best else ""})
    return HtmlTable(f"hw_shadow and hw_ept, {cpu} preset, {tlb_size}-entry TLB "
                     "(cycles: model assumptions)", list(rows[0]), rows)


def tlb_figure(workload: str, cpu: str = "nehalem", sizes: Iterable[int] = TLB_SIZES):
    """Cycles of both modes against the TLB size (logarithmic axes)."""
    data = tlb_sweep(workload, cpu, sizes)
    fig = go.Figure()
    for i, m in enumerate(MODES):
        fig.add_scatter(name=m, x=data["tlb_size"], y=data[m], mode="lines+markers",
                        marker=dict(color=PALETTE[i], symbol=("square", "circle")[i], size=9),
                        line=dict(color=PALETTE[i], dash=("solid", "dash")[i]),
                        customdata=data[f"{m} misses"],
                        hovertemplate=(f"{m}, %{{x}} entries: %{{y:,}} cycles, "
                                       "%{customdata:,} TLB misses<extra></extra>"))
    style_figure(fig, f"{workload} ({MODE_WORKLOADS.get(workload, 'default')} iterations), "
                      f"{cpu} preset: cycles against TLB size",
                 "TLB size (entries, log scale)", "simulated cycles (log scale)",
                 legend_title="memory mode")
    fig.update_xaxes(type="log", tickvals=data["tlb_size"])
    fig.update_yaxes(type="log")
    return fig


def vpid_table(workloads: Sequence[str] = tuple(MODE_WORKLOADS), cpu: str = "nehalem",
               tlb_size: int = 64) -> HtmlTable:
    """TLB misses and cycles of each mode with VPID on and off."""
    rows = []
    for w in workloads:
        for m in MODES:
            on, off = (mode_run(w, m, cpu, tlb_size=tlb_size, vpid=v) for v in (True, False))
            rows.append({"workload": w, "mode": m,
                         "misses, VPID": int(on.events["tlb_misses"]),
                         "misses, no VPID": int(off.events["tlb_misses"]),
                         "saved by VPID": int(off.events["tlb_misses"] - on.events["tlb_misses"]),
                         "cycles no VPID / VPID": off.cycles / on.cycles})
    return HtmlTable(f"VPID on and off, {cpu} preset, {tlb_size}-entry TLB", list(rows[0]), rows)


def ept_levels_table(workload: str = "ctxswitch", cpu: str = "nehalem",
                     tlb_size: int = 64) -> HtmlTable:
    """hw_ept with a 1- to 4-level nested table: TLB misses, walk references per miss (against
    the formula for the guest's 2-level table), memory cycles and all cycles."""
    from ..monitors.base import GUEST_LEVELS
    rows = []
    for levels in range(1, 5):
        r = mode_run(workload, "hw_ept", cpu, tlb_size=tlb_size, ept_levels=levels)
        misses = int(r.events["tlb_misses"])
        rows.append({"nested levels": levels, "TLB misses": misses,
                     "walk refs": int(r.events["walk_refs"]),
                     "refs per miss": r.events["walk_refs"] / max(misses, 1),
                     "formula": expected_references(GUEST_LEVELS, levels),
                     "memory cycles": int(r.cycles_by_category.get("memory", 0)),
                     "cycles": int(r.cycles)})
    return HtmlTable(f"{workload} under hw_ept, {cpu} preset, {tlb_size}-entry TLB, guest table "
                     f"of {GUEST_LEVELS} levels", list(rows[0]), rows)


__all__ = ["walk_grid", "walk_figure", "fill_walk", "walk_title", "reference_counts",
           "references_figure", "mode_run", "exits", "modes_figure", "modes_table",
           "tlb_sweep", "tlb_figure", "vpid_table", "ept_levels_table", "HtmlTable", "MODES",
           "MODE_WORKLOADS", "TLB_SIZES", "CATEGORIES"]
