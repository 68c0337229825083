"""Plotly figure builders.  Everything a notebook draws comes from here.

Every figure has a title, axis titles with units, and colours from the Okabe-Ito palette, which
stays distinguishable under the common forms of colour blindness (see :mod:`.style`).
"""
from .style import PALETTE, style_figure  # noqa: F401
