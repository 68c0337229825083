"""Exercises of notebook 03: each checker accepts the master's solution and rejects wrong answers.

The master's solutions are read from ``course/masters/03_popek_goldberg.ipynb`` (the lines
between ``### BEGIN SOLUTION`` and ``### END SOLUTION``), so a solution that drifts from the
simulator fails here as well as when the master runs.  The expected values are also derived
here a second way -- from the machine rather than from the functions the checkers call.
"""

import pytest
from masters import master_path
from masters import master_solutions as shared_master_solutions

from kernel_sim import isa
from kernel_sim.exercises import verdict
from kernel_sim.guest import build_guest
from kernel_sim.monitors import run_technique
from kernel_sim.lessons.popek_goldberg import SMALL_KERNELS, small_kernel_image
from kernel_sim.lessons.rings import probe

MASTER = master_path("03")
IDS = ["03.1", "03.2", "03.3", "03.4"]


def master_solutions() -> dict:
    """{exercise id: the answer the master's solution assigns}."""
    return shared_master_solutions("03")


SOLUTIONS = master_solutions()


ALL_FOUR = {"cli/sti": True, "pushf/cli/popf": False, "pushf/pop": True, "getcpl": False}


@pytest.mark.parametrize("ex_id, wrong", [
    ("03.1", {"PUSHF", "POPF", "GETCPL"}),
    ("03.1", {"PUSHF", "POPF", "GETCPL", "RDTVB", "SYSCALL"}),
    ("03.1", {"PUSHF", "POPF", "GETCPL", "SIDT"}), ("03.1", "PUSHF POPF GETCPL RDTVB"),
    ("03.2", {"ADD": "none", "CLI": "control", "POPF": "behaviour", "PUSHF": "behaviour",
              "GETCPL": "behaviour", "JMP": "none"}),
    ("03.2", {"ADD": "none", "CLI": "control"}),
    ("03.2", {"ADD": "none", "CLI": "control", "POPF": "control", "PUSHF": "sensitive",
              "GETCPL": "behaviour", "JMP": "none"}),
    ("03.2", ["none", "control"]),
    ("03.3", {**ALL_FOUR, "pushf/pop": False}), ("03.3", {**ALL_FOUR, "getcpl": True}),
    ("03.3", {**ALL_FOUR, "cli/sti": "yes"}), ("03.3", {"cli/sti": True}),
    ("03.3", {**ALL_FOUR, "rdtvb": False}),
    ("03.4", 1), ("03.4", 3), ("03.4", "2"), ("03.4", True),
])
def test_checker_rejects_wrong_answers(ex_id, wrong):
    assert not verdict(ex_id, wrong).ok


def test_case_and_spacing_do_not_matter():
    assert verdict("03.1", ["pushf", " popf", "GetCpl", "RDTVB "]).ok
    assert verdict("03.2", {k.lower(): v.upper() if k == "ADD" else v
                            for k, v in SOLUTIONS["03.2"].items()}).ok


def test_03_1_the_four_are_exactly_what_does_not_trap_in_ring_3():
    # the ring-probe program of notebook 02 runs the four in ring 3: no trap on the default ISA,
    # one #GP each on the strict one
    assert probe("sensitive but unprivileged", 3).traps["#GP"] == 0
    assert probe("sensitive but unprivileged", 3, strict=True).traps["#GP"] == \
        len(SOLUTIONS["03.1"])
    assert all(isa.BY_MNEMONIC[m].sensitive and not isa.BY_MNEMONIC[m].privileged
               for m in SOLUTIONS["03.1"])


def test_03_3_the_predictions_are_what_the_digests_say():
    for name in SMALL_KERNELS:
        img = small_kernel_image(name)
        native = run_technique(img, "native", count=100_000)
        loose = run_technique(img, "trap_emulate", count=100_000)
        assert (loose.state_digest == native.state_digest) is SOLUTIONS["03.3"][name], name
    img = small_kernel_image("getcpl")
    assert run_technique(img, "trap_emulate").registers[8] == 1
    assert run_technique(img, "native").registers[8] == 0


def test_03_4_each_popf_the_guest_executes_is_one_exit_on_the_strict_isa():
    # natively, count the POPFs one more blkread executes; on the strict ISA each one traps
    popfs = [run_technique(build_guest("io", count=c), "native").opcodes["POPF"] for c in (4, 9)]
    assert (popfs[1] - popfs[0]) / 5 == SOLUTIONS["03.4"]
