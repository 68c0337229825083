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

#: widget builder -> the module that defines it (notebook in brackets)
_BUILDERS = {"timeline_explorer": "history",       # 01
             "ring_explorer": "rings",             # 02
             "technique_explorer": "techniques",   # 03, 05, 06
             "emulation_explorer": "emulation",    # 04
             "block_viewer": "translation",        # 05
             "batch_explorer": "paravirt",         # 06
             "walk_explorer": "memory",            # 08
             "virtualization_lab": "hardware"}     # 07


def __getattr__(name):
    # Imported lazily: ipywidgets and plotly are only loaded when a widget is asked for.
    if name in _BUILDERS:
        import importlib
        return getattr(importlib.import_module(f"{__name__}.{_BUILDERS[name]}"), name)
    raise AttributeError(f"module 'kernel_sim.widgets' has no attribute {name!r}")


__all__ = list(_BUILDERS)
