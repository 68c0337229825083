"""Notebook 06 (paravirtualization) in a real JupyterLab: the batch explorer.

Runs the whole notebook in headless chromium, checks that no cell or widget shows an error,
then moves the explorer's **Batch size** slider (by typing into its readout, as a learner can)
and switches its **Workload** dropdown, and checks after each change that the batch chart the
browser draws -- hypercalls and page-table updates for every batch size, and the marked choice --
is exactly what the simulator returns for the new setting, computed here in the test process
with fresh runs of the guest.
"""

from __future__ import annotations

from kernel_sim.guest import build_guest
from kernel_sim.monitors import run_technique
from kernel_sim.viz.paravirt import BATCH_WORKLOADS, BATCHES, batch_title

NOTEBOOK = "06_paravirtualization.ipynb"


def expected_traces(workload: str, batch: int) -> list[dict]:
    """The three traces of the batch chart for (workload, batch), from direct runs."""
    count = BATCH_WORKLOADS[workload]
    sizes = sorted(set(BATCHES) | {batch})
    calls, ptes = [], []
    for b in sizes:
        r = run_technique(build_guest(workload, count, paravirt=True, batch=b), "paravirt")
        calls.append(r.monitor_events["hypercall:mmu_update"])
        ptes.append(r.monitor_events["paravirt:pte_updates"])
    return [{"x": sizes, "y": calls}, {"x": sizes, "y": ptes},
            {"x": [batch], "y": [calls[sizes.index(batch)]]}]


def set_slider(page, value: int, index: int = 0) -> None:
    """Type ``value`` into the readout of the ``index``-th ipywidgets slider and press Enter."""
    readout = page.locator(".widget-slider .widget-readout").nth(index)
    readout.wait_for(state="visible")
    readout.click()
    page.keyboard.press("Control+A")
    page.keyboard.type(str(value))
    page.keyboard.press("Enter")


def test_batch_explorer_follows_its_controls_and_matches_the_simulator(page, jlab):
    steps = [("boot", 8), ("boot", 24), ("forkwait", 24)]
    want = [expected_traces(*s) for s in steps]
    assert want[0] != want[1] != want[2]       # every change must change the chart

    jlab.open_and_run_all(page, NOTEBOOK)
    jlab.wait_for_outputs_rendered(page)
    jlab.assert_no_error_outputs(page)

    plot = jlab.find_plot(page, batch_title("boot"))
    assert jlab.wait_for_plotly_traces(page, want[0], plot) == want[0]

    # the batch explorer is the first widget with a slider on the page, and its Workload
    # dropdown comes before the technique explorer's controls
    set_slider(page, 24, index=0)
    assert jlab.wait_for_plotly_traces(page, want[1], plot) == want[1]

    jlab.select_dropdown(page, "forkwait", index=0)
    assert jlab.wait_for_plotly_traces(page, want[2], plot) == want[2]
    title = page.evaluate("(i) => document.querySelectorAll('.js-plotly-plot')[i]"
                          ".layout.title.text", plot)
    assert title == batch_title("forkwait")

    jlab.assert_no_error_outputs(page)
    jlab.assert_figures_accessible(page)
