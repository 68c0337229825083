"""The browser harness itself works: it runs a notebook in a real JupyterLab,
drives an ipywidgets Dropdown, sees a Plotly FigureWidget change, and reports
cell errors. The course notebooks' browser tests are built from the same helpers
(see ``conftest.py`` in this folder)."""

from __future__ import annotations

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
