"""The emulation explorer of notebook 04: one guest, a software CPU, and what it costs.

Pick a **workload**, an emulator **mode** (Bochs-style interpretation or QEMU-style translation
blocks), a **loop count** and the size of the **translation cache**.  Each change boots the guest
OS under the emulation technique (and on the bare machine, for comparison) and updates two
charts in place: the work the emulator counted, by reason, and the simulated cycles of native
and emulation by category.  Results are cached per setting, so going back is instant; a new
setting of a default-size workload takes a few milliseconds of simulation once the soft CPU is
compiled.
"""
from __future__ import annotations

import html

import ipywidgets as widgets

from ..lessons.emulation import CACHE_SIZES, MODE_LABELS, emulation_run, native_run, slowdown
from ..viz.techniques import cycles_figure, events_figure, fill_cycles, fill_events
from .base import WorkloadExplorer, apply_settings, count_limit, count_problem

#: the loop count the explorer starts with, unless a smaller limit applies
DEFAULT_COUNT = 50



def _cache_label(rows: int) -> str:
    return f"{rows:,} micro-ops" + (" (default)" if rows == CACHE_SIZES[-1] else "")


class EmulationExplorer(WorkloadExplorer, widgets.VBox):
    """Controls, the events chart, the cycles chart and a one-line summary.

    Attributes: ``workload``, ``mode``, ``count``, ``cache`` (controls), ``events_fig`` and
    ``cycles_fig`` (FigureWidgets), ``message`` (refusals), ``summary`` (HTML), ``result`` (the
    emulation run's :class:`~kernel_sim.results.TechniqueResult`) and ``baseline`` (native's).
    """

    def __init__(self, workload: str = "boot", mode: str = "translate",
                 count: int = DEFAULT_COUNT, cache_size: int = CACHE_SIZES[-1]):
        super().__init__()
        from ..guest import WORKLOADS
        self._quiet = False
        self.workload = widgets.Dropdown(options=list(WORKLOADS), value=workload,
                                         description="Workload")
        self.mode = widgets.Dropdown(options=[(label, m) for m, label in MODE_LABELS.items()],
                                     value=mode, description="Mode",
                                     layout=widgets.Layout(width="300px"))
        self.cache = widgets.Dropdown(options=[(_cache_label(s), s) for s in CACHE_SIZES],
                                      value=cache_size, description="TB cache",
                                      layout=widgets.Layout(width="300px"))
        limit = count_limit(workload)
        self.count = widgets.IntSlider(value=min(count, limit), min=1, max=limit, step=1,
                                       description="Loop count", continuous_update=False)
        self.message = widgets.HTML()
        self.summary = widgets.HTML()
        self.result, self.baseline = self._run()
        self.events_fig = events_figure(self.result, widget=True)
        self.cycles_fig = cycles_figure(self._pair(), widget=True)
        self.cycles_fig.layout.title.text = "Simulated cycles: native and emulation"
        for control in (self.workload, self.mode, self.cache, self.count):
            control.observe(self._on_change, names="value")
        self.children = [widgets.HBox([self.workload, self.mode]),
                         widgets.HBox([self.count, self.cache]), self.message, self.summary,
                         widgets.HBox([self.events_fig, self.cycles_fig])]
        self._show()

    # ---- running ------------------------------------------------------------------------------
    def _run(self):
        w, c = self.workload.value, self.count.value
        return (emulation_run(w, self.mode.value, c, self.cache.value), native_run(w, c))

    def _pair(self):
        """What the cycles chart shows: {label: result}, native first."""
        return {"native": self.baseline, f"emulation ({self.mode.value})": self.result}

    def _show(self) -> None:
        r, n = self.result, self.baseline
        with self.events_fig.batch_update():
            fill_events(self.events_fig, r)
        with self.cycles_fig.batch_update():
            fill_cycles(self.cycles_fig, self._pair())
        ev = r.monitor_events
        same = r.user_digest == n.user_digest
        parts = [f"<b>{html.escape(MODE_LABELS[self.mode.value])}</b>: {r.cycles:,} simulated "
                 f"cycles, <b>{slowdown(r, n):.1f}x</b> native ({n.cycles:,})",
                 f"{r.instructions:,} guest instructions, "
                 f"{ev.get('emulation:interpreted', 0):,} dispatched one by one"]
        if self.mode.value == "translate":
            parts.append(f"{ev.get('emulation:translations', 0):,} blocks translated, "
                         f"{ev.get('emulation:block_cache_hits', 0):,} block-cache hits, "
                         f"{ev.get('emulation:tb_flushes', 0):,} cache flushes")
        parts.append("same user-visible result as native" if same else
                     "<b>differs from native</b>")
        self.summary.value = "; ".join(parts)
        self.message.value = ""

    # ---- changing settings from code ----------------------------------------------------------
    def set(self, **settings) -> bool:
        """Change settings from code: ``workload``, ``mode``, ``count``, ``cache_size``.

        A bad value is refused with a visible message and nothing changes; returns True when
        the settings were applied.
        """
        controls = {"workload": self.workload, "mode": self.mode, "cache_size": self.cache,
                    "count": self.count}
        problems = []
        for name, value in settings.items():
            if name not in controls:
                problems.append(f"unknown setting {name!r} (known: {', '.join(controls)})")
            elif name == "workload" and value not in self.workload.options:
                problems.append(f"workload must be one of {', '.join(self.workload.options)}, "
                                f"got {value!r}")
            elif name == "mode" and value not in MODE_LABELS:
                problems.append(f"mode must be 'interpret' or 'translate', got {value!r}")
            elif name == "cache_size" and value not in CACHE_SIZES:
                problems.append(f"cache_size must be one of "
                                f"{', '.join(map(str, CACHE_SIZES))} micro-ops, got {value!r}")
            elif name == "count" and count_problem(settings, self.workload):
                problems.append(count_problem(settings, self.workload))
        return apply_settings(self, problems, lambda: self._set_workload_first(
            settings, controls, ("mode", "cache_size", "count")))


def emulation_explorer(workload: str = "boot", mode: str = "translate",
                       count: int = DEFAULT_COUNT,
                       cache_size: int = CACHE_SIZES[-1]) -> EmulationExplorer:
    """Build the emulation explorer (a VBox); see :class:`EmulationExplorer`."""
    return EmulationExplorer(workload, mode, count, cache_size)


__all__ = ["emulation_explorer", "EmulationExplorer", "count_limit"]
