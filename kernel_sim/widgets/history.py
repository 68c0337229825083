"""The timeline explorer of notebook 01: pick categories, the timeline shows only those rows.

::

    from kernel_sim.widgets.history import timeline_explorer
    timeline_explorer()          # a SelectMultiple of categories above the interactive timeline

Selecting nothing is refused with a visible message (the figure keeps its last rows).
"""
from __future__ import annotations

from collections.abc import Iterable

import ipywidgets as widgets

from ..lessons import history
from ..viz.timeline import show_categories, timeline_figure

FIGURE_WIDTH = 960   # pixels: fits JupyterLab's notebook column on a laptop screen


class TimelineExplorer:
    """Controls + one ``FigureWidget``.  ``.widget`` is what a notebook displays.

    ``select(categories)`` does what a learner's click does (used by tests too) and returns the
    message shown.
    """

    def __init__(self, categories: Iterable[str] | None = None):
        initial = tuple(history.CATEGORIES if categories is None else categories)
        self.figure = timeline_figure(categories=initial, widget=True, width=FIGURE_WIDTH)
        options = [(f"{c} ({history.CATEGORY_ZH[c]}, {len(history.events_by_category(c))})", c)
                   for c in history.CATEGORIES]
        self.chooser = widgets.SelectMultiple(
            options=options, value=initial, rows=len(options),
            description="categories",
            tooltip="ctrl/cmd-click or shift-click to choose several",
            layout=widgets.Layout(width="520px"),
            style={"description_width": "initial"})
        self.all_button = widgets.Button(description="show all", tooltip="show every category")
        self.message = widgets.HTML()
        self.chooser.observe(self._on_change, names="value")
        self.all_button.on_click(lambda _: setattr(self.chooser, "value",
                                                   tuple(history.CATEGORIES)))
        self._say(initial)
        self.widget = widgets.VBox([
            widgets.HBox([self.chooser, self.all_button]), self.message, self.figure])

    def _say(self, chosen, error: str = "") -> str:
        if error:
            text = f"<span style='color:#D55E00'>⚠ {error}</span>"
        else:
            n = sum(len(history.events_by_category(c)) for c in chosen)
            text = f"showing {n} events in {len(chosen)} of {len(history.CATEGORIES)} categories"
        self.message.value = text
        return text

    def select(self, categories: Iterable[str]) -> str:
        chosen = tuple(categories)
        try:
            show_categories(self.figure, chosen)
        except ValueError as exc:
            return self._say(chosen, f"{exc} -- the timeline keeps its previous rows")
        return self._say(chosen)

    def _on_change(self, change) -> None:
        self.select(change["new"])


def timeline_explorer(categories: Iterable[str] | None = None):
    """The explorer's widget (display it as the last expression of a cell)."""
    return TimelineExplorer(categories).widget


__all__ = ["TimelineExplorer", "timeline_explorer"]
