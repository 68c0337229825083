"""Figures for notebook 00 (start here): what the CPU did during a run."""
from __future__ import annotations

import plotly.graph_objects as go

from .. import isa
from .style import PALETTE, style_figure

#: colour per instruction class (the same class is always the same colour in the course)
CLASS_COLOURS = {isa.INNOCUOUS: PALETTE[0], isa.PRIVILEGED: PALETTE[3],
                 isa.SENSITIVE: PALETTE[4], isa.TRAPPING: PALETTE[2]}


def opcode_bars(result, title: str = "What the CPU did: instructions retired, by mnemonic"):
    """Bar chart of ``result.opcodes`` (instructions retired per mnemonic), most frequent first,
    coloured by instruction class, with the count written on every bar."""
    items = sorted(result.opcodes.items(), key=lambda kv: (-kv[1], kv[0]))
    names = [k for k, _ in items]
    counts = [v for _, v in items]
    classes = [isa.BY_MNEMONIC[k].cls if k in isa.BY_MNEMONIC else "invalid" for k in names]
    fig = go.Figure()
    for cls, colour in CLASS_COLOURS.items():
        xs = [n for n, c in zip(names, classes, strict=True) if c == cls]
        if xs:
            ys = [v for v, c in zip(counts, classes, strict=True) if c == cls]
            fig.add_trace(go.Bar(x=xs, y=ys, name=cls, marker_color=colour, text=ys,
                                 textposition="outside"))
    fig.update_xaxes(categoryorder="array", categoryarray=names)
    style_figure(fig, title, "instruction (mnemonic)", "count (instructions retired)",
                 legend_title="ISA class")
    fig.update_layout(barmode="relative")
    fig.update_yaxes(range=[0, max(counts + [1]) * 1.2])
    return fig
