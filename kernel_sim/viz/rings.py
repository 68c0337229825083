"""Figures for notebook 02: the protection rings, the traps a program raises, one system call.

* :func:`ring_diagram` -- x86's four protection rings as concentric circles, ring 0 (the kernel,
  内核) at the centre and ring 3 (applications, 各类应用程序) outside, with the Intel SDM's
  example use of rings 1 and 2.
* :func:`trap_bars` / :func:`fill_trap_bars` -- traps by kind for one :class:`RingProbe`.  The
  ``fill_`` function updates an existing figure in place, so a ``go.FigureWidget`` can be reused
  by the widget (call it inside ``fig.batch_update()``).
* :func:`traps_by_ring` -- the same program in rings 0..3, one group of bars per ring.
* :func:`syscall_path_figure` -- one system call as a step chart: ring (top) and stack pointer
  (bottom) after every instruction, with the trap and the return annotated.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..lessons.rings import TRAP_KINDS, RingProbe, SyscallPath
from .style import PALETTE, PATTERNS, style_figure

#: One colour and one bar pattern per trap kind (colour + pattern: readable without colour).
KIND_COLOURS: Dict[str, str] = {"#DE": PALETTE[1], "#UD": PALETTE[4], "#GP": PALETTE[3],
                                "#PF": PALETTE[5], "syscall": PALETTE[0]}
KIND_PATTERNS: Dict[str, str] = {"#DE": PATTERNS[1], "#UD": PATTERNS[2], "#GP": PATTERNS[0],
                                 "#PF": PATTERNS[3], "syscall": PATTERNS[7]}
KIND_LABELS: Dict[str, str] = {"#DE": "#DE divide error", "#UD": "#UD invalid opcode",
                               "#GP": "#GP general protection", "#PF": "#PF page fault",
                               "syscall": "system call (0x80)"}

#: Ring labels: (name, use).  Rings 0 and 3 after the seed text; 1 and 2 after the Intel SDM's
#: example (Vol. 1, "Protection Rings" figure: operating-system services, device drivers).
RING_LABELS = {0: ("Ring 0", "kernel · 内核、系统运行"),
               1: ("Ring 1", "OS services, device drivers (SDM example)"),
               2: ("Ring 2", "OS services, device drivers (SDM example)"),
               3: ("Ring 3", "applications · 各类应用程序")}


def ring_diagram(highlight: Optional[int] = None, height: int = 460) -> go.Figure:
    """x86's protection rings as concentric circles; ``highlight`` outlines one ring."""
    fig = go.Figure()
    fills = ["rgba(213,94,0,0.85)", "rgba(230,159,0,0.55)", "rgba(86,180,233,0.45)",
             "rgba(0,114,178,0.25)"]
    for ring in (3, 2, 1, 0):          # biggest first, so smaller circles are drawn on top
        r = ring + 1
        fig.add_shape(type="circle", x0=-r, y0=-r, x1=r, y1=r, fillcolor=fills[ring],
                      line=dict(color="#000000" if ring == highlight else "#333333",
                                width=4 if ring == highlight else 1))
    # the ring number inside each band, the ring's use outside with a leader line
    for ring in range(4):
        y = 0 if ring == 0 else ring + 0.5
        fig.add_annotation(x=0, y=y, text=f"<b>{ring}</b>", showarrow=False,
                           font=dict(size=16, color="#FFFFFF" if ring == 0 else "#000000"))
    targets = {3: (50, 3.5), 2: (25, 2.5), 1: (0, 1.5), 0: (-35, 0.55)}
    label_y = {3: 3.4, 2: 1.9, 1: 0.4, 0: -1.1}
    for ring, (angle, radius) in targets.items():
        name, use = RING_LABELS[ring]
        px = radius * math.cos(math.radians(angle))
        py = radius * math.sin(math.radians(angle))
        fig.add_annotation(x=px, y=py, ax=4.6, ay=label_y[ring], axref="x", ayref="y",
                           text=f"<b>{name}</b>: {use}", showarrow=True, arrowhead=0,
                           arrowwidth=1.2, arrowcolor="#333333", xanchor="left",
                           font=dict(size=13))
    fig.add_annotation(x=4.6, y=-3.0, xanchor="left", showarrow=False, align="left",
                       text="inner = more privileged, outer = less privileged<br>"
                            "toy CPU: privileged instructions run only in ring 0;<br>"
                            "in rings 1-3 they raise #GP (vector 13)")
    fig.add_trace(go.Scatter(x=[0], y=[0], mode="markers", marker=dict(opacity=0),
                             hoverinfo="skip", showlegend=False))
    fig.update_xaxes(range=[-4.3, 10.5], visible=False)
    fig.update_yaxes(range=[-4.4, 4.4], visible=False, scaleanchor="x", scaleratio=1)
    return style_figure(fig, "x86 protection rings (保护环): ring 0 at the centre", height=height)


def _bar_values(probe: RingProbe):
    kinds = list(TRAP_KINDS)
    return kinds, [probe.traps[k] for k in kinds]


def _bar_title(probe: RingProbe) -> str:
    strict = ", strict ISA" if probe.strict else ""
    return f"Traps by kind: '{probe.name}' in ring {probe.ring}{strict}"


def trap_bars(probe: RingProbe, widget: bool = False) -> go.Figure:
    """Bar chart of the traps ``probe`` raised, by kind (``widget=True``: a FigureWidget)."""
    kinds = list(TRAP_KINDS)
    fig = (go.FigureWidget if widget else go.Figure)(
        data=[go.Bar(x=kinds, y=[0] * len(kinds), name="traps",
                     marker=dict(color=[KIND_COLOURS[k] for k in kinds],
                                 pattern=dict(shape=[KIND_PATTERNS[k] for k in kinds]),
                                 line=dict(color="#333333", width=1)),
                     text=[0] * len(kinds), textposition="outside",
                     customdata=[KIND_LABELS[k] for k in kinds],
                     hovertemplate="%{customdata}: %{y} trap(s)<extra></extra>")])
    style_figure(fig, _bar_title(probe), "trap kind", "count (traps)")
    fig.update_layout(showlegend=False)
    fill_trap_bars(fig, probe)
    return fig


def fill_trap_bars(fig, probe: RingProbe) -> None:
    """Put ``probe``'s trap counts and title into a figure made by :func:`trap_bars`."""
    kinds, values = _bar_values(probe)
    top = max(values + [1])
    fig.data[0].x = kinds
    fig.data[0].y = values
    fig.data[0].text = [str(v) for v in values]
    fig.layout.title.text = _bar_title(probe)
    fig.layout.yaxis.range = [0, max(4, math.ceil(top * 1.25))]


def traps_by_ring(probes: List[RingProbe]) -> go.Figure:
    """Grouped bars: for each ring (x), how many traps of each kind the program raised."""
    fig = go.Figure()
    rings = [f"ring {p.ring}" for p in probes]
    for kind in TRAP_KINDS:
        values = [p.traps[kind] for p in probes]
        if not any(values):
            continue
        fig.add_trace(go.Bar(x=rings, y=values, name=KIND_LABELS[kind], text=values,
                             textposition="outside",
                             marker=dict(color=KIND_COLOURS[kind],
                                         pattern=dict(shape=KIND_PATTERNS[kind]),
                                         line=dict(color="#333333", width=1))))
    strict = ", strict ISA" if probes[0].strict else ""
    style_figure(fig, f"'{probes[0].name}' in every ring{strict}: traps by kind",
                 "ring the program runs in (CPL)", "count (traps)", legend_title="trap kind")
    fig.update_layout(barmode="group")
    return fig


def syscall_path_figure(path: SyscallPath, height: int = 520) -> go.Figure:
    """One system call, step by step: ring (top panel) and sp (bottom panel) after each step."""
    steps = [s.step for s in path.steps]
    hover = [f"step {s.step}: {s.instruction}<br>pc 0x{s.pc:04x}, ring {s.ring}, "
             f"sp 0x{s.sp:05x}" + (f"<br>{s.event}" if s.event else "") for s in path.steps]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        row_heights=[0.55, 0.45])
    fig.add_trace(go.Scatter(x=steps, y=[s.ring for s in path.steps], mode="lines+markers",
                             line=dict(shape="hv", color=PALETTE[0], width=3),
                             marker=dict(size=6), name="ring (CPL)", hovertext=hover,
                             hoverinfo="text"), row=1, col=1)
    fig.add_trace(go.Scatter(x=steps, y=[s.sp for s in path.steps], mode="lines+markers",
                             line=dict(shape="hv", color=PALETTE[3], width=3, dash="dot"),
                             marker=dict(size=6, symbol="square"), name="sp (stack pointer)",
                             hovertext=hover, hoverinfo="text"), row=2, col=1)
    trap_step = next(s for s in path.steps if s.event.startswith("trap"))
    ret_step = next(s for s in path.steps if s.event and not s.event.startswith("trap"))
    fig.add_annotation(x=trap_step.step, y=0, row=1, col=1, ax=40, ay=-55,
                       text="<b>SYSCALL</b>: trap 0x80<br>ring 3 → 0", showarrow=True,
                       arrowhead=2, xanchor="left", align="left")
    fig.add_annotation(x=ret_step.step, y=3, row=1, col=1, ax=-40, ay=45,
                       text=f"<b>{path.return_instruction.upper()}</b>: ring 0 → 3",
                       showarrow=True, arrowhead=2, xanchor="right")
    fig.add_annotation(x=trap_step.step, y=trap_step.sp, row=2, col=1, ax=60, ay=30,
                       text=f"sp switched to KSP (0x{path.ksp:x}),<br>5-word frame pushed",
                       showarrow=True, arrowhead=2, xanchor="left", align="left")
    n_kernel = path.kernel_instructions
    mid = (trap_step.step + ret_step.step) / 2
    fig.add_annotation(x=mid, y=1.35, row=1, col=1, showarrow=False,
                       text=f"{n_kernel} instructions in ring 0")
    style_figure(fig, f"One system call from ring 3: {n_kernel} kernel instructions, "
                      f"{path.kernel_cycles} simulated cycles", height=height)
    fig.update_yaxes(title_text="ring (CPL)", tickvals=[0, 1, 2, 3], range=[-0.4, 3.6],
                     row=1, col=1)
    lo, hi = min(s.sp for s in path.steps), max(s.sp for s in path.steps)
    fig.update_yaxes(title_text="sp (byte address)", tickvals=[path.user_sp, path.ksp - 20],
                     ticktext=[f"0x{path.user_sp:05x}<br>user stack",
                               f"0x{path.ksp - 20:05x}<br>KSP − 20"], row=2, col=1,
                     range=[lo - 0.08 * (hi - lo), hi + 0.12 * (hi - lo)])
    fig.update_xaxes(title_text="step (instructions executed one at a time)", row=2, col=1)
    fig.update_layout(legend=dict(orientation="h", y=-0.18))
    return fig


__all__ = ["ring_diagram", "trap_bars", "fill_trap_bars", "traps_by_ring",
           "syscall_path_figure", "KIND_COLOURS", "KIND_LABELS"]
