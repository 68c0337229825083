"""Exercises of notebook 04: each checker accepts the master's solution and rejects wrong answers.

The master's solutions are read from ``course/masters/04_software_emulation.ipynb`` (the lines
between ``### BEGIN SOLUTION`` and ``### END SOLUTION``), so a solution that drifts from the
simulator fails here as well as when the master runs.  The expected values are also derived here
by reasoning about the guest, independently of the functions the checkers use.
"""

import pytest
from masters import master_path
from masters import master_solutions as shared_master_solutions

from kernel_sim.exercises import verdict
from kernel_sim.guest import WORKLOADS, build_guest
from kernel_sim.monitors import run_technique

MASTER = master_path("04")


def master_solutions() -> dict:
    """{exercise id: the answer the master's solution assigns}."""
    return shared_master_solutions("04")


SOLUTIONS = master_solutions()


@pytest.mark.parametrize("ex_id, wrong", [
    ("04.1", "translate"), ("04.1", "bochs"), ("04.1", 1),
    ("04.2", (1, 100)), ("04.2", (0, 99)), ("04.2", (0, 200)), ("04.2", 100), ("04.2", "0, 100"),
    ("04.3", 3), ("04.3", 5), ("04.3", "4"), ("04.3", True),
    ("04.4", ("compute", 14.0)), ("04.4", ("callret", 13.0)), ("04.4", ("callret", "14")),
    ("04.4", "callret"),
])
def test_checker_rejects_wrong_answers(ex_id, wrong):
    assert not verdict(ex_id, wrong).ok


def test_04_1_interpretation_dispatches_every_instruction():
    image = build_guest("syscall", count=20)
    for mode, every in (("interpret", True), ("translate", False)):
        r = run_technique(image, "emulation", mode=mode)
        assert (r.monitor_events["emulation:interpreted"] == r.instructions) is every
    assert verdict("04.1", " Interpret ").ok      # case and spaces do not matter


def test_04_2_a_loop_is_translated_once_and_each_iteration_hits_the_cache():
    # 100 more iterations of a 4-instruction loop that is one block: no new translation, and one
    # more block entry (a cache hit) per iteration
    assert verdict("04.2", (0, 100)).ok
    assert verdict("04.2", [0, 100]).ok


def test_04_3_a_disk_read_is_three_outs_and_one_in():
    assert "3 OUTs and 1 IN" in WORKLOADS["io"].operation
    assert verdict("04.3", 4).ok


def test_04_4_is_the_largest_translate_mode_slowdown_computed_directly():
    ratios = {}
    for name in WORKLOADS:
        image = build_guest(name)
        ratios[name] = (run_technique(image, "emulation", mode="translate").cycles
                        / run_technique(image, "native").cycles)
    worst = max(ratios, key=ratios.get)
    assert verdict("04.4", (worst, round(ratios[worst], 1))).ok
    assert verdict("04.4", (worst, round(ratios[worst], 2))).ok
    assert not verdict("04.4", (worst, round(ratios[worst], 1) + 0.2)).ok
