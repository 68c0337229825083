"""Notebook 07 (hardware-assisted virtualization) in a real JupyterLab: the Virtualization Lab.

Runs the whole notebook in headless chromium and checks that no cell or widget shows an error.
Then, in the Lab (``lab = virtualization_lab()``: forkwait, left hw_shadow, right hw_ept, both on
the nehalem preset), it checks that the exit counts the browser draws for both configurations
and the simulated cycles of native, left and right are exactly what
:func:`kernel_sim.monitors.run_technique` returns -- run here in the test process, not through
the Lab's cache -- first for the default view, then after choosing another technique in the
LEFT technique dropdown.
"""

from __future__ import annotations

from kernel_sim.guest import build_guest
from kernel_sim.monitors import run_technique
from kernel_sim.viz.hardware import CYCLES_TITLE, EVENTS_TITLE, TIMELINE_TITLE
from kernel_sim.widgets.hardware import DEFAULT_COUNT

NOTEBOOK = "07_hardware_assist.ipynb"
WORKLOAD, CPU = "forkwait", "nehalem"       # the Lab's default setting
NEW_LEFT = "binary_translation"


def direct(technique: str):
    """A fresh run of one configuration of the Lab's default setting (strict ISA)."""
    image = build_guest(WORKLOAD, count=DEFAULT_COUNT)
    return run_technique(image, technique, cpu=CPU, strict=True)


def events_mismatch(traces, expected) -> list[str]:
    """What the events chart gets wrong (empty: nothing).  ``traces`` are the chart's two
    traces (left, right) with x = counts and y = reasons; every reason shown must carry the
    run's count, except "other", which holds the rest so that each side adds up to its
    total number of events."""
    problems = []
    for side, trace, result in zip(("left", "right"), traces, expected, strict=True):
        shown = dict(zip(trace["y"] or [], trace["x"] or [], strict=True))
        total = sum(result.monitor_events.values())
        if sum(shown.values()) != total:
            problems.append(f"{side}: bars add up to {sum(shown.values())}, run has {total}")
        for reason, count in shown.items():
            if reason != "other" and count != result.monitor_events.get(reason, 0):
                problems.append(f"{side}: {reason} shows {count}, run has "
                                f"{result.monitor_events.get(reason, 0)}")
    return problems


def cycles_mismatch(traces, native, left, right) -> list[str]:
    """What the stacked cycles chart gets wrong: its three bars must total the cycles of
    native, left and right (in that order)."""
    totals = [sum(tr["y"][k] for tr in traces) for k in range(len(traces[0]["y"] or []))]
    want = [native.cycles, left.cycles, right.cycles]
    return [] if totals == want else [f"cycle totals {totals}, runs have {want}"]


def wait_until_right(page, jlab, plots, expected, timeout_ms: int = 30_000) -> list[str]:
    """Poll the two charts until they match ``expected`` (native, left, right); return the
    problems still seen at the deadline (empty: they match)."""
    native, left, right = expected
    deadline = page.evaluate("Date.now()") + timeout_ms
    while True:
        events = jlab.plotly_traces(page, plots[0], ("x", "y"))
        cycles = jlab.plotly_traces(page, plots[1], ("x", "y"))
        problems = events_mismatch(events, (left, right)) + cycles_mismatch(cycles, *expected)
        if not problems or page.evaluate("Date.now()") > deadline:
            return problems
        page.wait_for_timeout(100)


def select_labelled_dropdown(page, description: str, option: str) -> None:
    """Choose ``option`` in the ipywidgets Dropdown whose description is ``description``."""
    box = page.locator(".widget-dropdown",
                       has=page.locator("label.widget-label", has_text=description))
    select = box.locator("select")
    select.wait_for(state="visible")
    select.select_option(label=option)


def test_lab_left_technique_dropdown_replots_the_simulators_exit_counts(page, jlab):
    native, shadow, ept, new_left = (direct(t) for t in ("native", "hw_shadow", "hw_ept",
                                                           NEW_LEFT))
    assert shadow.monitor_events != new_left.monitor_events   # the change must show

    jlab.open_and_run_all(page, NOTEBOOK)
    jlab.wait_for_outputs_rendered(page)
    jlab.assert_no_error_outputs(page)

    plots = (jlab.find_plot(page, EVENTS_TITLE), jlab.find_plot(page, CYCLES_TITLE))
    timeline = jlab.find_plot(page, TIMELINE_TITLE)
    assert wait_until_right(page, jlab, plots, (native, shadow, ept)) == []
    shown = jlab.plotly_traces(page, timeline, ("x",))
    assert len(shown[0]["x"]) == len(shadow.exit_timeline) > 0

    select_labelled_dropdown(page, "Left technique", NEW_LEFT)
    assert wait_until_right(page, jlab, plots, (native, new_left, ept)) == []
    # a software technique records no exit timeline: the left line is empty now
    shown = jlab.plotly_traces(page, timeline, ("x",))
    assert not shown[0]["x"] and len(shown[1]["x"]) == len(ept.exit_timeline)

    jlab.assert_no_error_outputs(page)
    jlab.assert_figures_accessible(page)
