"""The ring explorer of notebook 02: pick a ring and a program, see which instructions trap.

Every change re-runs the real experiment (:func:`kernel_sim.lessons.rings.probe`: the probe kernel boots,
drops to the chosen ring with IRET and runs the program) and updates the bar chart in place.
Once the kernels are compiled one update takes well under a millisecond of simulation plus the
figure update.
"""
from __future__ import annotations

from typing import Optional

import ipywidgets as widgets

from ..asm import AsmError
from ..lessons.rings import PROGRAMS, RingProbe, probe
from ..viz.rings import fill_trap_bars, trap_bars
from .base import refusal_html

RING_OPTIONS = [("0 (kernel)", 0), ("1", 1), ("2", 2), ("3 (applications)", 3)]


class RingExplorer(widgets.VBox):
    """A VBox with the controls, the trap chart and the faults table.

    Attributes: ``ring``, ``program``, ``strict`` (the controls), ``fig`` (the
    ``go.FigureWidget``), ``table`` (HTML with the faults), ``message`` (HTML: refusals and
    errors) and ``result`` (the :class:`~kernel_sim.lessons.rings.RingProbe` now shown).
    """

    def __init__(self, program: str = "privileged mix", ring: int = 3, strict: bool = False):
        super().__init__()
        self.result: Optional[RingProbe] = None
        self._quiet = False
        self.ring = widgets.Dropdown(options=RING_OPTIONS, value=ring, description="Ring")
        self.program = widgets.Dropdown(options=list(PROGRAMS), value=program,
                                        description="Program",
                                        layout=widgets.Layout(width="360px"))
        self.strict = widgets.Checkbox(value=bool(strict), description="strict ISA",
                                       indent=False)
        self.message = widgets.HTML()
        self.table = widgets.HTML()
        first = probe(program, ring, strict)
        self.fig = trap_bars(first, widget=True)
        for control in (self.ring, self.program, self.strict):
            control.observe(self._on_change, names="value")
        self.children = [widgets.HBox([self.ring, self.program, self.strict]), self.message,
                         self.fig, self.table]
        self._show(first)

    # ---- updating -----------------------------------------------------------------------------
    def _on_change(self, change=None) -> None:
        if not self._quiet:
            self.refresh()

    def refresh(self) -> None:
        """Re-run the probe for the current settings and update chart and table."""
        try:
            result = probe(self.program.value, self.ring.value, self.strict.value)
        except (ValueError, TypeError, AsmError, RuntimeError) as exc:
            self._refuse(str(exc))
            return
        self._show(result)

    def _show(self, result: RingProbe) -> None:
        self.result = result
        with self.fig.batch_update():
            fill_trap_bars(self.fig, result)
        self.table.value = result.faults_html()
        self.message.value = ""

    def _refuse(self, text: str) -> None:
        self.message.value = refusal_html(text, "the chart still shows the last valid setting")

    def set(self, ring=None, program=None, strict=None) -> bool:
        """Change settings from code.  A bad value is refused with a visible message (no
        exception) and nothing changes; returns True when the new settings were applied."""
        problems = []
        if ring is not None and (isinstance(ring, bool) or ring not in (0, 1, 2, 3)):
            problems.append(f"ring must be 0, 1, 2 or 3, got {ring!r}")
        if program is not None and program not in PROGRAMS:
            problems.append(f"unknown program {program!r}; choose one of {', '.join(PROGRAMS)}")
        if strict is not None and not isinstance(strict, bool):
            problems.append(f"strict must be True or False, got {strict!r}")
        if problems:
            self._refuse("; ".join(problems))
            return False
        self._quiet = True
        try:
            if ring is not None:
                self.ring.value = ring
            if program is not None:
                self.program.value = program
            if strict is not None:
                self.strict.value = strict
        finally:
            self._quiet = False
        self.refresh()
        return True


def ring_explorer(program: str = "privileged mix", ring: int = 3,
                  strict: bool = False) -> RingExplorer:
    """Build the ring explorer (a VBox): Ring and Program dropdowns, a strict-ISA checkbox, the
    traps-by-kind chart and the table of faulting instructions."""
    return RingExplorer(program, ring, strict)


__all__ = ["ring_explorer", "RingExplorer", "RING_OPTIONS"]
