"""The numbers of notebook 08: memory virtualization, shadow paging against EPT.

Whole runs of the guest under ``hw_shadow`` and ``hw_ept`` (and natively), asked of
:mod:`kernel_sim.experiments` (cached); the tables and figures that show them live in
:mod:`kernel_sim.viz.memory`:

* :func:`mode_run` -- one workload under one memory mode (or natively) with a CPU preset, a TLB
  size, VPID on or off and a nested-table depth;
* :func:`exits` -- all VM exits of a run;
* :func:`tlb_sweep` -- cycles and TLB misses of both modes against the TLB size.
"""
from __future__ import annotations

from collections.abc import Iterable

from .. import experiments

#: the two memory modes of hardware-assisted virtualization, in the order the figures use
MODES = ("hw_shadow", "hw_ept")
#: workloads of the comparison, with the loop count they run with (small enough that every
#: run of the notebook's sweeps together takes a few seconds)
MODE_WORKLOADS: dict[str, int] = {"compute": 2000, "syscall": 200, "pgfault": 100,
                                  "ptemod": 100, "ctxswitch": 100, "forkwait": 20}
#: TLB sizes of the sweep (the simulated TLB needs a power of two)
TLB_SIZES = (1, 2, 4, 8, 16, 32, 64, 128)


def mode_run(workload: str, technique: str, cpu: str = "nehalem", count: int | None = None,
             tlb_size: int = 64, vpid: bool | None = None, ept_levels: int = 4):
    """One run of ``workload`` (``count`` iterations; None: :data:`MODE_WORKLOADS`' count, or
    the workload's default) under ``technique`` (native, hw_shadow or hw_ept), cached.
    ``vpid`` and ``ept_levels`` go to the techniques whose monitor takes them."""
    if count is None:
        count = MODE_WORKLOADS.get(workload)
    knobs = experiments.settings_for(technique, vpid=vpid, ept_levels=ept_levels)
    return experiments.result_of(workload, technique, cpu=cpu, count=count, tlb_size=tlb_size,
                                 knobs=knobs)


def exits(result) -> int:
    """All VM exits of a run."""
    return experiments.event_total(result)


def tlb_sweep(workload: str, cpu: str = "nehalem",
              sizes: Iterable[int] = TLB_SIZES) -> dict[str, list]:
    """``{"tlb_size": [...], "hw_shadow": [cycles...], "hw_ept": [...], "<mode> misses": [...]}``
    for each TLB size (sorted)."""
    sizes = sorted(set(int(s) for s in sizes))
    out: dict[str, list] = {"tlb_size": sizes}
    for m in MODES:
        runs = [mode_run(workload, m, cpu, tlb_size=s) for s in sizes]
        out[m] = [r.cycles for r in runs]
        out[f"{m} misses"] = [int(r.events["tlb_misses"]) for r in runs]
    return out


__all__ = ["MODES", "MODE_WORKLOADS", "TLB_SIZES", "mode_run", "exits", "tlb_sweep"]
