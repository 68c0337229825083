"""The walk explorer of notebook 08: every memory reference of one cold TLB miss.

Choose the depth of the guest's page table (**Guest levels**, 1 to 4) and of the monitor's
nested table (**Nested levels**, 0 to 4; 0 means no nesting, the CPU's own walk).  The
explorer builds the tables, runs one cold walk through the simulated MMU
(:func:`kernel_sim.lessons.pagewalk.pagewalk`) and redraws the grid of references in place, each
numbered by its order; the line above the chart gives the count and the formula
``(n+1)(m+1) - 1``, and the list below it every reference with its address.
"""
from __future__ import annotations

import html

import ipywidgets as widgets

from ..lessons.pagewalk import expected_references, pagewalk
from ..viz.memory import MAX_GUEST_LEVELS, MAX_NESTED_LEVELS, fill_walk, walk_figure
from .base import apply_settings, refusal_html

#: the settings the explorer accepts: name -> (smallest, largest)
LIMITS = {"guest_levels": (1, MAX_GUEST_LEVELS), "nested_levels": (0, MAX_NESTED_LEVELS)}


class WalkExplorer(widgets.VBox):
    """Two sliders, a one-line summary, the walk grid and the list of references.

    Attributes: ``guest_levels`` and ``nested_levels`` (IntSliders), ``fig`` (the
    FigureWidget), ``message`` (refusals), ``summary`` and ``steps`` (HTML), ``result`` (the
    :class:`~kernel_sim.lessons.pagewalk.PageWalk` shown).
    """

    def __init__(self, guest_levels: int = 4, nested_levels: int = 4):
        super().__init__()
        problems = _problems({"guest_levels": guest_levels, "nested_levels": nested_levels})
        if problems:
            raise ValueError("; ".join(problems))
        self._quiet = False
        lo, hi = LIMITS["guest_levels"]
        self.guest_levels = widgets.IntSlider(value=guest_levels, min=lo, max=hi, step=1,
                                              description="Guest levels",
                                              continuous_update=False,
                                              style={"description_width": "initial"})
        lo, hi = LIMITS["nested_levels"]
        self.nested_levels = widgets.IntSlider(value=nested_levels, min=lo, max=hi, step=1,
                                               description="Nested levels (0 = native)",
                                               continuous_update=False,
                                               style={"description_width": "initial"})
        self.message = widgets.HTML()
        self.summary = widgets.HTML()
        self.steps = widgets.HTML()
        self.result = pagewalk(guest_levels, nested_levels)
        self.fig = walk_figure(guest_levels, nested_levels, widget=True)
        for control in (self.guest_levels, self.nested_levels):
            control.observe(self._on_change, names="value")
        self.children = [widgets.HBox([self.guest_levels, self.nested_levels]), self.message,
                         self.summary, self.fig, self.steps]
        self._show()

    def _on_change(self, change=None) -> None:
        if not self._quiet:
            self.refresh()

    def refresh(self) -> None:
        """Run the walk of the current setting and redraw the chart, the summary and the list."""
        try:
            walk = pagewalk(self.guest_levels.value, self.nested_levels.value)
            with self.fig.batch_update():
                fill_walk(self.fig, walk.guest_levels, walk.nested_levels, walk)
        except (ValueError, TypeError, RuntimeError) as exc:
            self._refuse(str(exc))
            return
        self.result = walk
        self._show()

    def _show(self) -> None:
        w = self.result
        n, m = w.guest_levels, w.nested_levels
        if m:
            text = (f"<b>{w.references}</b> memory references for one TLB miss: a {n}-level "
                    f"guest table over a {m}-level nested table, (n+1)(m+1) - 1 = "
                    f"({n}+1)({m}+1) - 1 = {expected_references(n, m)}; natively {n}. "
                    f"Guest-virtual {w.guest_virtual:#010x} -> guest-physical "
                    f"{w.guest_physical:#010x} -> host-physical {w.host_physical:#010x}.")
        else:
            text = (f"<b>{w.references}</b> memory references for one TLB miss: a native "
                    f"{n}-level walk, one per level. Virtual {w.guest_virtual:#010x} -> "
                    f"physical {w.host_physical:#010x}.")
        self.summary.value = text
        rows = "".join(f"<tr><td>{i}</td><td>{s['dimension']}</td><td>L{s['level']}</td>"
                       f"<td><code>{s['address']:#010x}</code></td>"
                       f"<td>{html.escape(s['purpose'])}</td></tr>"
                       for i, s in enumerate(w.steps, 1))
        self.steps.value = ("<details><summary>every reference, in order</summary><table>"
                            "<tr><th>step</th><th>dimension</th><th>level</th><th>address</th>"
                            f"<th>purpose</th></tr>{rows}</table></details>")
        self.message.value = ""

    def _refuse(self, text: str) -> None:
        self.message.value = refusal_html(text, "the chart still shows the last valid walk")

    def set(self, **settings) -> bool:
        """Change settings from code: ``guest_levels`` and/or ``nested_levels``.  A bad value
        is refused with a visible message and nothing changes; returns True when applied."""
        def assign():
            for name, value in settings.items():
                getattr(self, name).value = value
        return apply_settings(self, _problems(settings), assign)


def _problems(settings) -> list:
    out = []
    for name, value in settings.items():
        if name not in LIMITS:
            out.append(f"unknown setting {name!r} (known: {', '.join(LIMITS)})")
            continue
        lo, hi = LIMITS[name]
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            out.append(f"{name} must be a whole number from {lo} to {hi}, got {value!r}")
    return out


def walk_explorer(guest_levels: int = 4, nested_levels: int = 4) -> WalkExplorer:
    """Build the walk explorer (a VBox); see :class:`WalkExplorer`."""
    return WalkExplorer(guest_levels, nested_levels)


__all__ = ["walk_explorer", "WalkExplorer", "LIMITS"]
