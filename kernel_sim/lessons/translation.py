"""The numbers of notebook 05: full virtualization without hardware support.

Trap-and-emulate and binary translation run the guest kernel deprivileged and keep shadow page
tables; this module asks :mod:`kernel_sim.experiments` for their runs and computes what the
notebook, its figures (:mod:`kernel_sim.viz.translation`) and its exercise checks show:

* :func:`technique_run` -- one workload under one technique (cached by ``experiments``);
* :func:`per_operation` -- the monitor's events for *one* iteration of a workload's loop: the
  difference of two runs whose loop counts differ, divided by that difference, so that the
  boot and the shutdown cancel out;
* :func:`emulate_matrix` -- which privileged (and, on the strict ISA, sensitive) instructions
  trap, and how often per iteration, workload by workload;
* :func:`shadow_rows` -- the shadow-paging counters per iteration;
* :func:`callouts` -- a binary-translation run's callouts by kind;
* :func:`cycles_per_operation`, :func:`comparison_rows` -- simulated cycles of one iteration
  under ``trap_emulate``, ``binary_translation`` and native, on several workloads.

A technique runs on the strict ISA where it lets the learner choose (trap-and-emulate: on the
default ISA it misses POPF and friends, see notebook 03) unless asked otherwise
(:func:`kernel_sim.experiments.default_strict`).
"""
from __future__ import annotations

from collections.abc import Sequence

from .. import experiments
from ..experiments import OPERATION_COUNTS, default_strict

#: Workloads the comparisons use by default: one per kind of guest activity.
COMPARE_WORKLOADS = ("compute", "syscall", "io", "pgfault", "ctxswitch", "callret")
#: The shadow-paging counters, in the order tables show them, with what each one means.
SHADOW_EVENTS = {
    "shadow:hidden_fault": "host #PF the guest never sees: the monitor walked the guest's "
                           "tables and filled the shadow",
    "shadow:true_fault": "the guest's own page fault: its tables forbid the access, so the "
                         "monitor reflects #PF to the guest kernel",
    "shadow:pt_write": "a store to a write-protected guest page table, emulated by the monitor",
    "shadow:root_hit": "the guest switched address space and the monitor reused a cached "
                       "shadow root",
    "shadow:root_new": "the guest switched to an address space without a cached shadow: a new "
                       "root was built",
    "shadow:unshadow": "a frame that stopped being a page table was no longer write-protected",
}
#: Techniques this chapter compares, in the order figures show them.
TECHNIQUES = ("native", "trap_emulate", "binary_translation")


def _check_workload(workload: str) -> str:
    from ..guest import WORKLOADS
    if workload not in WORKLOADS:
        raise ValueError(f"unknown workload {workload!r}; known: {', '.join(WORKLOADS)}")
    return workload


def _check_technique(technique: str) -> str:
    from ..monitors import available_techniques
    known = [t for t in TECHNIQUES if t in available_techniques()]
    if technique not in known:
        raise ValueError(f"technique must be one of {', '.join(known)}, got {technique!r}")
    return technique


def technique_run(workload: str, technique: str = "trap_emulate", count: int | None = None,
                  strict: bool | None = None, cpu: str = "modern", **settings):
    """Run ``workload`` under ``technique`` and return its ``TechniqueResult`` (cached).

    ``count`` is the loop count (default: the workload's own); ``strict`` the ISA (default:
    :func:`default_strict`); ``settings`` go to the monitor (e.g. ``max_roots=1`` for
    ``trap_emulate``).  The same arguments return the same result object.
    """
    _check_workload(workload)
    _check_technique(technique)
    strict = default_strict(technique) if strict is None else bool(strict)
    return experiments.result_of(workload, technique, count=count, strict=strict, cpu=cpu,
                                 knobs=settings)


def per_operation(workload: str, technique: str = "trap_emulate",
                  strict: bool | None = None,
                  counts: tuple[int, int] = OPERATION_COUNTS, **settings) -> dict[str, float]:
    """Monitor events per iteration of ``workload``'s loop, by reason (non-zero ones only).

    Runs the workload twice, with the loop counts ``counts = (lo, hi)``, and divides the
    difference of every event count by ``hi - lo``: what boot and shutdown cost is the same in
    both runs and cancels out.  Values are rounded to two decimals.  ``settings`` go to the
    monitor, as in :func:`technique_run`.
    """
    _check_workload(workload)
    _check_technique(technique)
    return experiments.per_operation(workload, technique, strict, counts, knobs=settings)


def emulate_matrix(workloads: Sequence[str] = COMPARE_WORKLOADS, strict: bool = True,
                   technique: str = "trap_emulate"):
    """``(workloads, mnemonics, values)``: ``emulate:<mnemonic>`` events per iteration.

    ``values[i][j]`` is how often workload ``i`` made the monitor emulate mnemonic ``j`` per
    iteration of its loop.  Mnemonics are listed in order of their total, most frequent first.
    """
    per = {w: per_operation(w, technique, strict) for w in workloads}
    totals: dict[str, float] = {}
    for events in per.values():
        for reason, value in events.items():
            if reason.startswith("emulate:"):
                name = reason.split(":", 1)[1]
                totals[name] = totals.get(name, 0) + value
    names = sorted(totals, key=lambda n: (-totals[n], n))
    values = [[per[w].get("emulate:" + n, 0.0) for n in names] for w in workloads]
    return list(workloads), names, values


def shadow_rows(workloads: Sequence[str] = COMPARE_WORKLOADS,
                technique: str = "trap_emulate") -> list[tuple[str, list[float]]]:
    """``(workload, [count per iteration of each SHADOW_EVENTS reason])`` rows."""
    out = []
    for w in workloads:
        per = per_operation(w, technique)
        out.append((w, [per.get(reason, 0.0) for reason in SHADOW_EVENTS]))
    return out


def callouts(result) -> dict[str, int]:
    """A binary-translation result's callouts by kind: ``callout:emulate:cli`` becomes
    ``emulate:cli``, ``callout:ret`` becomes ``ret``."""
    return {reason.split(":", 1)[1]: n for reason, n in sorted(result.monitor_events.items())
            if reason.startswith("callout:")}


def cycles_per_operation(workload: str, technique: str,
                         counts: tuple[int, int] = OPERATION_COUNTS) -> float:
    """Simulated cycles of one iteration of ``workload``'s loop under ``technique``.

    The difference of two runs with loop counts ``counts = (lo, hi)``, divided by ``hi - lo``:
    the steady state, without the boot and the shutdown (which cost the same in both runs).
    """
    _check_workload(workload)
    _check_technique(technique)
    return experiments.cycles_per_operation(workload, technique, counts)


def comparison_rows(workloads: Sequence[str] = COMPARE_WORKLOADS,
                    techniques: Sequence[str] = TECHNIQUES):
    """Rows ``(workload, technique, simulated cycles per iteration, times native)``."""
    out = []
    for w in workloads:
        base = cycles_per_operation(w, experiments.BASELINE)
        for t in techniques:
            per = cycles_per_operation(w, t)
            out.append((w, t, round(per, 1), round(per / base, 2) if base else float("nan")))
    return out


__all__ = ["COMPARE_WORKLOADS", "OPERATION_COUNTS", "SHADOW_EVENTS", "TECHNIQUES",
           "technique_run", "default_strict", "per_operation", "emulate_matrix", "shadow_rows",
           "callouts", "cycles_per_operation", "comparison_rows"]
