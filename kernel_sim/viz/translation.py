"""Figures and tables for notebook 05: full virtualization without hardware support.

A VMM without help from the processor runs the guest kernel *deprivileged* -- in ring 1, below
the monitor in ring 0 and above the guest's applications in ring 3 (*ring compression*) -- and
keeps control in two ways: privileged instructions trap and are emulated (``trap_emulate``), or
guest kernel code is rewritten into a translation cache first (``binary_translation``).  Both
keep **shadow page tables**.  This module shows what they counted (the runs and the numbers
come from :mod:`kernel_sim.lessons.translation`, re-exported here):

* :func:`ring_compression_figure` -- who runs in which ring, on the bare machine and under the
  VMM;
* :func:`technique_run` -- one workload under one technique (cached);
* :func:`per_operation` -- the monitor's events for *one* iteration of a workload's loop:
  the difference of two runs whose loop counts differ, divided by that difference, so that the
  boot and the shutdown cancel out;
* :func:`emulate_matrix` / :func:`emulate_heatmap` -- which privileged (and, on the strict ISA,
  sensitive) instructions trap, and how often per iteration, workload by workload;
* :func:`shadow_rows` / :func:`shadow_table_html` -- the shadow-paging counters per iteration;
* :func:`block_rows` / :func:`block_table_html` -- a guest kernel block beside its translation;
* :func:`callouts` -- a binary-translation run's callouts by kind;
* :func:`cycles_per_operation`, :func:`comparison_rows` / :func:`comparison_figure` --
  simulated cycles of one iteration under ``trap_emulate``, ``binary_translation`` and native,
  on several workloads.

Every cycle number is **simulated**: the monitor costs of :mod:`kernel_sim.costs` are model
assumptions chosen for plausible relative sizes, not measurements, and the figures say so.
``trap_emulate`` runs on the *strict* ISA unless asked otherwise (on the default ISA it misses
POPF and friends, see notebook 03); ``binary_translation`` and native run on the default ISA,
which is what the translator was made for.
"""
from __future__ import annotations

import html
from collections.abc import Sequence

import plotly.graph_objects as go

from ..lessons.translation import (  # noqa: F401 (re-exported: the notebook imports them here)
    COMPARE_WORKLOADS,
    OPERATION_COUNTS,
    SHADOW_EVENTS,
    TECHNIQUES,
    callouts,
    comparison_rows,
    cycles_per_operation,
    default_strict,
    emulate_matrix,
    per_operation,
    shadow_rows,
    technique_run,
)
from .style import PALETTE, PATTERNS, style_figure


def emulate_heatmap(workloads: Sequence[str] = COMPARE_WORKLOADS, strict: bool = True):
    """Heat map with numbers: emulated instructions per iteration, workload by mnemonic."""
    rows, names, values = emulate_matrix(workloads, strict)
    text = [[f"{v:g}" if v else "" for v in row] for row in values]
    fig = go.Figure(go.Heatmap(
        z=values, x=[n.upper() for n in names], y=rows, text=text, texttemplate="%{text}",
        colorscale=[[0, "#FFFFFF"], [1, PALETTE[0]]], colorbar=dict(title="per iteration"),
        hovertemplate="%{y}: %{x} emulated %{z} times per iteration<extra></extra>"))
    isa = "strict ISA" if strict else "default ISA"
    style_figure(fig, f"Instructions the trap_emulate monitor emulates, per iteration ({isa})",
                 x_title="trapped instruction (emulate:<mnemonic>)", y_title="workload",
                 height=360)
    fig.update_yaxes(autorange="reversed")
    return fig


def shadow_table_html(workloads: Sequence[str] = COMPARE_WORKLOADS,
                      technique: str = "trap_emulate") -> str:
    """The shadow-paging counters per iteration as an HTML table (hover a header: meaning)."""
    esc = html.escape
    head = "".join(f"<th title='{esc(meaning)}'>{esc(reason.split(':')[1])}</th>"
                   for reason, meaning in SHADOW_EVENTS.items())
    body = "".join(
        f"<tr><td>{esc(w)}</td>" + "".join(
            f"<td style='text-align:right'>{v:g}</td>" for v in values) + "</tr>"
        for w, values in shadow_rows(workloads, technique))
    return (f"<table><caption>Shadow-paging events per iteration of each workload "
            f"({esc(technique)}; difference of loop counts {OPERATION_COUNTS[0]} and "
            f"{OPERATION_COUNTS[1]})</caption><thead><tr><th>workload</th>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table>")


# ---- ring compression ---------------------------------------------------------------------
#: (ring, bare machine, full virtualization without hardware support)
RING_ROLES = (
    (0, "kernel (内核)", "VMM / hypervisor (Hypervisor运行在Ring0)"),
    (1, "unused", "guest kernel, deprivileged (Guest VM运行在Ring1)"),
    (2, "unused", "unused"),
    (3, "applications (应用程序)", "guest applications (客户机中的应用程序在Ring3)"),
)


def ring_compression_figure(height: int = 380) -> go.Figure:
    """Two columns of rings 0-3: the bare machine and the VMM that compresses the guest's rings.

    The guest kernel moves from ring 0 to ring 1; its applications stay in ring 3; the monitor
    takes ring 0.  An arrow marks the move.
    """
    fig = go.Figure()
    fills = {"kernel": "rgba(213,94,0,0.75)", "vmm": "rgba(0,0,0,0.80)",
             "apps": "rgba(86,180,233,0.55)", "unused": "rgba(200,200,200,0.35)"}
    for col, x0 in ((1, 0.0), (2, 5.0)):
        for ring, bare, virt in RING_ROLES:
            text = bare if col == 1 else virt
            kind = ("unused" if text == "unused" else "vmm" if "VMM" in text else
                    "apps" if ring == 3 else "kernel")
            y0 = 3 - ring
            fig.add_shape(type="rect", x0=x0, x1=x0 + 4.4, y0=y0 + 0.06, y1=y0 + 0.94,
                          fillcolor=fills[kind], line=dict(color="#333333", width=1))
            colour = "#FFFFFF" if kind in ("vmm", "kernel") else "#000000"
            fig.add_annotation(x=x0 + 2.2, y=y0 + 0.5, showarrow=False,
                               text=f"<b>ring {ring}</b>: {text}",
                               font=dict(size=12, color=colour))
    for x, label in ((2.2, "<b>bare machine</b>"),
                     (7.2, "<b>full virtualization without hardware support</b><br>"
                           "(全虚拟化，无硬件支持模式)")):
        fig.add_annotation(x=x, y=4.25, text=label, showarrow=False, font=dict(size=13))
    fig.add_annotation(x=5.0, y=2.5, ax=4.4, ay=3.5, axref="x", ayref="y", showarrow=True,
                       arrowhead=2, arrowwidth=2, arrowcolor=PALETTE[3],
                       text="", hovertext="the guest kernel is moved from ring 0 to ring 1")
    fig.add_annotation(x=4.7, y=-0.35, showarrow=False, font=dict(size=12),
                       text="the guest kernel moves out of ring 0; privileged instructions "
                            "now trap to the VMM")
    fig.add_trace(go.Scatter(x=[0], y=[0], mode="markers", marker=dict(opacity=0),
                             hoverinfo="skip", showlegend=False))
    fig.update_xaxes(range=[-0.2, 9.6], visible=False)
    fig.update_yaxes(range=[-0.7, 4.6], visible=False)
    return style_figure(fig, "Ring compression: the VMM takes ring 0, the guest kernel ring 1",
                        height=height)


# ---- binary translation: one block, callouts ------------------------------------------------
def _block_length(monitor, guest_pc: int) -> int | None:
    """Guest instructions of the block at ``guest_pc`` (from ``translation_blocks()``)."""
    for pc, _tc, insns in monitor.translation_blocks():
        if pc == guest_pc:
            return insns if isinstance(insns, int) else len(insns)
    return None


def block_rows(monitor, guest_pc: int) -> list[tuple[str, str, str]]:
    """``(guest pc, guest instruction, translation)`` rows of the block at ``guest_pc``.

    ``monitor`` is a :class:`~kernel_sim.monitors.binary_translation.BinaryTranslation` that has
    run.  The translation column is what its ``show_block`` prints (translation-cache address
    and instruction; a callout names its kind).  The guest column disassembles the guest
    kernel's own word at that pc (the kernel identity-maps its memory, so its virtual
    addresses are guest-physical ones).  Rows after the block's own instructions are the
    monitor's stubs: they stand for no guest instruction.
    """
    if not isinstance(guest_pc, int) or isinstance(guest_pc, bool):
        raise TypeError(f"guest_pc must be an address (int), got {guest_pc!r}")
    from ..asm import disassemble_word
    kernel = monitor.image.kernel
    rows = monitor.show_block(guest_pc)
    n = _block_length(monitor, guest_pc)
    n = len(rows) if n is None else n
    out = []
    for k, (gpc, translated) in enumerate(rows):
        if k < n and gpc:
            pc = int(gpc, 16)
            guest = disassemble_word(kernel.word_at(pc), pc=pc, symbols=kernel.labels)
        else:
            gpc, guest = "", "(monitor stub)"
        out.append((gpc, guest, translated))
    return out


def block_table_html(monitor, guest_pc: int, title: str = "") -> str:
    """:func:`block_rows` as an HTML table; callouts are shown in bold."""
    esc = html.escape
    body = []
    for gpc, guest, translated in block_rows(monitor, guest_pc):
        cell = esc(translated)
        if "callout" in translated:
            cell = f"<b>{cell}</b>"
        body.append(f"<tr><td><code>{esc(gpc)}</code></td><td><code>{esc(guest)}</code></td>"
                    f"<td style='text-align:left'><code>{cell}</code></td></tr>")
    caption = esc(title or f"guest kernel block at 0x{guest_pc:08x} and its translation")
    return (f"<table><caption>{caption}</caption><thead><tr><th>guest pc</th>"
            f"<th>guest instruction</th><th>translation-cache address and instruction</th>"
            f"</tr></thead><tbody>{''.join(body)}</tbody></table>")


# ---- comparison ----------------------------------------------------------------------------
def comparison_figure(workloads: Sequence[str] = COMPARE_WORKLOADS,
                      techniques: Sequence[str] = TECHNIQUES):
    """Grouped bars: simulated cycles per iteration relative to native, by workload."""
    rows = comparison_rows(workloads, techniques)
    fig = go.Figure()
    for k, t in enumerate(techniques):
        mine = [r for r in rows if r[1] == t]
        fig.add_bar(x=[r[0] for r in mine], y=[r[3] for r in mine], name=t,
                    customdata=[r[2] for r in mine],
                    marker=dict(color=PALETTE[k % len(PALETTE)],
                                pattern_shape=PATTERNS[k % len(PATTERNS)]),
                    hovertemplate="%{x}: %{y:.2f}x native (%{customdata:,.0f} cycles per "
                                  "iteration)<extra>" + t + "</extra>")
    style_figure(fig, "One iteration, relative to native (simulated cycles: model assumptions)",
                 x_title="workload", y_title="cycles per iteration / native (x)",
                 legend_title="technique", height=420)
    fig.update_layout(barmode="group")
    return fig


__all__ = ["COMPARE_WORKLOADS", "OPERATION_COUNTS", "SHADOW_EVENTS", "TECHNIQUES",
           "technique_run", "default_strict", "per_operation", "emulate_matrix",
           "emulate_heatmap", "shadow_rows", "shadow_table_html", "ring_compression_figure",
           "block_rows", "block_table_html", "callouts", "cycles_per_operation",
           "comparison_rows", "comparison_figure"]
