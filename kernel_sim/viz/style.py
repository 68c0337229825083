"""Shared look of every figure: colour-blind-safe palette, titles, axis labels, fonts.

The palette is Okabe & Ito's "Color Universal Design" set of eight colours, chosen to stay
distinguishable for people with protanopia, deuteranopia and tritanopia.  Where a chart encodes
categories, pair colour with a second cue (text labels, patterns or order) when you can.
"""
from __future__ import annotations

from typing import Optional

#: Okabe-Ito colours, in a good order for categorical data (black last).
PALETTE = ("#0072B2",  # blue
           "#E69F00",  # orange
           "#009E73",  # bluish green
           "#D55E00",  # vermillion
           "#CC79A7",  # reddish purple
           "#56B4E9",  # sky blue
           "#F0E442",  # yellow
           "#000000")  # black

#: Bar patterns to pair with colours when categories must also differ without colour.
PATTERNS = ("", "/", "\\", "x", "-", "|", "+", ".")


def style_figure(fig, title: str, x_title: Optional[str] = None, y_title: Optional[str] = None,
                 height: int = 380, legend_title: Optional[str] = None):
    """Apply the course style to a plotly figure (or FigureWidget) and return it.

    A title is required; axis titles should carry units, e.g. ``"simulated cycles"`` or
    ``"count (events)"``.
    """
    if not title:
        raise ValueError("every course figure needs a title")
    fig.update_layout(title=dict(text=title, x=0.02, xanchor="left"), height=height,
                      template="plotly_white", colorway=list(PALETTE),
                      font=dict(family="Arial, sans-serif", size=13),
                      margin=dict(l=70, r=30, t=60, b=60))
    if x_title is not None:
        fig.update_xaxes(title_text=x_title)
    if y_title is not None:
        fig.update_yaxes(title_text=y_title)
    if legend_title is not None:
        fig.update_layout(legend_title_text=legend_title)
    return fig
