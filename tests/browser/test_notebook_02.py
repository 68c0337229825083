"""Notebook 02 (protection rings) in a real JupyterLab.

Runs the whole notebook in headless chromium, checks that no cell or widget shows an error and
that the ring explorer rendered, then turns its knobs and checks that the bars the browser draws
are exactly what :func:`kernel_sim.rings.probe` returns for the new setting (computed here, in the
test process).
"""

from __future__ import annotations

from kernel_sim.rings import TRAP_KINDS, probe

NOTEBOOK = "02_protection_rings.ipynb"

_JS_FIND_PLOT = """
(prefix) => {
  const plots = Array.from(document.querySelectorAll('.js-plotly-plot'));
  return plots.findIndex((gd) => {
    const t = gd.layout && gd.layout.title;
    const text = typeof t === 'string' ? t : (t && t.text) || '';
    return text.startsWith(prefix);
  });
}
"""


def _title(page, plot: int) -> str:
    return page.evaluate(
        "(i) => { const gd = document.querySelectorAll('.js-plotly-plot')[i];"
        " const t = gd.layout.title; return typeof t === 'string' ? t : t.text; }", plot)


def _bars(name: str, ring: int, strict: bool = False) -> list:
    traps = probe(name, ring, strict).traps
    return [traps[k] for k in TRAP_KINDS]


def test_ring_explorer_bars_follow_dropdowns_and_match_probe(page, jlab):
    jlab.open_and_run_all(page, NOTEBOOK)
    jlab.assert_no_error_outputs(page)

    # every widget rendered: the explorer's two dropdowns, its checkbox and its figure
    page.wait_for_selector(".widget-dropdown select")
    assert page.locator(".widget-dropdown select").count() == 2
    assert page.locator(".widget-checkbox input[type=checkbox]").count() == 1
    page.wait_for_function(f"() => ({_JS_FIND_PLOT})('Traps by kind') >= 0", polling=200)
    plot = page.evaluate(_JS_FIND_PLOT, "Traps by kind")
    # all four static figures plus the widget's figure are on the page
    assert page.locator(".js-plotly-plot").count() >= 4

    before = jlab.plotly_values(page, plot=plot)
    assert before == _bars("privileged mix", 3)

    jlab.select_dropdown(page, "0 (kernel)", index=0)            # Ring
    after = jlab.wait_for_plotly_change(page, before, plot=plot)
    assert after == _bars("privileged mix", 0)
    assert "ring 0" in _title(page, plot)

    jlab.select_dropdown(page, "divide by zero", index=1)        # Program
    again = jlab.wait_for_plotly_change(page, after, plot=plot)
    assert again == _bars("divide by zero", 0)
    assert "'divide by zero' in ring 0" in _title(page, plot)
    # the faults table under the chart names the faulting instructions
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('.widget-html-content'))"
        ".some((e) => e.textContent.includes('div r3, r1, r2'))", polling=200)
    jlab.assert_no_error_outputs(page)
