"""Notebook 05 (full virtualization without hardware support) in a real JupyterLab.

Runs the whole notebook in headless chromium and checks that no cell or widget shows an error.
Then

* the block viewer: choose another block in its Block dropdown and check that the table the
  browser shows is, row by row, what :func:`kernel_sim.viz.translation.block_rows` gives for a
  fresh binary-translation run of the same workload made here;
* the technique explorer: turn its Technique dropdown (trap_emulate -> binary_translation) and
  its Workload dropdown (syscall -> callret) and check that both charts the browser draws -- the
  monitor's events by reason and the simulated cycles of native and the technique by category
  -- are exactly what :func:`kernel_sim.monitors.run_technique` returns for the new setting, run
  here in the test process (not through the explorer's cache).
"""

from __future__ import annotations

from kernel_sim.guest import build_guest
from kernel_sim.monitors import run_technique
from kernel_sim.monitors.base import CATEGORIES
from kernel_sim.monitors.binary_translation import BinaryTranslation
from kernel_sim.viz.techniques import event_bars
from kernel_sim.viz.translation import block_rows
from kernel_sim.widgets.translation import VIEWER_COUNT, block_label

NOTEBOOK = "05_full_virtualization.ipynb"
COUNT = 50                      # the loop count the notebook gives the explorer
CYCLES_TITLE = "Simulated cycles by category"
#: the dropdowns on the page, in order: the block viewer's two, then the explorer's three
DROPDOWN = {"viewer_workload": 0, "viewer_block": 1, "workload": 2, "technique": 3, "cpu": 4}
VIEWER_WORKLOAD = "callret"     # what the notebook's block viewer runs


def _viewer_rows(block: str) -> list:
    """Rows of the viewer's table for ``block`` of a fresh run, as the browser shows them."""
    monitor = BinaryTranslation(build_guest(VIEWER_WORKLOAD, count=VIEWER_COUNT))
    monitor.run()
    return [list(row) for row in block_rows(monitor, monitor.image.symbol(block))]


def _table_rows(page) -> list:
    """Body rows of the block table(s) the page shows, one list of cell texts per row."""
    return page.evaluate(
        "() => Array.from(document.querySelectorAll('.widget-html-content table')).filter("
        "(t) => t.caption && t.caption.textContent.includes('its translation')).flatMap("
        "(t) => Array.from(t.tBodies[0].rows).map("
        "(tr) => Array.from(tr.cells).map((td) => td.textContent)))")


def _wait_for_rows(page, want, timeout_ms: int = 30_000):
    deadline = page.evaluate("Date.now()") + timeout_ms
    while (now := _table_rows(page)) != want and page.evaluate("Date.now()") < deadline:
        page.wait_for_timeout(100)
    return now


def _expected(workload: str, technique: str, strict: bool = True):
    """(events title, events traces, cycles traces) for one setting, as plotly_traces gives."""
    image = build_guest(workload, count=COUNT)
    result = run_technique(image, technique, strict=strict)
    native = run_technique(image, "native", strict=strict)
    reasons, counts = event_bars(result)
    title = (f"Events the {technique} monitor handled "
             f"({sum(result.monitor_events.values()):,} in all)")
    names = ["native", technique]
    cycles = [{"x": names, "y": [int(r.cycles_by_category.get(cat, 0)) for r in (native, result)]}
              for cat in CATEGORIES]
    return title, [{"x": counts, "y": reasons}], cycles


def _shown(page, jlab, events_plot: int, cycles_plot: int):
    title = page.evaluate("(i) => { const t = document.querySelectorAll('.js-plotly-plot')[i]"
                          ".layout.title; return typeof t === 'string' ? t : t.text; }",
                          events_plot)
    return (title, jlab.plotly_traces(page, events_plot, ("x", "y")),
            jlab.plotly_traces(page, cycles_plot, ("x", "y")))


def _wait_for(page, jlab, plots, want, timeout_ms: int = 30_000):
    deadline = page.evaluate("Date.now()") + timeout_ms
    while (now := _shown(page, jlab, *plots)) != want and page.evaluate("Date.now()") < deadline:
        page.wait_for_timeout(100)
    return now


def test_block_viewer_and_technique_explorer_follow_their_controls_and_match_the_api(page,
                                                                                      jlab):
    # one run of the notebook for both widgets (the browser stage has a time budget)
    first, second = _viewer_rows("sys_kcall_loop"), _viewer_rows("kcall_leaf")
    assert first != second
    steps = [("syscall", "trap_emulate"), ("syscall", "binary_translation"),
             ("callret", "binary_translation")]
    wants = [_expected(*s) for s in steps]
    for before, after in zip(wants[:-1], wants[1:], strict=True):
        assert before[1] != after[1] and before[2] != after[2], "each change must alter both charts"

    jlab.open_and_run_all(page, NOTEBOOK)
    jlab.wait_for_outputs_rendered(page)
    jlab.assert_no_error_outputs(page)

    # the block viewer: its Block menu
    assert _wait_for_rows(page, first) == first
    image = build_guest(VIEWER_WORKLOAD, count=VIEWER_COUNT)
    label = block_label(image.kernel, image.symbol("kcall_leaf"))
    jlab.select_dropdown(page, label, index=DROPDOWN["viewer_block"])
    assert _wait_for_rows(page, second) == second

    # the technique explorer: Technique, then Workload
    plots = (jlab.find_plot(page, wants[0][0]), jlab.find_plot(page, CYCLES_TITLE))
    assert _wait_for(page, jlab, plots, wants[0]) == wants[0]

    jlab.select_dropdown(page, "binary_translation", index=DROPDOWN["technique"])
    assert _wait_for(page, jlab, plots, wants[1]) == wants[1]

    jlab.select_dropdown(page, "callret", index=DROPDOWN["workload"])
    assert _wait_for(page, jlab, plots, wants[2]) == wants[2]

    jlab.assert_no_error_outputs(page)
    jlab.assert_figures_accessible(page)
