"""Notebook 03 (Popek and Goldberg) in a real JupyterLab: the technique explorer on trap_emulate.

Runs the whole notebook in headless chromium, checks that no cell or widget shows an error, then
ticks and unticks the explorer's strict-ISA checkbox and changes its workload, and checks after
each change that both charts the browser draws -- the monitor's events by reason and the
simulated cycles of native and trap_emulate by category -- and the verdict line are what
:func:`kernel_sim.monitors.run_technique` returns for the new setting, run here in the test
process (not through the explorer's cache).
"""

from __future__ import annotations

from kernel_sim.guest import build_guest
from kernel_sim.monitors import run_technique
from kernel_sim.monitors.base import CATEGORIES
from kernel_sim.viz.techniques import event_bars

NOTEBOOK = "03_popek_goldberg.ipynb"
CYCLES_TITLE = "Simulated cycles by category"
COUNT = 50                                   # the explorer's loop count in the notebook
WORKLOAD_DROPDOWN = 0                        # Workload, Technique, CPU preset, in page order
#: what the verdict line says about the guest OS's whole state (kernel_sim.widgets.techniques)
STATE_PHRASES = ("guest OS state (state digest) also the same as native",
                 "guest OS state (state digest) differs from native")


def _expected(workload: str, strict: bool):
    """(events title, events traces, cycles traces, verdict words) for one setting."""
    image = build_guest(workload, count=COUNT)
    te = run_technique(image, "trap_emulate", strict=strict)
    native = run_technique(image, "native", strict=strict)
    reasons, counts = event_bars(te)
    title = f"Events the trap_emulate monitor handled ({sum(te.monitor_events.values()):,} in all)"
    cycles = [{"x": ["native", "trap_emulate"],
               "y": [int(r.cycles_by_category.get(cat, 0)) for r in (native, te)]}
              for cat in CATEGORIES]
    state = STATE_PHRASES[0] if te.state_digest == native.state_digest else STATE_PHRASES[1]
    summary = f"trap_emulate: {te.cycles:,} simulated cycles"
    return title, [{"x": counts, "y": reasons}], cycles, (summary, state)


def _verdict(page) -> tuple[str, str]:
    """(cycles part, state phrase) of the explorer's verdict line as the browser shows it."""
    texts = page.locator(".widget-html-content").all_inner_texts()
    summary = next((t for t in texts if t.startswith("trap_emulate:")), "")
    head = summary.split(" simulated cycles")[0] + " simulated cycles" if summary else ""
    return head, next((p for p in STATE_PHRASES if p in summary), "")


def _shown(page, jlab, plots):
    events_plot, cycles_plot = plots
    title = page.evaluate("(i) => { const t = document.querySelectorAll('.js-plotly-plot')[i]"
                          ".layout.title; return typeof t === 'string' ? t : t.text; }",
                          events_plot)
    return (title, jlab.plotly_traces(page, events_plot, ("x", "y")),
            jlab.plotly_traces(page, cycles_plot, ("x", "y")), _verdict(page))


def _wait_for(page, jlab, plots, want, timeout_ms: int = 30_000):
    deadline = page.evaluate("Date.now()") + timeout_ms
    while (now := _shown(page, jlab, plots)) != want and page.evaluate("Date.now()") < deadline:
        page.wait_for_timeout(100)
    return now


def test_trap_emulate_explorer_follows_strict_and_workload_and_matches_the_api(page, jlab):
    steps = [("syscall", False), ("syscall", True), ("compute", True), ("compute", False)]
    wants = [_expected(*s) for s in steps]
    for before, after in zip(wants[:-1], wants[1:], strict=True):
        assert before[:3] != after[:3], "every change must alter the charts"
    # the lesson of the widget: on the guest OS, ticking strict heals the kernel's state
    assert wants[0][3][1].endswith("differs from native")
    assert wants[1][3][1].endswith("also the same as native")

    jlab.open_and_run_all(page, NOTEBOOK)
    jlab.wait_for_outputs_rendered(page)
    jlab.assert_no_error_outputs(page)
    assert page.locator(".widget-checkbox input[type=checkbox]").count() == 1

    plots = (jlab.find_plot(page, wants[0][0]), jlab.find_plot(page, CYCLES_TITLE))
    assert _wait_for(page, jlab, plots, wants[0]) == wants[0]

    changes = [lambda: jlab.set_checkbox(page, True),
               lambda: jlab.select_dropdown(page, "compute", index=WORKLOAD_DROPDOWN),
               lambda: jlab.set_checkbox(page, False)]
    for change, setting, want in zip(changes, steps[1:], wants[1:], strict=True):
        change()
        assert _wait_for(page, jlab, plots, want) == want, f"after the change to {setting}"

    jlab.assert_no_error_outputs(page)
    jlab.assert_figures_accessible(page)
