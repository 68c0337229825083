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


def count_problem(settings: dict, workload_control) -> str | None:
    """What is wrong with ``settings["count"]`` for the workload it goes with (the one in
    ``settings`` when that is a valid choice, else the control's), or None."""
    value = settings["count"]
    w = settings.get("workload", workload_control.value)
    limit = count_limit(w if w in workload_control.options else workload_control.value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
        return f"count must be an integer from 1 to {limit} for this workload, got {value!r}"
    return None


def apply_settings(dashboard, problems, assign) -> bool:
    """The end of every dashboard's ``set()``: refuse ``problems`` with a visible message (and
    change nothing), or call ``assign()`` with the observers quiet and refresh once.  Returns
    True when the settings were applied."""
    if problems:
        dashboard._refuse("; ".join(problems))
        return False
    dashboard._quiet = True
    try:
        assign()
    finally:
        dashboard._quiet = False
    dashboard.refresh()
    return True


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

    def _refuse(self, text: str) -> None:
        self.message.value = refusal_html(text)

    def _set_workload_first(self, settings: dict, controls: dict, order) -> None:
        """Assign ``settings``: the workload first (fitting the count slider to it), then the
        controls named in ``order``."""
        if "workload" in settings:
            self.workload.value = settings["workload"]
            self._on_change({"owner": self.workload})
        for name in order:
            if name in settings:
                controls[name].value = settings[name]
