"""Every course notebook, run in a real JupyterLab: no errors, every widget and figure drawn.

The notebooks are found by globbing ``notebooks/*.ipynb``, so a notebook added later is covered
without touching this file. For each one the test opens it, runs all cells, and checks

* no cell raised and no error output is shown (``run_all`` / ``assert_no_error_outputs``);
* every widget output is drawn: as many rendered widget views as the executed notebook model has
  widget outputs, none left at "Loading widget..." or "Error displaying widget", and inside each
  one as many ipywidgets views and Plotly figures as the kernel's widget tree has
  (``wait_for_outputs_rendered``);
* every Plotly output is drawn, and every figure on the page has a title and a title on each
  axis that shows tick labels (``assert_figures_accessible``).

Widgets that need a specific interaction (a dashboard whose controls drive a plot) have their
own module, ``test_notebook_NN.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOKS = sorted(p.name for p in NOTEBOOK_DIR.glob("*.ipynb"))


def test_the_course_has_notebooks_to_check():
    """Guard: an empty glob would make the parametrized test below vanish silently."""
    assert NOTEBOOKS, f"no notebooks found in {NOTEBOOK_DIR}"


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_notebook_runs_and_every_widget_and_figure_renders(page, jlab, notebook):
    jlab.open_and_run_all(page, notebook)
    report = jlab.wait_for_outputs_rendered(page)
    jlab.assert_no_error_outputs(page)

    # the page draws exactly the widgets and figures the notebook's outputs call for
    assert page.locator(".jp-OutputArea-output > .jupyter-widgets").count() == len(
        report["widgets"])
    plots_in_widgets = sum(w["plots"] for w in report["widgets"])
    assert page.locator(".js-plotly-plot").count() == len(report["plots"]) + plots_in_widgets
    jlab.assert_figures_accessible(page)
