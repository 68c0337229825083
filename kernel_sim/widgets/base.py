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


class WorkloadExplorer:
    """Mixin of the explorers that run one workload natively and under a technique.

    The subclass provides ``workload`` (Dropdown), ``count`` (IntSlider), ``_run()`` returning
    ``(result, baseline)``, ``_show()`` and ``_refuse(text)``; it sets ``_quiet`` while it changes
    several controls at once.  Changing the workload fits the loop-count slider to it first.
    """

    _quiet = False

    def _on_change(self, change=None) -> None:
        if change is not None and change.get("owner") is self.workload:
            quiet, self._quiet = self._quiet, True
            try:                        # keep the slider inside the new workload's range
                fit_count(self.count, self.workload.value)
            finally:
                self._quiet = quiet
        if not self._quiet:
            self.refresh()

    def refresh(self) -> None:
        """Run the current setting and update the charts and the summary."""
        try:
            self.result, self.baseline = self._run()
        except (ValueError, TypeError, RuntimeError) as exc:
            self._refuse(str(exc))
            return
        self._show()
