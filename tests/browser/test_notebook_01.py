"""Notebook 01 (history and kinds) in a real JupyterLab: the timeline explorer.

The explorer is a SelectMultiple of categories above a Plotly FigureWidget timeline. The test
runs the notebook, chooses categories in the browser, and checks that the traces the browser
draws -- which rows are visible, and every marker's position and label -- are exactly those of
:func:`kernel_sim.viz.timeline.timeline_figure` built here, in the test process, for the same
categories. It also counts the visible markers against :mod:`kernel_sim.lessons.history` directly, checks
that an empty choice is refused with the library's message while the timeline keeps its rows,
and that "show all" brings every row back.
"""

from __future__ import annotations

import pytest

from kernel_sim.lessons import history
from kernel_sim.viz.timeline import show_categories, timeline_figure

NOTEBOOK = "01_history_and_kinds.ipynb"
KEYS = ("legendgroup", "showlegend", "visible", "x", "y", "text")
CHOSEN = ("theory", "host-KVM")        # two rows far apart on the figure


def _expected(categories=None) -> list[dict]:
    """The traces timeline_figure draws for ``categories``, in the form plotly_traces gives."""
    fig = timeline_figure(categories=categories)
    rows = []
    for trace in fig.data:
        row = {}
        for key in KEYS:
            value = trace[key]
            row[key] = list(value) if isinstance(value, tuple) else value
        row["visible"] = True if row["visible"] is None else row["visible"]
        rows.append(row)
    return rows


def _markers_shown(traces) -> int:
    """Event markers on visible rows (legend-only traces have no position)."""
    return sum(sum(x is not None for x in t["x"]) for t in traces if t["visible"] is True)


def _message(page) -> str:
    return page.locator(".widget-html-content").first.inner_text()


def test_timeline_explorer_rows_follow_the_category_choice_and_match_timeline_figure(page, jlab):
    # preconditions that make the checks below meaningful
    assert _expected(CHOSEN) != _expected(), "choosing categories must change the figure"
    with pytest.raises(ValueError) as refusal:
        show_categories(timeline_figure(), [])

    jlab.open_and_run_all(page, NOTEBOOK)
    jlab.wait_for_outputs_rendered(page)
    jlab.assert_no_error_outputs(page)
    plot = jlab.find_plot(page, timeline_figure().layout.title.text)

    everything = _expected()
    assert jlab.plotly_traces(page, plot, KEYS) == everything
    assert _markers_shown(everything) == len(history.EVENTS)

    # choose two categories (options are listed in history.CATEGORIES order)
    jlab.select_multiple(page, [history.CATEGORIES.index(c) for c in CHOSEN])
    expected = _expected(CHOSEN)
    assert jlab.wait_for_plotly_traces(page, expected, plot) == expected
    shown = {t["legendgroup"] for t in expected if t["visible"] is True}
    assert shown >= set(CHOSEN) and not shown & (set(history.CATEGORIES) - set(CHOSEN))
    assert _markers_shown(expected) == sum(len(history.events_by_category(c)) for c in CHOSEN)

    # an empty choice is refused with the library's reason; the rows stay as they were
    jlab.select_multiple(page, [])
    page.wait_for_function(
        "(want) => Array.from(document.querySelectorAll('.widget-html-content'))"
        ".some((e) => e.textContent.includes(want))", arg=str(refusal.value), polling=200)
    assert jlab.plotly_traces(page, plot, KEYS) == expected

    # "show all" brings every row back
    jlab.click_button(page, "show all")
    assert jlab.wait_for_plotly_traces(page, everything, plot) == everything
    assert str(refusal.value) not in _message(page)

    jlab.assert_no_error_outputs(page)
    jlab.assert_figures_accessible(page)
