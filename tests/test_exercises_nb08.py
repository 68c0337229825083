"""Exercises of notebook 08: each checker accepts the master's solution and rejects wrong answers.

The master's solutions are read from ``course/masters/08_memory_virtualization.ipynb``, so a
solution that drifts from the simulator fails here as well as when the master runs.  Expected
values are derived here independently of the checkers' code: the reference count by the
structure of a two-dimensional walk (and by the references the MMU records), the modes and the
misses by direct runs of the guest, and the touched pages by walking the monitor's nested table
in host memory with plain Python.
"""
import pytest
from masters import master_solutions

from kernel_sim import mmu
from kernel_sim.exercises import verdict
from kernel_sim.guest import build_guest
from kernel_sim.monitors import run_technique
from kernel_sim.monitors.hardware_assist import HwEpt
from kernel_sim.lessons.pagewalk import pagewalk

IDS = ["08.1", "08.2", "08.3", "08.4"]
SOLUTIONS = master_solutions("08")


@pytest.mark.parametrize("ex_id, wrong", [
    ("08.1", 12), ("08.1", 20), ("08.1", 3), ("08.1", 24), ("08.1", "19"), ("08.1", 19.0),
    ("08.1", True),
    ("08.2", "hw_ept"), ("08.2", "ept"), ("08.2", "native"), ("08.2", 1),
    ("08.3", 0), ("08.3", -487), ("08.3", 349), ("08.3", 836), ("08.3", "487"),
    ("08.4", 0), ("08.4", 11), ("08.4", 13), ("08.4", "12"), ("08.4", 12.0),
])
def test_checker_rejects_wrong_answers(ex_id, wrong):
    assert not verdict(ex_id, wrong).ok


def test_08_1_counted_from_the_structure_of_the_walk():
    n, m = 3, 4
    # each guest level: m nested reads + its own read; then one nested walk for the data
    assert SOLUTIONS["08.1"] == n * (m + 1) + m
    walk = pagewalk(n, m)
    dims = [s["dimension"] for s in walk.steps]
    assert dims.count("guest") == n and dims.count("nested") == (n + 1) * m
    assert walk.references == len(walk.steps) == SOLUTIONS["08.1"]


def test_08_1_the_checker_also_accepts_alternate_spellings_of_the_modes():
    assert verdict("08.2", "shadow").ok and verdict("08.2", " HW_SHADOW ").ok


def test_08_2_the_cheaper_mode_by_direct_runs():
    image = build_guest("ctxswitch", 100)
    cycles = {m: run_technique(image, m, cpu="modern", tlb_size=64).cycles
              for m in ("hw_shadow", "hw_ept")}
    assert SOLUTIONS["08.2"] == min(cycles, key=cycles.get)


def test_08_3_vpid_saves_misses_by_direct_runs():
    image = build_guest("pgfault", 100)
    runs = {v: run_technique(image, "hw_ept", cpu="nehalem", vpid=v) for v in (True, False)}
    saved = runs[False].events["tlb_misses"] - runs[True].events["tlb_misses"]
    assert saved > 0 and SOLUTIONS["08.3"] == saved
    assert any("no VPID" in note for note in runs[False].notes)
    assert not any("no VPID" in note for note in runs[True].notes)


def _leaf_pages(mem, table: int, level: int) -> int:
    """Present leaf entries under a nested table, read word by word from host memory."""
    count = 0
    for i in range(1024):
        entry = int(mem[(table >> 2) + i])
        if entry & mmu.EPT_RWX:
            count += 1 if level == 1 else _leaf_pages(mem, entry & 0xFFFFF000, level - 1)
    return count


def test_08_4_violations_equal_the_pages_the_nested_table_maps():
    monitor = HwEpt(build_guest("compute", 2000), cpu="nehalem")
    result = monitor.run()
    assert result.stop == "halt"
    levels = monitor.vmcs.read("EPT_LEVELS")
    mapped = _leaf_pages(monitor.nested.mem, monitor.vmcs.read("EPT_POINTER") & 0xFFFFF000,
                         levels)
    assert result.monitor_events["EPT_VIOLATION"] == mapped == SOLUTIONS["08.4"]
    # one violation per page: no page is mapped twice in the timeline of exits
    assert sum(1 for e in result.exit_timeline if e[1] == "EPT_VIOLATION") == mapped
