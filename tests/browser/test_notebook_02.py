"""Notebook 02 (protection rings) in a real JupyterLab: the ring explorer.

Runs the whole notebook in headless chromium, checks that no cell or widget shows an error and
that the ring explorer rendered, then turns each of its three controls (Ring, Program, strict
ISA) and checks that the bars, the title and the faults table the browser shows are exactly
what :func:`kernel_sim.lessons.rings.probe` and :func:`kernel_sim.viz.rings.trap_bars` give for the new
setting, computed here in the test process.
"""

from __future__ import annotations

import time

from kernel_sim.lessons.rings import TRAP_KINDS, probe
from kernel_sim.viz.rings import trap_bars
from kernel_sim.widgets.rings import RING_OPTIONS

NOTEBOOK = "02_protection_rings.ipynb"
RING_LABEL = {ring: label for label, ring in RING_OPTIONS}   # the Ring dropdown's options


def _bars(name: str, ring: int, strict: bool = False) -> list:
    """Trap counts in the order the chart draws its bars (TRAP_KINDS)."""
    traps = probe(name, ring, strict).traps
    return [traps[k] for k in TRAP_KINDS]


def _title(name: str, ring: int, strict: bool = False) -> str:
    return trap_bars(probe(name, ring, strict)).layout.title.text


def _shown(page, jlab, plot: int) -> tuple[list, list, str]:
    """(bar labels, bar heights, title) of the ``plot``-th figure as the browser has it."""
    trace = jlab.plotly_traces(page, plot, ("x", "y"))[0]
    title = page.evaluate("(i) => { const t = document.querySelectorAll('.js-plotly-plot')[i]"
                          ".layout.title; return typeof t === 'string' ? t : t.text; }", plot)
    return trace["x"], trace["y"], title


def _fault_rows(page) -> list:
    """Rows (pc, instruction, trap) of the faults table the explorer shows under its chart."""
    return page.evaluate(
        "() => Array.from(document.querySelectorAll('.widget-html-content table tbody tr'))"
        ".map((tr) => Array.from(tr.cells).map((td) => td.textContent.trim()))")


def _wait_for_explorer(page, jlab, plot: int, setting, timeout_s: float = 30.0):
    """Wait (bounded) until the explorer shows ``setting`` = (program, ring, strict): bars,
    title and faults table as the library computes them. Returns (shown, expected)."""
    result = probe(*setting)
    faults = [[f"0x{f.pc:04x}", f.instruction, f.kind] for f in result.faults]
    want = (list(TRAP_KINDS), _bars(*setting), _title(*setting), faults)
    deadline = time.monotonic() + timeout_s
    while ((now := (*_shown(page, jlab, plot), _fault_rows(page))) != want
           and time.monotonic() < deadline):
        page.wait_for_timeout(100)
    return now, want


def test_ring_explorer_bars_follow_every_control_and_match_probe(page, jlab):
    # (program, ring, strict) after each change; every change alters the bars, so a chart
    # that does not follow its controls fails
    steps = [("privileged mix", 3, False),
             ("sensitive but unprivileged", 3, False),       # Program
             ("sensitive but unprivileged", 3, True),        # strict ISA
             ("sensitive but unprivileged", 0, True),        # Ring
             ("divide by zero", 0, True)]                    # Program
    for before, after in zip(steps[:-1], steps[1:], strict=True):
        assert _bars(*before) != _bars(*after), (before, after)
    assert probe(*steps[-1]).faults, "the last setting must fill the faults table"

    jlab.open_and_run_all(page, NOTEBOOK)
    jlab.wait_for_outputs_rendered(page)
    jlab.assert_no_error_outputs(page)

    # the explorer's controls: Ring and Program dropdowns, the strict-ISA checkbox
    assert page.locator(".widget-dropdown select").count() == 2
    assert page.locator(".widget-checkbox input[type=checkbox]").count() == 1
    plot = jlab.find_plot(page, _title(*steps[0]))
    now, want = _wait_for_explorer(page, jlab, plot, steps[0])
    assert now == want

    changes = [lambda: jlab.select_dropdown(page, "sensitive but unprivileged", index=1),
               lambda: jlab.set_checkbox(page, True),
               lambda: jlab.select_dropdown(page, RING_LABEL[0], index=0),
               lambda: jlab.select_dropdown(page, "divide by zero", index=1)]
    for change, setting in zip(changes, steps[1:], strict=True):
        change()
        now, want = _wait_for_explorer(page, jlab, plot, setting)
        assert now == want, f"after the change to {setting}"

    jlab.assert_no_error_outputs(page)
    jlab.assert_figures_accessible(page)
