"""Figures and tables for notebook 04 (pure software emulation).

The emulation technique (:mod:`kernel_sim.monitors.emulation`) runs every guest instruction in
software, either Bochs-style (``mode="interpret"``: fetch, decode and dispatch each instruction)
or QEMU-style (``mode="translate"``: translate a block once, run it from a cache many times).
This module shows what it counted (the runs and numbers come from
:mod:`kernel_sim.lessons.emulation`, re-exported here):

* :func:`emulation_run` -- one workload under one mode (cached), with its native baseline;
* :func:`work_table_html` -- the counted work of several runs side by side, with what each
  event means and what it costs;
* :func:`slowdown_rows` and :func:`slowdown_figure` -- simulated cycles relative to native for
  every workload in both modes.

All cycle numbers are **simulated**: the ``emu_*`` costs of :mod:`kernel_sim.costs` are model
assumptions, calibrated only so that the ratios resemble published ones (Bellard 2005); the
figure's title says so.
"""
from __future__ import annotations

import html

import plotly.graph_objects as go

from ..costs import technique_costs
from ..lessons.emulation import (  # noqa: F401 (re-exported: notebook 04 imports them here)
    CACHE_SIZES,
    MODE_LABELS,
    emulation_run,
    native_run,
    slowdown,
    slowdown_rows,
)
from .style import PALETTE, PATTERNS, style_figure

#: What each event of the emulation technique counts, and the cost it is charged (if any).
EVENT_MEANINGS = {
    "emulation:interpreted": ("instructions fetched, decoded and dispatched one by one",
                              "emu_dispatch"),
    "emulation:translations": ("blocks translated (first time execution reached their pc)",
                               None),
    "emulation:translated_insns": ("instructions translated into micro-ops", "emu_translate"),
    "emulation:tb_enter": ("entries into a translated block", "emu_tb_enter"),
    "emulation:block_cache_hits": ("entries that found their block already in the cache", None),
    "emulation:tb_executed": ("instructions run from translated blocks", "emu_tb_insn"),
    "emulation:tb_invalidations": ("blocks thrown away because the guest wrote to their code",
                                   None),
    "emulation:tb_flushes": ("whole-cache flushes (the micro-op buffer was full)", None),
    "emulation:soft_tlb_hits": ("memory accesses the soft TLB translated", "emu_soft_tlb_hit"),
    "emulation:soft_tlb_misses": ("soft-TLB misses: a page walk in software",
                                  "emu_soft_tlb_miss"),
    "emulation:device": ("port accesses handled by a software device model", "emu_device"),
}


def slowdown_figure(rows: list[dict[str, object]] | None = None):
    """Grouped bars: how many times slower than native each workload runs in each mode."""
    rows = slowdown_rows() if rows is None else rows
    fig = go.Figure()
    names = [r["workload"] for r in rows]
    for k, mode in enumerate(MODE_LABELS):
        fig.add_bar(x=names, y=[round(r[f"{mode}_x"], 2) for r in rows], name=MODE_LABELS[mode],
                    marker=dict(color=PALETTE[k], pattern_shape=PATTERNS[k]),
                    hovertemplate="%{x}: %{y:.1f}x native<extra>" + MODE_LABELS[mode]
                    + "</extra>")
    fig.add_hline(y=1, line_dash="dot", line_color=PALETTE[7],
                  annotation_text="native = 1", annotation_position="top left")
    style_figure(fig, "Slowdown of pure emulation against native, by workload",
                 x_title="workload (default loop count)",
                 y_title="simulated cycles / native cycles", legend_title="mode", height=460)
    fig.update_layout(barmode="group", margin_t=80,
                      title_subtitle_text="simulated cycles; the emulator's costs are model "
                                          "assumptions, not measurements")
    return fig


def work_table_html(results: dict[str, object], cpu: str = "modern") -> str:
    """An HTML table of the counted work of several emulation runs (one column per run)."""
    costs = technique_costs(cpu)
    names = list(results)
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    body = []
    for event, (meaning, cost) in EVENT_MEANINGS.items():
        counts = [results[n].monitor_events.get(event, 0) for n in names]
        if not any(counts):
            continue
        price = f"{costs[cost]} each" if cost else "(no charge)"
        cells = "".join(f"<td style='text-align:right'>{c:,}</td>" for c in counts)
        body.append(f"<tr><td><code>{html.escape(event)}</code></td><td>{html.escape(meaning)}"
                    f"</td><td>{price}</td>{cells}</tr>")
    total = "".join(f"<td style='text-align:right'><b>{results[n].cycles:,}</b></td>"
                    for n in names)
    body.append(f"<tr><td colspan='3'><b>simulated cycles in all</b></td>{total}</tr>")
    return ("<table><caption>Work the emulator counted (simulated cycles are model "
            "assumptions)</caption><thead><tr><th>event</th><th>what it counts</th>"
            f"<th>simulated cycles</th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")


def find_block(monitor, first: str):
    """The first live translated block of ``monitor`` whose first micro-op starts with
    ``first`` (e.g. ``"MUL"``); ``None`` if there is none."""
    for block in monitor.translation_blocks():
        if block["uops"] and block["uops"][0].startswith(first):
            return block
    return None


__all__ = ["MODE_LABELS", "CACHE_SIZES", "EVENT_MEANINGS", "emulation_run", "native_run",
           "slowdown", "slowdown_rows", "slowdown_figure", "work_table_html", "find_block"]
