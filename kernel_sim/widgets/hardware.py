"""The Virtualization Lab (notebook 07): two configurations of the same guest, side by side.

Pick a workload and a loop count; then, for a LEFT and a RIGHT configuration, a technique
(``native``, ``emulation``, ``trap_emulate``, ``binary_translation``, ``paravirt``,
``hw_shadow``, ``hw_ept``), a CPU preset and the knobs that matter for it:

* **TLB size** (entries) -- every technique; it changes native too, so each side is compared
  with native on a machine with the same TLB;
* **VPID** -- hardware assist only: with a VPID the TLB keeps the guest's entries across VM
  entries and exits; without one every entry and exit flushes it.  First-generation VT-x
  (``first-vtx``) has no VPID;
* **paravirt batch size** -- ``paravirt`` only: page-table updates per ``mmu_update``
  hypercall (the guest is rebuilt with ``build_guest(..., paravirt=True, batch=N)``);
* **VMCS controls** -- hardware assist only: the exit controls a mode *may* set
  (:data:`~kernel_sim.monitors.hardware_assist.OPTIONAL_CONTROLS`).  ``hw_shadow`` needs all of
  them (the shadow page tables depend on those exits), so there they are ticked and locked;
  ``hw_ept`` needs none, and each one you tick adds exits without changing what the guest sees.

A knob that does not apply to the chosen technique is disabled, put back to its neutral value,
and a note says why.  A combination that cannot work (``hw_ept`` or a VPID on ``first-vtx``, a
knob set for a technique it does not apply to, a required control cleared) is *refused*: a
message says why and the charts keep the last valid setting.

Every change runs the real thing -- the guest OS boots and runs the workload under each side's
technique and natively -- and the three charts update in place: exits and events by reason,
simulated cycles by category (with the slowdown against native), and the exit timeline.
Results are cached per setting, so going back to a setting is instant.  All cycle numbers come
from the cost model in :mod:`kernel_sim.costs`: model assumptions, not measurements.
"""
from __future__ import annotations

import html

import ipywidgets as widgets

from .. import experiments
from ..costs import CPU_PRESETS
from ..experiments import records_exit_timeline, settings_for, takes_guest_knob
from ..guest import DEFAULT_BATCH, MAX_BATCH
from ..monitors import TECHNIQUE_ORDER, monitor_class
from ..monitors.hardware_assist import OPTIONAL_CONTROLS, REQUIRED_CONTROLS
from ..viz.hardware import (
    fill_lab_cycles,
    fill_lab_events,
    fill_lab_timeline,
    lab_cycles_figure,
    lab_events_figure,
    lab_timeline_figure,
    slowdown,
)
from ..vmx import CONTROL_DOC
from .base import count_limit, fit_count, refusal_html

#: the techniques a configuration can pick, in the course's order
TECHNIQUES = TECHNIQUE_ORDER
#: the VMCS controls the Lab offers: every control some mode may leave clear
LAB_CONTROLS = tuple(dict.fromkeys(c for mode in TECHNIQUES
                                   for c in OPTIONAL_CONTROLS.get(mode, ())))
TLB_SIZES = (8, 16, 32, 64, 128, 256)
DEFAULT_TLB = 64
#: the Lab's first loop count: small, so that one update stays well under 200 ms
DEFAULT_COUNT = 20
_WIDE = {"description_width": "initial"}


def takes_vmcs(technique: str) -> bool:
    """Do the VPID and VMCS-control knobs apply to ``technique`` (its monitor takes them)?"""
    return {"vpid", "controls"} <= experiments.monitor_settings(technique)


def takes_batch(technique: str) -> bool:
    """Does the paravirt batch knob apply to ``technique`` (its guest image takes it)?"""
    return takes_guest_knob(technique, "batch")


def run_config(workload: str, count: int, technique: str, cpu: str, tlb_size: int = DEFAULT_TLB,
               vpid: bool | None = None, batch: int = DEFAULT_BATCH,
               controls: tuple[tuple[str, bool], ...] = ()):
    """Run one configuration (cached by :mod:`kernel_sim.experiments`): its TechniqueResult.

    ``vpid`` and ``controls`` (pairs of control name and on/off) go to the techniques whose
    monitor takes them (hardware assist); ``batch`` to those whose guest image takes it
    (paravirt).  Every run asks for the strict ISA, on which sensitive instructions trap
    outside ring 0 (the techniques that let the learner choose run on it).
    """
    knobs = settings_for(technique, vpid=vpid, controls=dict(controls) or None)
    guest = {"batch": batch} if takes_batch(technique) else {}
    return experiments.result_of(workload, technique, count=count, cpu=cpu, strict=True,
                                 tlb_size=tlb_size, knobs=knobs, guest=guest)


def knob_notes(technique: str) -> str:
    """One line per knob that does not apply to ``technique`` (shown under its panel)."""
    notes = []
    vmcs = [t for t in TECHNIQUES if takes_vmcs(t)]
    if not takes_vmcs(technique):
        notes.append(f"VPID and VMCS controls apply only to hardware assist "
                     f"({', '.join(vmcs)})")
    elif not OPTIONAL_CONTROLS.get(technique):
        notes.append(f"{technique} requires every CR3/CR0/INVLPG exit control: its shadow page "
                     "tables depend on those exits, so they are locked on")
    else:
        notes.append(f"{technique} requires none of these controls: each one you tick adds "
                     "exits without changing what the guest sees")
    if not takes_batch(technique):
        batched = [t for t in TECHNIQUES if takes_batch(t)]
        notes.append(f"the batch size applies only to {', '.join(batched)}")
    return "<br>".join(f"<small>note: {html.escape(n)}</small>" for n in notes)


class ConfigPanel(widgets.VBox):
    """The controls of one configuration (``side`` is ``"left"`` or ``"right"``).

    Attributes: ``technique``, ``cpu``, ``tlb_size`` (Dropdowns), ``vpid`` (Checkbox),
    ``batch`` (IntSlider), ``controls`` ({VMCS control name: Checkbox}), ``note`` (HTML).
    """

    def __init__(self, side: str, technique: str, cpu: str, tlb_size: int = DEFAULT_TLB,
                 vpid: bool | None = None, batch: int = DEFAULT_BATCH,
                 controls: dict[str, bool] | None = None):
        super().__init__()
        self.side = side
        look = "solid bars, circles" if side == "left" else "hatched bars, crosses"
        self.header = widgets.HTML(f"<b>{side.upper()} configuration</b> ({look})")
        self.technique = widgets.Dropdown(options=list(TECHNIQUES), value=technique,
                                          description=f"{side.capitalize()} technique",
                                          style=_WIDE)
        self.cpu = widgets.Dropdown(options=list(CPU_PRESETS), value=cpu,
                                    description=f"{side.capitalize()} CPU preset", style=_WIDE)
        self.tlb_size = widgets.Dropdown(options=list(TLB_SIZES), value=tlb_size,
                                         description="TLB size (entries)", style=_WIDE)
        self.vpid = widgets.Checkbox(value=False, description="VPID (tagged TLB)", indent=False)
        self.batch = widgets.IntSlider(value=batch, min=1, max=MAX_BATCH, step=1,
                                       description="paravirt batch size", style=_WIDE,
                                       continuous_update=False)
        self.controls = {name: widgets.Checkbox(value=False, description=name, indent=False,
                                                tooltip=CONTROL_DOC.get(name, name))
                         for name in LAB_CONTROLS}
        self.note = widgets.HTML()
        self.fit_knobs()
        if takes_vmcs(technique):
            if vpid is not None:
                self.vpid.value = bool(vpid)
            for name, on in (controls or {}).items():
                if name in OPTIONAL_CONTROLS.get(technique, ()):
                    self.controls[name].value = bool(on)
        self.children = [self.header, self.technique, self.cpu, self.tlb_size, self.vpid,
                         self.batch, widgets.HTML("<small>optional VMCS exit controls:</small>"),
                         *self.controls.values(), self.note]

    def all_controls(self):
        """Every control of the panel (for observers and tests)."""
        return [self.technique, self.cpu, self.tlb_size, self.vpid, self.batch,
                *self.controls.values()]

    def fit_knobs(self) -> None:
        """Enable the knobs that apply to the technique; put the others to neutral values."""
        t = self.technique.value
        hw = takes_vmcs(t)
        self.vpid.disabled = not hw
        self.vpid.value = bool(CPU_PRESETS[self.cpu.value]["vpid"]) if hw else False
        self.batch.disabled = not takes_batch(t)
        if self.batch.disabled:
            self.batch.value = DEFAULT_BATCH
        optional = OPTIONAL_CONTROLS.get(t, ())
        for name, box in self.controls.items():
            box.value = name in REQUIRED_CONTROLS.get(t, ())
            box.disabled = name not in optional
        self.note.value = knob_notes(t)

    def config(self) -> dict:
        """The settings of this side, checked: a knob set for a technique it does not apply
        to raises ValueError with a message the learner can act on."""
        t = self.technique.value
        hw, pv = takes_vmcs(t), takes_batch(t)
        problems = []
        if not hw:
            if self.vpid.value:
                problems.append(f"VPID applies only to hardware assist, not to {t}")
            ticked = [n for n, b in self.controls.items() if b.value]
            if ticked:
                problems.append(f"VMCS controls ({', '.join(ticked)}) apply only to hardware "
                                f"assist, not to {t}")
        refused = monitor_class(t).refusal(self.cpu.value, vpid=bool(self.vpid.value) and hw)
        if refused:
            problems.append(refused)
        if not pv and self.batch.value != DEFAULT_BATCH:
            problems.append(f"the batch size applies only to paravirt, not to {t}")
        if problems:
            raise ValueError(f"{self.side}: " + "; ".join(problems))
        return dict(technique=t, cpu=self.cpu.value, tlb_size=int(self.tlb_size.value),
                    vpid=bool(self.vpid.value) if hw else None,
                    batch=int(self.batch.value) if pv else DEFAULT_BATCH,
                    controls=tuple((n, bool(b.value)) for n, b in self.controls.items())
                    if hw else ())

    def describe(self) -> str:
        """``"hw_ept on nehalem, TLB 64, VPID on"`` -- the setting in words."""
        t = self.technique.value
        words = f"{t} on {self.cpu.value}, TLB {self.tlb_size.value}"
        if takes_vmcs(t):
            words += f", VPID {'on' if self.vpid.value else 'off'}"
            extra = [n for n, b in self.controls.items() if b.value
                     and n not in REQUIRED_CONTROLS.get(t, ())]
            if extra:
                words += ", extra exits: " + ", ".join(extra)
        if takes_batch(t):
            words += f", batch {self.batch.value}"
        return words


class VirtualizationLab(widgets.VBox):
    """Workload and loop count, two configuration panels, a message, a summary, three charts.

    Attributes: ``workload`` (Dropdown), ``count`` (IntSlider), ``left`` and ``right``
    (:class:`ConfigPanel`), ``events_fig``, ``cycles_fig``, ``timeline_fig`` (FigureWidgets),
    ``message`` (refusals), ``summary`` (HTML), ``results`` ({"left": TechniqueResult,
    "right": ...}), ``baselines`` (native on each side's machine) and ``baseline`` (native on
    the left side's machine).
    """

    def __init__(self, workload: str = "forkwait", count: int = DEFAULT_COUNT,
                 left: str = "hw_shadow", right: str = "hw_ept", cpu: str = "nehalem",
                 right_cpu: str | None = None):
        super().__init__()
        from ..guest import WORKLOADS
        self._quiet = False
        self.workload = widgets.Dropdown(options=list(WORKLOADS), value=workload,
                                         description="Workload")
        self.count = widgets.IntSlider(value=min(count, count_limit(workload)), min=1,
                                       max=count_limit(workload), step=1,
                                       description="Loop count", continuous_update=False)
        self.left = ConfigPanel("left", left, cpu)
        self.right = ConfigPanel("right", right, right_cpu or cpu)
        self.message = widgets.HTML()
        self.summary = widgets.HTML()
        self.results, self.baselines = self._run()      # a bad first setting raises here
        self.baseline = self.baselines["left"]
        self.events_fig = lab_events_figure(self.results, widget=True)
        self.cycles_fig = lab_cycles_figure(self.results, self.baselines, widget=True)
        self.timeline_fig = lab_timeline_figure(self.results, widget=True)
        for control in self.all_controls():
            control.observe(self._on_change, names="value")
        self.children = [widgets.HBox([self.workload, self.count]),
                         widgets.HBox([self.left, self.right]), self.message, self.summary,
                         self.events_fig, self.cycles_fig, self.timeline_fig]
        self._show()

    # ---- controls -------------------------------------------------------------------------
    def all_controls(self):
        """Every control of the Lab, in display order."""
        return [self.workload, self.count, *self.left.all_controls(),
                *self.right.all_controls()]

    def _on_change(self, change=None) -> None:
        if self._quiet:
            return
        owner = (change or {}).get("owner")
        self._quiet = True
        try:
            if owner is self.workload:         # keep the slider inside the workload's range
                fit_count(self.count, self.workload.value)
            for panel in (self.left, self.right):
                if owner is panel.technique:
                    panel.fit_knobs()
        finally:
            self._quiet = False
        self.refresh()

    # ---- running and showing ----------------------------------------------------------------
    def _run(self):
        w, c = self.workload.value, int(self.count.value)
        results, baselines = {}, {}
        for side, panel in (("left", self.left), ("right", self.right)):
            cfg = panel.config()
            try:
                results[side] = run_config(w, c, **cfg)
            except (ValueError, TypeError, RuntimeError) as exc:    # say which side
                raise ValueError(f"{side}: {exc}") from exc
            baselines[side] = run_config(w, c, experiments.BASELINE, cfg["cpu"],
                                         cfg["tlb_size"])
        return results, baselines

    def refresh(self) -> None:
        """Run the current setting and update the charts and the summary; a setting that
        cannot work is refused with a message and the charts keep the last valid one."""
        try:
            results, baselines = self._run()
        except (ValueError, TypeError, RuntimeError) as exc:
            self.message.value = refusal_html(str(exc))
            return
        self.results, self.baselines = results, baselines
        self.baseline = baselines["left"]
        self._show()

    def _show(self) -> None:
        with self.events_fig.batch_update():
            fill_lab_events(self.events_fig, self.results)
        with self.cycles_fig.batch_update():
            fill_lab_cycles(self.cycles_fig, self.results, self.baselines)
        with self.timeline_fig.batch_update():
            fill_lab_timeline(self.timeline_fig, self.results)
        lines = []
        for side, panel in (("left", self.left), ("right", self.right)):
            r, n = self.results[side], self.baselines[side]
            timeline = records_exit_timeline(r.technique)
            kind = "VM exits" if timeline else "monitor events"
            line = (f"<b>{side}</b> ({html.escape(panel.describe())}): {r.cycles:,} simulated "
                    f"cycles, <b>{slowdown(r, n):.2f}x native</b>, "
                    f"{sum(r.monitor_events.values()):,} {kind}")
            if not timeline:
                line += " (no exit timeline: it is recorded only for hardware assist)"
            if monitor_class(r.technique).needs.same_kernel_as_native:
                same = r.state_digest == n.state_digest
                line += ("; guest OS state same as native" if same else
                         "; <b>guest OS state differs from native</b>")
            lines.append(line)
        lines.append("<small>cycle counts come from the cost model (kernel_sim.costs): model "
                     "assumptions, not measurements</small>")
        self.summary.value = "<br>".join(lines)
        self.message.value = ""


def virtualization_lab(workload: str = "forkwait", count: int = DEFAULT_COUNT,
                       left: str = "hw_shadow", right: str = "hw_ept", cpu: str = "nehalem",
                       right_cpu: str | None = None) -> VirtualizationLab:
    """Build the Virtualization Lab (a VBox): ``lab = virtualization_lab(); lab``."""
    return VirtualizationLab(workload, count, left, right, cpu, right_cpu)


__all__ = ["virtualization_lab", "VirtualizationLab", "ConfigPanel", "run_config", "knob_notes",
           "takes_vmcs", "takes_batch",
           "TECHNIQUES", "LAB_CONTROLS", "TLB_SIZES", "DEFAULT_COUNT"]
