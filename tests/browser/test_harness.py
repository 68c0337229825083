"""The browser harness itself works: it runs a notebook in a real JupyterLab,
drives an ipywidgets Dropdown, sees a Plotly FigureWidget change, reports cell
errors, and its render checks fail when they should (a widget that cannot be
drawn, a box child that failed, a figure view gone missing, figures without a
title or axis titles). The course notebooks' browser tests are built from the
same functions (see ``conftest.py`` in this folder)."""

from __future__ import annotations

import re

import nbformat
import pytest

WIDGET_NOTEBOOK = "_harness_dropdown_bar.ipynb"
ERROR_NOTEBOOK = "_harness_error.ipynb"

WIDGET_CODE = '''\
import ipywidgets as widgets
import plotly.graph_objects as go

DATA = {"small": [1, 2, 3], "large": [10, 40, 90]}
fig = go.FigureWidget(data=[go.Bar(x=["a", "b", "c"], y=DATA["small"])])
size = widgets.Dropdown(options=list(DATA), value="small", description="size")

def show(change):
    with fig.batch_update():
        fig.data[0].y = DATA[change["new"]]

size.observe(show, names="value")
widgets.VBox([size, fig])
'''


def _write_notebook(root, name, *sources):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                 "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell("# harness check")]
    nb.cells += [nbformat.v4.new_code_cell(src) for src in sources]
    nbformat.write(nb, root / name)


def test_harness_runs_all_cells_and_dropdown_changes_plotly_bar_heights(page, jlab):
    _write_notebook(jlab.root, WIDGET_NOTEBOOK, "print('first cell ran')", WIDGET_CODE,
                    "print('last cell ran')")

    jlab.open_and_run_all(page, WIDGET_NOTEBOOK)
    jlab.assert_no_error_outputs(page)
    texts = jlab.output_texts(page)
    assert any("first cell ran" in t for t in texts)
    assert any("last cell ran" in t for t in texts)

    before = jlab.plotly_values(page)
    assert before == [1, 2, 3]
    jlab.select_dropdown(page, "large")
    after = jlab.wait_for_plotly_change(page, before)
    assert after == [10, 40, 90]


def test_harness_reports_cell_error_and_stops_like_jupyter(page, jlab):
    _write_notebook(jlab.root, ERROR_NOTEBOOK, "x = 1", "1 / 0", "print('never printed')")

    with pytest.raises(AssertionError, match="ZeroDivisionError"):
        jlab.open_and_run_all(page, ERROR_NOTEBOOK)

    errors = jlab.error_outputs(page)
    assert any("cell 2: ZeroDivisionError" in e for e in errors), errors
    assert not any("never printed" in t for t in jlab.output_texts(page))


CHECKS_NOTEBOOK = "_harness_render_checks.ipynb"

UNTITLED_FIGURE = '''\
import plotly.graph_objects as go
go.Figure(go.Bar(x=["a", "b"], y=[1, 2]))
'''

TITLED_FIGURE = '''\
go.Figure(go.Bar(x=["a", "b"], y=[1, 2]),
          layout=dict(title=dict(text="fine"), xaxis_title="letter", yaxis_title="count"))
'''

# a widget output whose model the kernel never created: the front end cannot draw it
PHANTOM_WIDGET = '''\
from IPython.display import display
display({"application/vnd.jupyter.widget-view+json":
         {"model_id": "0" * 32, "version_major": 2, "version_minor": 0}}, raw=True)
'''

# a box whose second child has a view the front end cannot load
BROKEN_CHILD = '''\
import ipywidgets as widgets
from traitlets import Unicode

class NoView(widgets.DOMWidget):
    _view_name = Unicode("NoSuchView").tag(sync=True)
    _view_module = Unicode("no-such-widget-module").tag(sync=True)

widgets.VBox([widgets.Label("drawn"), NoView()])
'''


def _clear_outputs(page, notebook, cell):
    page.evaluate("([path, i]) => { for (const w of window.jupyterapp.shell.widgets('main'))"
                  " if (w.context && w.context.path === path)"
                  " w.content.widgets[i].model.outputs.clear(); }", [notebook, cell])


def test_harness_render_checks_flag_untitled_figures_and_undrawn_widgets(page, jlab):
    _write_notebook(jlab.root, CHECKS_NOTEBOOK, UNTITLED_FIGURE, TITLED_FIGURE, WIDGET_CODE,
                    PHANTOM_WIDGET, BROKEN_CHILD)
    jlab.open_and_run_all(page, CHECKS_NOTEBOOK, allow_errors=True)

    # cell 3 (dropdown + figure) is drawn; 4 (no model) and 5 (a child without view) are not
    page.wait_for_selector(".jupyter-widgets-error-widget")     # cell 5's child gave up
    with pytest.raises(AssertionError) as info:
        jlab.wait_for_outputs_rendered(page, timeout_ms=10_000)
    message = str(info.value)
    # (the wait stops at the first failure; the phantom may not have given up loading yet)
    assert re.search(r"cell 4 output 0: widget '(Loading widget\.\.\.|error: Error displaying "
                     r"widget: model not found)'", message), message
    assert "cell 5 output 0: widget 'error: 1 widget view(s) failed to draw'" in message
    assert "cell 3" not in message
    assert "widget: 1 view(s) failed to draw (error view)" in jlab.error_outputs(page)

    problems = jlab.figure_problems(page)
    # figure 0: static and untitled; figure 1: titled; figure 2: the widget's untitled bars
    flagged = {p.split(" ")[1].rstrip(":") for p in problems}
    assert flagged == {"0", "2"}, problems
    assert "figure 0: no title (layout.title.text is empty)" in problems
    for axis in ("xaxis", "yaxis"):
        assert f"figure 2 (''): {axis} has tick labels but no title" in problems
    with pytest.raises(AssertionError, match="accessibility"):
        jlab.assert_figures_accessible(page)

    # a view that silently went missing: the kernel's widget tree says cell 3 holds a figure
    for cell in (4, 5):
        _clear_outputs(page, CHECKS_NOTEBOOK, cell)
    page.evaluate("() => document.querySelectorAll('.jp-OutputArea-output .js-plotly-plot')"
                  ".forEach((gd) => { if (!gd.matches('.jp-OutputArea-output')) gd.remove(); })")
    with pytest.raises(AssertionError, match=r"cell 3 output 0: 2 widget views and 0 figures "
                                             r"drawn, expected 2 and 1"):
        jlab.wait_for_outputs_rendered(page, timeout_ms=2_000)
