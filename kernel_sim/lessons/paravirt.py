"""The numbers of notebook 06: paravirtualization.

The runs come from :mod:`kernel_sim.experiments` (cached, so a dashboard that goes back to a
setting it has shown is instant); the figures live in :mod:`kernel_sim.viz.paravirt`:

* :func:`pv_run` -- the PARAVIRT guest under the ``paravirt`` monitor, for a workload, an
  ``mmu_update`` batch size and a loop count; :func:`native_run` -- the plain guest natively;
* :func:`mmu_updates`, :func:`pte_updates`, :func:`hypercall_bars` -- what one run counted;
* :func:`batch_sweep` -- ``mmu_update`` hypercalls and page-table entries updated, for a list
  of batch sizes;
* :func:`per_operation` -- simulated cycles of one operation, paravirt against native.
"""
from __future__ import annotations

from collections.abc import Iterable

from .. import experiments

#: batch sizes the sweep always shows (the kernel's queue holds at most 64 updates)
BATCHES = (1, 2, 4, 8, 16, 32, 64)
#: the workloads of the batch explorer, with the loop count it runs them with (None: the
#: workload's default); small counts keep one update of the dashboard well under 200 ms
BATCH_WORKLOADS: dict[str, int | None] = {"boot": None, "forkwait": 20, "ptemod": 50,
                                             "pgfault": 50}


def pv_run(workload: str, batch: int = 8, count: int | None = None):
    """The PARAVIRT guest of ``workload`` with ``batch`` PTE updates per ``mmu_update``, run
    under the ``paravirt`` monitor (cached): its TechniqueResult."""
    return experiments.result_of(workload, "paravirt", count=count, guest={"batch": batch})


def native_run(workload: str, count: int | None = None):
    """The plain guest of ``workload`` on the bare machine (cached): its TechniqueResult."""
    return experiments.result_of(workload, count=count)


def mmu_updates(result) -> int:
    """``mmu_update`` hypercalls a paravirt run made."""
    return int(result.monitor_events.get("hypercall:mmu_update", 0))


def pte_updates(result) -> int:
    """Page-table entries those hypercalls carried (each validated by the monitor)."""
    return int(result.monitor_events.get("paravirt:pte_updates", 0))


def batch_sweep(workload: str, count: int | None = None,
                batches: Iterable[int] = BATCHES) -> dict[str, list[int]]:
    """``{"batch": [...], "hypercalls": [...], "pte_updates": [...]}`` for each batch size
    (sorted, without repeats)."""
    sizes = sorted(set(int(b) for b in batches))
    runs = [pv_run(workload, b, count) for b in sizes]
    return {"batch": sizes, "hypercalls": [mmu_updates(r) for r in runs],
            "pte_updates": [pte_updates(r) for r in runs]}


def hypercall_bars(result):
    """(names, counts) of a run's hypercalls, most frequent first."""
    items = sorted(((k.split(":", 1)[1], int(v)) for k, v in result.monitor_events.items()
                    if k.startswith("hypercall:")), key=lambda kv: (-kv[1], kv[0]))
    return [k for k, _ in items], [v for _, v in items]


def per_operation(workload: str) -> dict:
    """Simulated cycles of ONE operation of ``workload`` (one loop iteration), natively and
    under paravirt, without the boot and shutdown every run includes: the difference between
    runs with 2N and N iterations, divided by N (N = half the default count).  Also the
    hypercalls and reflected traps per operation."""
    from ..guest import WORKLOADS
    n = max(1, WORKLOADS[workload].default_count // 2)
    nat = (native_run(workload, 2 * n).cycles - native_run(workload, n).cycles) / n
    big, small = pv_run(workload, 8, 2 * n), pv_run(workload, 8, n)

    def delta(prefix):
        return experiments.event_total(big, prefix) - experiments.event_total(small, prefix)
    return {"workload": workload, "iterations": n, "native": nat,
            "paravirt": (big.cycles - small.cycles) / n,
            "ratio": (big.cycles - small.cycles) / n / nat if nat else float("nan"),
            "hypercalls": delta("hypercall:") / n, "reflected": delta("reflect:") / n}


__all__ = ["BATCHES", "BATCH_WORKLOADS", "pv_run", "native_run", "mmu_updates", "pte_updates",
           "batch_sweep", "hypercall_bars", "per_operation"]
