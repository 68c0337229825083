"""Exercises of notebook 04 (pure software emulation).  Expected values come from the simulator.

* 04.1 -- which emulator mode dispatches every guest instruction one by one?  (both modes run)
* 04.2 -- ``compute`` in translate mode, loop count 100 and then 200: how many more blocks are
  translated, and how many more block-cache hits are there?  (both counts run)
* 04.3 -- ``io``: how many device emulations does one disk read cost?  (two counts run)
* 04.4 -- which workload does translation slow down the most against native, and by how much?
  (every workload run in translate mode and natively)
"""
from __future__ import annotations

from . import exercise


def _run(workload: str, mode: str, count=None):
    from ..lessons.emulation import emulation_run
    return emulation_run(workload, mode, count)


def _as_int(answer):
    if isinstance(answer, bool) or not isinstance(answer, int):
        raise TypeError(f"expected a whole number, got {type(answer).__name__} {answer!r}")
    return answer


def one_by_one_mode() -> str:
    """The mode in which the emulator dispatched every instruction of ``syscall`` (count 20)."""
    found = [m for m in ("interpret", "translate")
             if _run("syscall", m, 20).monitor_events.get("emulation:interpreted", 0)
             == _run("syscall", m, 20).instructions]
    if len(found) != 1:
        raise RuntimeError(f"expected exactly one mode to dispatch every instruction: {found}")
    return found[0]


@exercise("04.1", "Which mode dispatches every instruction one by one?",
          hints=["Compare result.instructions with result.monitor_events['emulation:interpreted'] "
                 "in each mode.",
                 "One mode decodes each instruction every time it runs; the other decodes a "
                 "block once and keeps the result."])
def _check_mode(answer):
    if not isinstance(answer, str):
        return False, "answer with a mode name, 'interpret' or 'translate'"
    given = answer.strip().lower()
    if given not in ("interpret", "translate"):
        return False, f"{answer!r} is not a mode: the modes are 'interpret' and 'translate'"
    expected = one_by_one_mode()
    if given != expected:
        return False, (f"in {given!r} mode most instructions run from translated blocks, not "
                       f"one by one")
    return True, (f"in {expected!r} mode every guest instruction was fetched, decoded and "
                  f"dispatched (counted by running 'syscall' in both modes)")


def extra_translation_work(workload: str = "compute", low: int = 100, high: int = 200):
    """(more translations, more block-cache hits) going from ``low`` to ``high`` iterations."""
    a = _run(workload, "translate", low).monitor_events
    b = _run(workload, "translate", high).monitor_events
    return tuple(b.get(k, 0) - a.get(k, 0)
                 for k in ("emulation:translations", "emulation:block_cache_hits"))


@exercise("04.2", "What does a loop cost the translator?",
          hints=["Run the emulation explorer (or emulation_run) with compute, translate mode, "
                 "loop count 100 and then 200, and subtract the two runs' counts.",
                 "The loop's block is translated the first time only; every later iteration "
                 "enters it again."])
def _check_loop(answer):
    if isinstance(answer, (str, bytes)) or not hasattr(answer, "__len__") or len(answer) != 2:
        return False, "expected a pair (more translations, more block-cache hits), e.g. (3, 50)"
    more_tr, more_hits = (_as_int(x) for x in answer)
    want_tr, want_hits = extra_translation_work()
    if more_tr != want_tr:
        return False, (f"{more_tr} more translations is not what the emulator counted: does a "
                       f"block already in the cache need translating again?")
    if more_hits != want_hits:
        return False, f"{more_hits} more block-cache hits is not what the emulator counted"
    return True, (f"{want_tr} more translations and {want_hits} more block-cache hits: the "
                  f"loop was translated once, each extra iteration is one cache hit "
                  f"(counted by running both loop counts)")


def device_emulations_per_read() -> int:
    """Extra device emulations of one more iteration of ``io`` (one blkread system call)."""
    a = _run("io", "translate", 10).monitor_events.get("emulation:device", 0)
    b = _run("io", "translate", 11).monitor_events.get("emulation:device", 0)
    return b - a


@exercise("04.3", "Device emulations per disk read",
          hints=["Run io with two loop counts that differ by one and compare "
                 "monitor_events['emulation:device'].",
                 "Every IN or OUT to the block device is one call into a software device model; "
                 "the workload table (kernel_sim.guest.WORKLOADS['io']) says how many one "
                 "read needs."])
def _check_device(answer):
    expected = device_emulations_per_read()
    if _as_int(answer) != expected:
        return False, f"{answer} is not the number of port accesses one disk read costs"
    return True, (f"one disk read is {expected} port accesses, each handled by the emulated "
                  f"block device (counted by running io twice)")


def worst_translated_workload():
    """(workload, slowdown) with the largest translate-mode slowdown at default loop counts."""
    from ..lessons.emulation import slowdown_rows
    worst = max(slowdown_rows(), key=lambda r: r["translate_x"])
    return worst["workload"], worst["translate_x"]


@exercise("04.4", "Which workload does translation help least?",
          hints=["The slowdown figure's translate bars are what you need; slowdown_rows() has "
                 "the numbers.",
                 "Round the slowdown to one decimal, e.g. ('compute', 8.1)."])
def _check_worst(answer):
    if isinstance(answer, (str, bytes)) or not hasattr(answer, "__len__") or len(answer) != 2:
        return False, "expected a pair (workload name, slowdown), e.g. ('compute', 8.1)"
    name, factor = answer
    if isinstance(factor, bool) or not isinstance(factor, (int, float)):
        return False, f"the slowdown must be a number, got {factor!r}"
    want_name, want_factor = worst_translated_workload()
    if name != want_name:
        return False, f"{name!r} is not the workload with the largest translate-mode slowdown"
    if abs(factor - want_factor) > 0.051:
        return False, (f"{name!r} is right, but {factor} is not its slowdown to one decimal "
                       f"(simulated cycles under emulation / native cycles)")
    return True, (f"{want_name} runs {want_factor:.1f}x slower than native in translate mode, "
                  f"the most of all workloads (computed by running every workload)")
