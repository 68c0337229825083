"""What every dashboard shares: the refusal message and the workload-dependent loop count.

A bad value is *refused*: nothing changes, the charts keep showing the last valid setting, and
a visible message (colour plus a warning sign and words, so it does not rely on colour) says
why.  Loop-count sliders follow the chosen workload: each workload has its own sensible range.
"""
from __future__ import annotations

import html

#: the largest loop count any explorer accepts
MAX_COUNT = 2000


def refusal_html(text: str, keeps: str = "the charts still show the last valid setting") -> str:
    """The message a dashboard shows when it refuses a value."""
    return (f"<div style='color:#D55E00;font-weight:bold'>⚠ refused: {html.escape(text)} -- "
            f"{keeps}</div>")


def count_limit(workload: str) -> int:
    """The largest loop count an explorer accepts for ``workload``: twice its default count, at
    most :data:`MAX_COUNT`, so that one update stays well under a second under every technique."""
    from ..guest import WORKLOADS
    return max(1, min(MAX_COUNT, 2 * WORKLOADS[workload].default_count))


def fit_count(slider, workload: str) -> None:
    """Set a loop-count slider's range for ``workload`` and clamp its value into it."""
    limit = count_limit(workload)
    slider.max = max(limit, slider.min)
    slider.value = min(slider.value, limit)
