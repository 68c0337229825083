"""Notebook 02 (protection rings) in a real JupyterLab.

SKELETON: the notebook's author completes it with the widget interaction the
notebook offers, using the helpers of ``conftest.py`` in this folder, e.g.::

    before = jlab.plotly_values(page)                 # first plot, trace 0, "y"
    jlab.select_dropdown(page, "system-call loop")    # first Dropdown on the page
    after = jlab.wait_for_plotly_change(page, before)
    assert after != before

Until then it checks what holds for every notebook: all cells run top to bottom
in the browser, and no cell or widget shows an error.
"""

from __future__ import annotations

import pytest


def _notebook_02(root) -> str | None:
    found = sorted(p.name for p in root.glob("02_*.ipynb"))
    return found[0] if found else None


def test_notebook_02_runs_in_jupyterlab_without_error_outputs(page, jlab):
    name = _notebook_02(jlab.root)
    if name is None:
        # xfail, not skip: a skipped browser test fails CI (KERNEL_SIM_REQUIRE_BROWSER=1)
        pytest.xfail("notebooks/02_*.ipynb does not exist yet")
    jlab.open_and_run_all(page, name)
    jlab.assert_no_error_outputs(page)
