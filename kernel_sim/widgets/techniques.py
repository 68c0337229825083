"""The technique explorer of notebooks 03-06: pick a workload and a technique, see what it costs.

Each change runs the real thing: the guest OS boots with the chosen workload under the chosen
technique (and natively, for comparison), and two charts update in place -- the events the
monitor handled, by reason, and the simulated cycles of native and the technique by category.
Results are cached per setting, so going back to a setting is instant.
"""
from __future__ import annotations

import html
from typing import Optional

import ipywidgets as widgets

from .. import experiments
from ..costs import CPU_PRESETS
from ..monitors import available_techniques, monitor_class
from ..viz.techniques import cycles_figure, events_figure, fill_cycles, fill_events
from .base import (  # noqa: F401 (MAX_COUNT, fit_count, refusal_html re-exported)
    MAX_COUNT,
    WorkloadExplorer,
    apply_settings,
    count_limit,
    count_problem,
    fit_count,
    refusal_html,
)

DEFAULT_COUNT = 50


def run_setting(workload: str, technique: str, count: int, strict: bool, cpu: str):
    """Run one setting (cached by :mod:`kernel_sim.experiments`): the technique's result."""
    return experiments.result_of(workload, technique, count=count, strict=strict, cpu=cpu)


def same_kernel_state(result, baseline) -> bool | None:
    """Did the technique leave the guest OS in exactly the native state (state digest)?

    None when the comparison means nothing: a technique whose guest kernel is another binary
    (paravirt's, built with ``PARAVIRT=1``: ``needs.same_kernel_as_native`` is False) can equal
    native only in its user-visible result.
    """
    if not monitor_class(result.technique).needs.same_kernel_as_native:
        return None
    return result.state_digest == baseline.state_digest


class TechniqueExplorer(WorkloadExplorer, widgets.VBox):
    """Controls, the events chart, the cycles chart and a one-line verdict.

    Attributes: ``workload``, ``technique``, ``strict``, ``cpu``, ``count`` (controls),
    ``events_fig`` and ``cycles_fig`` (FigureWidgets), ``message`` (refusals), ``summary``
    (HTML), ``result`` (the technique's :class:`~kernel_sim.results.TechniqueResult`),
    ``baseline`` (native's) and ``state_matches`` (:func:`same_kernel_state` of the two: the
    summary says whether the guest OS's whole state, not only what user programs see, equals
    native).
    """

    def __init__(self, workload: str = "syscall", technique: Optional[str] = None,
                 strict: bool = True, cpu: str = "modern", count: int = DEFAULT_COUNT,
                 techniques=None):
        super().__init__()
        from ..guest import WORKLOADS
        names = [t for t in (techniques or available_techniques())
                 if t != experiments.BASELINE] or [experiments.BASELINE]
        self._quiet = False
        self.workload = widgets.Dropdown(options=list(WORKLOADS), value=workload,
                                         description="Workload")
        self.technique = widgets.Dropdown(options=names, value=technique or names[0],
                                          description="Technique")
        self.cpu = widgets.Dropdown(options=list(CPU_PRESETS), value=cpu,
                                    description="CPU preset")
        self.strict = widgets.Checkbox(value=bool(strict), description="strict ISA",
                                       indent=False)
        self.count = widgets.IntSlider(value=min(count, count_limit(workload)), min=1,
                                       max=count_limit(workload), step=1,
                                       description="Loop count", continuous_update=False)
        self.message = widgets.HTML()
        self.summary = widgets.HTML()
        self.result, self.baseline = self._run()
        self.events_fig = events_figure(self.result, widget=True)
        self.cycles_fig = cycles_figure({"native": self.baseline, self.result.technique:
                                         self.result}, widget=True)
        for control in (self.workload, self.technique, self.cpu, self.strict, self.count):
            control.observe(self._on_change, names="value")
        self.children = [widgets.HBox([self.workload, self.technique, self.cpu]),
                         widgets.HBox([self.count, self.strict]), self.message, self.summary,
                         widgets.HBox([self.events_fig, self.cycles_fig])]
        self._show()

    def _run(self):
        w, t, c = self.workload.value, self.technique.value, self.count.value
        strict = self.strict.value
        return (run_setting(w, t, c, strict, self.cpu.value),
                run_setting(w, experiments.BASELINE, c, strict, self.cpu.value))

    def _show(self) -> None:
        r, n = self.result, self.baseline
        with self.events_fig.batch_update():
            fill_events(self.events_fig, r)
        with self.cycles_fig.batch_update():
            fill_cycles(self.cycles_fig, {"native": n, r.technique: r})
        same = r.user_digest == n.user_digest
        verdict = ("same user-visible result as native" if same else
                   "<b>differs from native</b> -- the technique is not equivalent here")
        self.state_matches = same_kernel_state(r, n)
        if self.state_matches is True:
            verdict += "; guest OS state (state digest) also the same as native"
        elif self.state_matches is False:
            verdict += ("; <b>guest OS state (state digest) differs from native</b> -- the "
                        "guest kernel ended where the bare machine would not have left it")
        notes = "".join(f"<br>note: {html.escape(x)}" for x in r.notes)
        self.summary.value = (f"{html.escape(r.technique)}: {r.cycles:,} simulated cycles, "
                              f"{r.cycles / max(n.cycles, 1):.2f}x native; {verdict}{notes}")
        self.message.value = ""

    def set(self, **settings) -> bool:
        """Change settings from code (workload, technique, cpu, strict, count).  A bad value is
        refused with a visible message and nothing changes; returns True when applied."""
        controls = {"workload": self.workload, "technique": self.technique, "cpu": self.cpu,
                    "strict": self.strict, "count": self.count}
        problems = []
        for name, value in settings.items():
            control = controls.get(name)
            if control is None:
                problems.append(f"unknown setting {name!r}")
            elif isinstance(control, widgets.Dropdown) and value not in control.options:
                problems.append(f"{name} must be one of {', '.join(map(str, control.options))}, "
                                f"got {value!r}")
            elif name == "strict" and not isinstance(value, bool):
                problems.append(f"strict must be True or False, got {value!r}")
            elif name == "count" and count_problem(settings, self.workload):
                problems.append(count_problem(settings, self.workload))
        return apply_settings(self, problems, lambda: self._set_workload_first(
            settings, controls, ("technique", "cpu", "strict", "count")))


def technique_explorer(workload: str = "syscall", technique: Optional[str] = None,
                       strict: bool = True, cpu: str = "modern", count: int = DEFAULT_COUNT,
                       techniques=None) -> TechniqueExplorer:
    """Build the technique explorer (a VBox)."""
    return TechniqueExplorer(workload, technique, strict, cpu, count, techniques)


__all__ = ["technique_explorer", "TechniqueExplorer", "run_setting", "same_kernel_state"]
