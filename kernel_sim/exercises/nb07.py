"""Exercises of notebook 07 (hardware-assisted virtualization).  Expected values come from the
simulator: every checker runs the guest OS itself, natively and under ``hw_shadow`` or
``hw_ept``, and compares.

* 07.1 -- how many IO_INSTRUCTION exits does the ``io`` workload cause under ``hw_ept``?
  (predicted from a native run: its ``io_in`` and ``io_out`` counters)
* 07.2 -- which exit reasons of ``forkwait`` under ``hw_shadow`` disappear under ``hw_ept``?
  (the exits that only a monitor without nested paging needs)
* 07.3 -- on first-generation VT-x (``cpu="first-vtx"``), is ``hw_shadow`` or
  ``binary_translation`` faster on ``forkwait``, and on ``syscall``?  (Adams & Agesen 2006)
* 07.4 -- how many exits does ``cr3_load_exiting`` add to ``ctxswitch`` under ``hw_ept``?
"""
from __future__ import annotations

from . import exercise

#: the loop counts and CPU preset the exercises use (the notebook's text names them)
IO_COUNT = 20          # 07.1
FORKWAIT_COUNT = 20    # 07.2
CTXSWITCH_COUNT = 30   # 07.4
CPU = "nehalem"        # 07.1, 07.2, 07.4
#: 07.3 runs each workload with its default loop count on this preset
FIRST_CPU = "first-vtx"
RACE_WORKLOADS = ("forkwait", "syscall")
RACERS = ("hw_shadow", "binary_translation")


def _as_int(answer):
    if isinstance(answer, bool) or not isinstance(answer, int):
        raise TypeError(f"expected a whole number, got {type(answer).__name__} {answer!r}")
    return answer


def _run(workload: str, technique: str, count=None, cpu: str = CPU, **settings):
    from ..experiments import result_of
    return result_of(workload, technique, count=count, cpu=cpu, knobs=settings)


def total_exits(result) -> int:
    """All VM exits of a hardware-assisted run (every monitor event is one exit there)."""
    from ..experiments import event_total
    return event_total(result)


# ---- 07.1 ------------------------------------------------------------------------------------
def io_exits(count: int = IO_COUNT) -> int:
    """IO_INSTRUCTION exits of the ``io`` workload under ``hw_ept``."""
    return _run("io", "hw_ept", count).monitor_events.get("IO_INSTRUCTION", 0)


@exercise("07.1", f"IO_INSTRUCTION exits of io (count={IO_COUNT})",
          hints=[f"Run build_guest('io', count={IO_COUNT}) natively and read the events "
                 "io_in and io_out.",
                 "io_exiting is a required control of hw_ept: every IN and every OUT exits, "
                 "the console's and the block device's alike."])
def _check_io(answer):
    native = _run("io", "native", IO_COUNT).events
    expected = io_exits()
    if expected != native["io_in"] + native["io_out"]:
        raise RuntimeError("IO_INSTRUCTION exits no longer equal the native IN + OUT count")
    given = _as_int(answer)
    if given != expected:
        if given in (native["io_in"], native["io_out"]):
            return False, "that counts only one direction: IN and OUT both exit"
        return False, f"{given} is not the number of IO_INSTRUCTION exits"
    return True, (f"{expected} IO_INSTRUCTION exits = {native['io_in']} IN + "
                  f"{native['io_out']} OUT executed natively: with io_exiting set, every I/O "
                  f"instruction exits (counted by running both)")


# ---- 07.2 ------------------------------------------------------------------------------------
def vanished_exits(count: int = FORKWAIT_COUNT) -> frozenset:
    """Exit reasons (as counted in ``monitor_events``) of ``forkwait`` under ``hw_shadow`` that
    ``hw_ept`` never has."""
    shadow = _run("forkwait", "hw_shadow", count).monitor_events
    ept = _run("forkwait", "hw_ept", count).monitor_events
    return frozenset(k for k, n in shadow.items() if n and not ept.get(k, 0))


def _names(answer) -> frozenset:
    if isinstance(answer, str):
        answer = [answer]
    if not isinstance(answer, (list, tuple, set, frozenset)) or not all(
            isinstance(a, str) for a in answer):
        raise TypeError(f"expected exit reason names as strings, e.g. {{'HLT'}}, got {answer!r}")
    return frozenset(a.strip().upper() for a in answer)


@exercise("07.2", f"Exits that nested paging removes (forkwait, count={FORKWAIT_COUNT})",
          hints=["Run forkwait under both hw_shadow and hw_ept and compare the keys of "
                 "monitor_events.",
                 "Write each name as the exit table does, exception exits with their vector: "
                 "'EXCEPTION_NMI:page_fault'."])
def _check_vanished(answer):
    expected = vanished_exits()
    given = _names(answer)
    want = frozenset(k.upper() for k in expected)
    if given == want:
        return True, (f"{', '.join(sorted(expected))}: without EPT the monitor must see every "
                      f"page-table switch and every page fault to keep its shadows; with EPT "
                      f"they stay inside the guest (counted by running both)")
    if "EXCEPTION_NMI" in given:
        return False, ("name the exception too, as the exit table does: "
                       "EXCEPTION_NMI:<vector name>")
    extra = given - want
    if extra:
        return False, (f"{', '.join(sorted(extra))} still occur(s) under hw_ept, or never "
                       f"occurred under hw_shadow")
    return False, f"one or more exit reasons are missing ({len(given)} of {len(want)} given)"


# ---- 07.3 ------------------------------------------------------------------------------------
def race(workload: str, cpu: str = FIRST_CPU) -> dict:
    """Simulated cycles of ``workload`` (default loop count) under each of :data:`RACERS`."""
    return {t: _run(workload, t, None, cpu=cpu).cycles for t in RACERS}


def race_winners(cpu: str = FIRST_CPU) -> dict:
    """{workload: the faster of hw_shadow and binary_translation} on ``cpu``."""
    out = {}
    for w in RACE_WORKLOADS:
        cycles = race(w, cpu)
        out[w] = min(cycles, key=cycles.get)
    return out


@exercise("07.3", "First-generation VT-x against binary translation",
          hints=["compare('forkwait', techniques=['native', 'binary_translation', "
                 "'hw_shadow'], cpu='first-vtx'), and the same for 'syscall'; fewer cycles "
                 "is faster.",
                 "Answer with a dict: {'forkwait': 'hw_shadow' or 'binary_translation', "
                 "'syscall': ...}."])
def _check_race(answer):
    if not isinstance(answer, dict) or set(answer) != set(RACE_WORKLOADS):
        raise TypeError("expected a dict with the keys 'forkwait' and 'syscall'")
    for value in answer.values():
        if value not in RACERS:
            return False, f"{value!r} is not one of {', '.join(RACERS)}"
    expected = race_winners()
    wrong = [w for w in RACE_WORKLOADS if answer[w] != expected[w]]
    if wrong:
        return False, f"not the faster technique on {' and '.join(wrong)} (first-vtx)"
    return True, ("; ".join(f"{w}: {expected[w]}" for w in RACE_WORKLOADS)
                  + " -- first-generation VT-x loses where the guest switches address spaces "
                    "and faults often, and wins where binary translation pays for every "
                    "kernel entry (measured on the simulator)")


# ---- 07.4 ------------------------------------------------------------------------------------
def cr3_exits_added(count: int = CTXSWITCH_COUNT) -> int:
    """Exits that ``cr3_load_exiting`` adds to ``ctxswitch`` under ``hw_ept``."""
    base = _run("ctxswitch", "hw_ept", count)
    more = _run("ctxswitch", "hw_ept", count, controls={"cr3_load_exiting": True})
    return total_exits(more) - total_exits(base)


@exercise("07.4", f"What cr3_load_exiting costs ctxswitch (count={CTXSWITCH_COUNT})",
          hints=["GOVERNED_EVENT names the native event behind each optional control.",
                 f"Count the guest's WRCR ptbr natively: run_technique(build_guest("
                 f"'ctxswitch', count={CTXSWITCH_COUNT}), 'native').events['ptbr_writes']."])
def _check_cr3(answer):
    expected = cr3_exits_added()
    given = _as_int(answer)
    if given != expected:
        if given == CTXSWITCH_COUNT or given == 2 * CTXSWITCH_COUNT:
            return False, ("the loop count is not the whole story: count every WRCR ptbr, "
                           "boot and process start included")
        return False, f"{given} is not the number of exits cr3_load_exiting adds"
    return True, (f"{expected} more exits, all CR_ACCESS: one for every WRCR ptbr the guest "
                  f"executes natively (counted by running with and without the control)")
