"""Notebook 04 (pure software emulation) in a real JupyterLab: the emulation explorer.

Runs the whole notebook in headless chromium, checks that no cell or widget shows an error, then
turns the explorer's Mode and Workload dropdowns and checks that both charts the browser draws --
the emulator's events by reason and the simulated cycles of native and emulation by category --
are exactly what the emulation technique returns for the new setting, run here in the test
process with :func:`kernel_sim.monitors.run_technique` (not through the explorer's cache).
"""

from __future__ import annotations

from kernel_sim.guest import build_guest
from kernel_sim.monitors import run_technique
from kernel_sim.monitors.base import CATEGORIES
from kernel_sim.viz.emulation import MODE_LABELS
from kernel_sim.viz.techniques import event_bars
from kernel_sim.widgets.emulation import DEFAULT_COUNT

NOTEBOOK = "04_software_emulation.ipynb"
CYCLES_TITLE = "Simulated cycles: native and emulation"
DROPDOWN = {"workload": 0, "mode": 1, "cache": 2}    # the explorer's dropdowns, in page order


def _expected(workload: str, mode: str, count: int = DEFAULT_COUNT):
    """(events title, events traces, cycles traces) for one setting, as plotly_traces gives."""
    image = build_guest(workload, count=count)
    emu = run_technique(image, "emulation", mode=mode)
    native = run_technique(image, "native")
    reasons, counts = event_bars(emu)
    title = (f"Events the emulation monitor handled "
             f"({sum(emu.monitor_events.values()):,} in all)")
    labels = ["native", f"emulation ({mode})"]
    cycles = [{"x": labels, "y": [int(r.cycles_by_category.get(cat, 0)) for r in (native, emu)]}
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


def test_emulation_explorer_charts_follow_mode_and_workload_and_match_the_api(page, jlab):
    steps = [("boot", "translate"), ("boot", "interpret"), ("io", "interpret")]
    wants = [_expected(*s) for s in steps]
    for before, after in zip(wants[:-1], wants[1:], strict=True):
        assert before != after, "every change must alter the charts"

    jlab.open_and_run_all(page, NOTEBOOK)
    jlab.wait_for_outputs_rendered(page)
    jlab.assert_no_error_outputs(page)

    plots = (jlab.find_plot(page, wants[0][0]), jlab.find_plot(page, CYCLES_TITLE))
    assert _wait_for(page, jlab, plots, wants[0]) == wants[0]

    # Mode: the plots keep their places on the page; the events title follows the numbers
    jlab.select_dropdown(page, MODE_LABELS["interpret"], index=DROPDOWN["mode"])
    assert _wait_for(page, jlab, plots, wants[1]) == wants[1]

    jlab.select_dropdown(page, "io", index=DROPDOWN["workload"])
    assert _wait_for(page, jlab, plots, wants[2]) == wants[2]

    jlab.assert_no_error_outputs(page)
    jlab.assert_figures_accessible(page)
