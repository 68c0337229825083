"""The batch explorer of notebook 06: how many hypercalls do page-table updates cost?

The PARAVIRT kernel never writes its page tables itself: it queues each update and hands the
queue to the hypervisor in one ``mmu_update`` hypercall when the queue is full (the **batch
size**) or when something needs the tables up to date.  Pick a **workload** and a **batch
size**; the dashboard boots the guest under the ``paravirt`` monitor and updates two charts in
place: hypercalls and page-table entries updated against the batch size (the chosen size
marked), and the run's hypercalls by name.  Runs are cached, so going back is instant.
"""
from __future__ import annotations

import html

import ipywidgets as widgets

from ..lessons.paravirt import BATCH_WORKLOADS, mmu_updates, native_run, pte_updates, pv_run
from ..viz.paravirt import batch_figure, fill_batch, fill_hypercalls, hypercalls_figure
from .base import apply_settings, refusal_html

#: the batch sizes the PARAVIRT kernel accepts (its queue holds 64 updates)
MIN_BATCH, MAX_BATCH = 1, 64


class BatchExplorer(widgets.VBox):
    """Controls, the batch chart, the hypercalls chart and a one-line summary.

    Attributes: ``workload`` (Dropdown), ``batch`` (IntSlider), ``batch_fig`` and
    ``hypercalls_fig`` (FigureWidgets), ``message`` (refusals), ``summary`` (HTML), ``count``
    (the loop count of the current workload, None = its default) and ``result`` (the paravirt
    run's :class:`~kernel_sim.results.TechniqueResult`).
    """

    def __init__(self, workload: str = "boot", batch: int = 8):
        super().__init__()
        problems = _problems({"workload": workload, "batch": batch})
        if problems:
            raise ValueError("; ".join(problems))
        self._quiet = False
        self.workload = widgets.Dropdown(options=list(BATCH_WORKLOADS), value=workload,
                                         description="Workload")
        self.batch = widgets.IntSlider(value=batch, min=MIN_BATCH, max=MAX_BATCH, step=1,
                                       description="Batch size", continuous_update=False)
        self.message = widgets.HTML()
        self.summary = widgets.HTML()
        self.result = pv_run(workload, batch, self.count)
        self.batch_fig = batch_figure(workload, batch, self.count, widget=True)
        self.hypercalls_fig = hypercalls_figure(self.result, widget=True)
        for control in (self.workload, self.batch):
            control.observe(self._on_change, names="value")
        self.children = [widgets.HBox([self.workload, self.batch]), self.message, self.summary,
                         widgets.HBox([self.batch_fig, self.hypercalls_fig])]
        self._show()

    @property
    def count(self):
        """The loop count the explorer runs the current workload with (None: its default)."""
        return BATCH_WORKLOADS[self.workload.value]

    def _on_change(self, change=None) -> None:
        if not self._quiet:
            self.refresh()

    def refresh(self) -> None:
        """Run the current setting and update both charts and the summary."""
        try:
            self.result = pv_run(self.workload.value, self.batch.value, self.count)
            with self.batch_fig.batch_update():
                fill_batch(self.batch_fig, self.workload.value, self.batch.value, self.count)
        except (ValueError, TypeError, RuntimeError) as exc:
            self._refuse(str(exc))
            return
        self._show()

    def _show(self) -> None:
        r = self.result
        with self.hypercalls_fig.batch_update():
            fill_hypercalls(self.hypercalls_fig, r)
        calls, ptes = mmu_updates(r), pte_updates(r)
        native = native_run(self.workload.value, self.count)
        count = "default count" if self.count is None else f"count {self.count}"
        self.summary.value = (
            f"<b>{html.escape(self.workload.value)}</b> ({count}), batch size "
            f"<b>{self.batch.value}</b>: {calls:,} mmu_update hypercalls carried {ptes:,} "
            f"page-table updates ({ptes / max(calls, 1):.1f} per call); {r.cycles:,} simulated "
            f"cycles, {r.cycles / max(native.cycles, 1):.2f}x native (model costs)")
        self.message.value = ""

    def _refuse(self, text: str) -> None:
        self.message.value = refusal_html(text)

    def set(self, **settings) -> bool:
        """Change settings from code: ``workload`` and/or ``batch``.  A bad value is refused
        with a visible message and nothing changes; returns True when applied."""
        def assign():
            for name in ("workload", "batch"):
                if name in settings:
                    getattr(self, name).value = settings[name]
        return apply_settings(self, _problems(settings), assign)


def _problems(settings) -> list:
    out = []
    for name, value in settings.items():
        if name == "workload":
            if value not in BATCH_WORKLOADS:
                out.append(f"workload must be one of {', '.join(BATCH_WORKLOADS)}, "
                           f"got {value!r}")
        elif name == "batch":
            if isinstance(value, bool) or not isinstance(value, int) or \
                    not MIN_BATCH <= value <= MAX_BATCH:
                out.append(f"batch must be an integer from {MIN_BATCH} to {MAX_BATCH} (the "
                           f"kernel's queue holds {MAX_BATCH} updates), got {value!r}")
        else:
            out.append(f"unknown setting {name!r} (known: workload, batch)")
    return out


def batch_explorer(workload: str = "boot", batch: int = 8) -> BatchExplorer:
    """Build the batch explorer (a VBox); see :class:`BatchExplorer`."""
    return BatchExplorer(workload, batch)


__all__ = ["batch_explorer", "BatchExplorer", "MIN_BATCH", "MAX_BATCH"]
