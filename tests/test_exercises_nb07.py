"""Exercises of notebook 07: each checker accepts the master's solution and rejects wrong answers.

The master's solutions are read from ``course/masters/07_hardware_assist.ipynb`` (the lines
between ``### BEGIN SOLUTION`` and ``### END SOLUTION``), so a solution that drifts from the
simulator fails here as well as when the master runs.  The expected values are also derived here
without the checkers' own functions: from native runs (the events each VMCS control governs), from the
monitor's table of required controls, and by comparing simulated cycles directly.
"""
import json

import pytest
from masters import master_path
from masters import master_solutions as shared_master_solutions

from kernel_sim import isa
from kernel_sim.exercises import nb07, verdict
from kernel_sim.guest import WORKLOADS, build_guest
from kernel_sim.monitors import run_technique
from kernel_sim.monitors.hardware_assist import REQUIRED_CONTROLS, REQUIRED_VECTORS

MASTER = master_path("07")
IDS = ["07.1", "07.2", "07.3", "07.4"]
SOLUTIONS = shared_master_solutions("07")


def _run(workload, technique, count=None, cpu="nehalem", **settings):
    return run_technique(build_guest(workload, count=count), technique, cpu=cpu, **settings)


def _task(ex_id: str) -> str:
    """The Markdown cell that states exercise ``ex_id``."""
    cells = json.loads(MASTER.read_text(encoding="utf-8"))["cells"]
    (text,) = ["".join(c["source"]) for c in cells
               if c["cell_type"] == "markdown" and f"### Exercise {ex_id} " in "".join(c["source"])]
    return text


@pytest.mark.parametrize("ex_id, wrong", [
    ("07.1", 22), ("07.1", 162), ("07.1", 0), ("07.1", "184"), ("07.1", 184.0), ("07.1", True),
    ("07.2", {"CR_ACCESS"}), ("07.2", {"EXCEPTION_NMI:page_fault"}),
    ("07.2", {"CR_ACCESS", "EXCEPTION_NMI"}),
    ("07.2", {"CR_ACCESS", "EXCEPTION_NMI:page_fault", "HLT"}),
    ("07.2", {"CR_ACCESS", "EXCEPTION_NMI:page_fault", "EPT_VIOLATION"}), ("07.2", 2),
    ("07.3", {"forkwait": "hw_shadow", "syscall": "hw_shadow"}),
    ("07.3", {"forkwait": "binary_translation", "syscall": "binary_translation"}),
    ("07.3", {"forkwait": "hw_shadow", "syscall": "binary_translation"}),
    ("07.3", {"forkwait": "binary_translation"}), ("07.3", {"forkwait": "bt", "syscall": "hw"}),
    ("07.3", ("binary_translation", "hw_shadow")),
    ("07.4", 30), ("07.4", 60), ("07.4", 0), ("07.4", "66"), ("07.4", 66.0),
])
def test_checker_rejects_wrong_answers(ex_id, wrong):
    assert not verdict(ex_id, wrong).ok


def test_07_2_accepts_any_collection_and_case():
    assert verdict("07.2", ["cr_access", "EXCEPTION_NMI:PAGE_FAULT"]).ok
    assert verdict("07.2", ("EXCEPTION_NMI:page_fault", "CR_ACCESS")).ok


@pytest.mark.parametrize("ex_id, needle", [
    ("07.1", f'build_guest("io", count={nb07.IO_COUNT})'),
    ("07.2", f'build_guest("forkwait", count={nb07.FORKWAIT_COUNT})'),
    ("07.3", f'cpu="{nb07.FIRST_CPU}"'),
    ("07.4", f'count={nb07.CTXSWITCH_COUNT})'),
])
def test_the_task_states_the_setting_the_checker_uses(ex_id, needle):
    assert needle in _task(ex_id).replace("\n", " ")


def test_07_1_every_in_and_out_of_a_native_run_exits():
    native = _run("io", "native", nb07.IO_COUNT).events
    assert native["io_in"] > 0 and native["io_out"] > 0
    assert SOLUTIONS["07.1"] == native["io_in"] + native["io_out"]
    # and the hw_ept run has exactly that many IO_INSTRUCTION exits, all from ring 0
    r = _run("io", "hw_ept", nb07.IO_COUNT)
    rings = {ring for _, name, ring, _ in r.exit_timeline if name == "IO_INSTRUCTION"}
    assert r.monitor_events["IO_INSTRUCTION"] == SOLUTIONS["07.1"] and rings == {0}


def test_07_2_follows_from_what_hw_shadow_must_intercept():
    # hw_shadow requires, beyond hw_ept: the CR3/CR0 and INVLPG exiting controls and #PF in the
    # exception bitmap.  Those exits can only appear under hw_shadow, and each appears when the
    # guest executes the event at all.
    extra_controls = set(REQUIRED_CONTROLS["hw_shadow"]) - set(REQUIRED_CONTROLS["hw_ept"])
    assert extra_controls == {"cr3_load_exiting", "cr3_store_exiting", "cr0_pg_exiting",
                              "invlpg_exiting"}
    assert REQUIRED_VECTORS == {"hw_shadow": (isa.VEC_PF,), "hw_ept": ()}
    native = _run("forkwait", "native", nb07.FORKWAIT_COUNT).events
    expected = {"EXCEPTION_NMI:page_fault"}          # shadow fills fault even without guest #PF
    if native["ptbr_writes"] + native["ptbr_reads"] + native["paging_writes"]:
        expected.add("CR_ACCESS")
    if native["invlpg"]:
        expected.add("INVLPG")
    assert set(SOLUTIONS["07.2"]) == expected
    ept = _run("forkwait", "hw_ept", nb07.FORKWAIT_COUNT).monitor_events
    assert not expected & set(ept)
    assert set(ept) <= {"IO_INSTRUCTION", "HLT", "EXTERNAL_INTERRUPT", "INTERRUPT_WINDOW",
                        "EPT_VIOLATION"}


@pytest.mark.parametrize("workload", ["forkwait", "syscall"])
def test_07_3_the_winner_by_whole_runs_and_by_iteration(workload):
    n = WORKLOADS[workload].default_count
    full = {t: _run(workload, t, None, cpu="first-vtx").cycles
            for t in ("hw_shadow", "binary_translation")}
    half = {t: _run(workload, t, n // 2, cpu="first-vtx").cycles
            for t in ("hw_shadow", "binary_translation")}
    per_iteration = {t: (full[t] - half[t]) / (n - n // 2) for t in full}
    winner = SOLUTIONS["07.3"][workload]
    loser = "hw_shadow" if winner == "binary_translation" else "binary_translation"
    assert full[winner] < full[loser]
    # not an artefact of the boot: one iteration of the loop ranks them the same way
    assert per_iteration[winner] < per_iteration[loser]


def test_07_3_matches_adams_and_agesen():
    # the shape of their result: hardware loses on process-heavy work, wins on system calls
    assert SOLUTIONS["07.3"] == {"forkwait": "binary_translation", "syscall": "hw_shadow"}


def test_07_4_is_the_native_count_of_ptbr_writes():
    native = _run("ctxswitch", "native", nb07.CTXSWITCH_COUNT).events
    assert SOLUTIONS["07.4"] == native["ptbr_writes"]
    # at least two switches per iteration (there and back), plus boot and process start
    assert native["ptbr_writes"] > 2 * nb07.CTXSWITCH_COUNT
    base = _run("ctxswitch", "hw_ept", nb07.CTXSWITCH_COUNT).monitor_events
    more = _run("ctxswitch", "hw_ept", nb07.CTXSWITCH_COUNT,
                controls={"cr3_load_exiting": True}).monitor_events
    assert more.get("CR_ACCESS", 0) - base.get("CR_ACCESS", 0) == SOLUTIONS["07.4"]
    assert {k: v for k, v in more.items() if k != "CR_ACCESS"} == base
