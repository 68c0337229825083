"""Notebook 08 (memory virtualization) in a real JupyterLab: the walk explorer.

Runs the whole notebook in headless chromium, checks that no cell or widget shows an error,
then moves the explorer's **Guest levels** and **Nested levels** sliders (by typing into their
readouts, as a learner can) and checks after each change that the walk the browser draws --
where each reference sits, trace by trace -- is the walk a two-dimensional page walk must make,
written out here from its definition, and that the title gives its reference count,
(n+1)(m+1) - 1 (n natively).
"""

from __future__ import annotations

from kernel_sim.viz.memory import walk_title

NOTEBOOK = "08_memory_virtualization.ipynb"


def expected_traces(n: int, m: int) -> list[dict]:
    """The walk figure's two traces (nested references, guest references) as {x, y}: for each
    guest level L from n down to 1, the nested levels m..1 then the guest entry; at the end one
    more nested walk for the data page."""
    nested, guest = {"x": [], "y": []}, {"x": [], "y": []}
    for level in range(n, 0, -1):
        row = f"guest L{level} entry"
        for k in range(m, 0, -1):
            nested["x"].append(f"nested L{k}")
            nested["y"].append(row)
        guest["x"].append("guest table" if m else "page table")
        guest["y"].append(row)
    for k in range(m, 0, -1):
        nested["x"].append(f"nested L{k}")
        nested["y"].append("data page")
    return [nested, guest]


def set_slider(page, value: int, index: int = 0) -> None:
    """Type ``value`` into the readout of the ``index``-th ipywidgets slider and press Enter."""
    readout = page.locator(".widget-slider .widget-readout").nth(index)
    readout.wait_for(state="visible")
    readout.click()
    page.keyboard.press("Control+A")
    page.keyboard.type(str(value))
    page.keyboard.press("Enter")


def title_of(page, plot: int) -> str:
    return page.evaluate("(i) => document.querySelectorAll('.js-plotly-plot')[i]"
                         ".layout.title.text", plot)


def test_walk_explorer_follows_its_sliders_and_draws_the_walk(page, jlab):
    steps = [(4, 4), (2, 4), (2, 0)]
    want = [expected_traces(*s) for s in steps]
    assert want[0] != want[1] != want[2]       # every change must change the chart

    jlab.open_and_run_all(page, NOTEBOOK)
    jlab.wait_for_outputs_rendered(page)
    jlab.assert_no_error_outputs(page)

    # the static 4-over-4 figure comes first in the notebook; the explorer's is the last plot
    # with that title
    plot = page.evaluate(
        "(want) => { const all = Array.from(document.querySelectorAll('.js-plotly-plot'));"
        " let idx = -1; all.forEach((gd, i) => { const t = gd.layout && gd.layout.title;"
        " if (t && (t.text || t) === want) idx = i; }); return idx; }", walk_title(4, 4, 24))
    assert plot >= 0
    assert jlab.find_plot(page, walk_title(4, 4, 24)) <= plot
    assert jlab.wait_for_plotly_traces(page, want[0], plot) == want[0]

    # the explorer is the only widget with sliders: Guest levels first, then Nested levels
    set_slider(page, 2, index=0)
    assert jlab.wait_for_plotly_traces(page, want[1], plot) == want[1]
    assert title_of(page, plot) == walk_title(2, 4, 14)

    set_slider(page, 0, index=1)
    assert jlab.wait_for_plotly_traces(page, want[2], plot) == want[2]
    assert title_of(page, plot) == walk_title(2, 0, 2)

    jlab.assert_no_error_outputs(page)
    jlab.assert_figures_accessible(page)
