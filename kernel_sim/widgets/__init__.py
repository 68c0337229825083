"""Interactive controls for the notebooks (ipywidgets + plotly FigureWidget).

Each notebook's widget lives in its own module and is built by one function, e.g.
``from kernel_sim.widgets.rings import ring_explorer``.  Conventions every widget follows:

* every control has a ``description``; sliders and text boxes use ``continuous_update=False``;
* one ``go.FigureWidget`` per view, updated in place inside ``fig.batch_update()`` (the figure
  builders live in :mod:`kernel_sim.viz`);
* a bad value is refused with a visible message in the widget, never a traceback;
* the object the widget shows is exposed as an attribute (``explorer.result``), so tests can
  compare what is plotted with what the API returns.
"""
from __future__ import annotations


def __getattr__(name):
    # Imported lazily: ipywidgets and plotly are only loaded when a widget is asked for.
    if name == "ring_explorer":
        from .rings import ring_explorer
        return ring_explorer
    raise AttributeError(f"module 'kernel_sim.widgets' has no attribute {name!r}")


__all__ = ["ring_explorer"]
