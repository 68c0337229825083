"""The numbers of notebook 04: pure software emulation.

The emulation technique (:mod:`kernel_sim.monitors.emulation`) runs every guest instruction in
software, either Bochs-style (``mode="interpret"``) or QEMU-style (``mode="translate"``:
translate a block once, run it from a cache many times).  The runs come from
:mod:`kernel_sim.experiments` (cached); the figures that show them live in
:mod:`kernel_sim.viz.emulation`:

* :func:`emulation_run` -- one workload under one mode; :func:`native_run` its baseline;
* :func:`slowdown_rows` -- simulated cycles relative to native for every workload in both modes.
"""
from __future__ import annotations

from collections.abc import Sequence

from .. import experiments
from ..experiments import slowdown

#: The two modes of the emulator, with the label the course shows for each.
MODE_LABELS = {"interpret": "interpret (Bochs-style)", "translate": "translate (QEMU-style)"}

#: Sizes (micro-op rows) the translation cache may have in the explorer; the last is the
#: emulator's default.  128 rows hold two of the longest blocks: the guest's code no longer
#: fits and the cache is flushed again and again (thrashing).  (The emulator accepts 64, one
#: block; the explorer does not offer it because each flush then costs real time too.)
CACHE_SIZES = (128, 256, 1024, 1 << 16)


def _check_mode(mode: str) -> str:
    if mode not in MODE_LABELS:
        raise ValueError(f"mode must be 'interpret' or 'translate', got {mode!r}")
    return mode


def emulation_run(workload: str, mode: str, count: int | None = None,
                  cache_size: int = 1 << 16):
    """Run ``workload`` (a key of :data:`kernel_sim.guest.WORKLOADS`) under pure emulation.

    ``count`` is the loop count (default: the workload's own), ``cache_size`` the translation
    cache in micro-op rows.  Cached: the same arguments return the same result object.
    """
    return experiments.result_of(workload, "emulation", count=count,
                                 knobs={"mode": _check_mode(mode), "cache_size": cache_size})


def native_run(workload: str, count: int | None = None):
    """The same workload on the bare machine: the baseline every slowdown is measured against."""
    return experiments.result_of(workload, count=count)


def slowdown_rows(workloads: Sequence[str] | None = None) -> list[dict[str, object]]:
    """One row per workload (default count): native cycles, and cycles and slowdown per mode."""
    from ..guest import WORKLOADS
    rows = []
    for name in (workloads or list(WORKLOADS)):
        native = native_run(name)
        row = {"workload": name, "native": native.cycles}
        for mode in MODE_LABELS:
            r = emulation_run(name, mode)
            row[mode] = r.cycles
            row[f"{mode}_x"] = slowdown(r, native)
        rows.append(row)
    return rows


__all__ = ["MODE_LABELS", "CACHE_SIZES", "emulation_run", "native_run", "slowdown",
           "slowdown_rows"]
