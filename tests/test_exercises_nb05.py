"""Exercises of notebook 05: each checker accepts the master's solution and rejects wrong answers.

The master's solutions are read from ``course/masters/05_full_virtualization.ipynb`` (the lines
between ``### BEGIN SOLUTION`` and ``### END SOLUTION``), so a solution that drifts from the
simulator fails here as well as when the master runs.  The expected values are also derived
here in another way: from what the guest does on the *bare machine* (which instructions it
executes, which traps it takes), the count every monitor event must follow from.
"""

import pytest
from masters import master_path
from masters import master_solutions as shared_master_solutions

from kernel_sim import isa
from kernel_sim.exercises import verdict
from kernel_sim.guest import build_guest
from kernel_sim.monitors import run_technique

MASTER = master_path("05")
IDS = ["05.1", "05.2", "05.3", "05.4"]


def master_solutions() -> dict:
    """{exercise id: the answer the master's solution assigns}."""
    return shared_master_solutions("05")


SOLUTIONS = master_solutions()


def native_per_iteration(workload: str, lo: int = 50, hi: int = 100):
    """(opcodes, traps) the bare machine executes per iteration of ``workload``'s loop."""
    a = run_technique(build_guest(workload, count=lo), "native")
    b = run_technique(build_guest(workload, count=hi), "native")
    ops = {k: (b.opcodes.get(k, 0) - a.opcodes.get(k, 0)) / (hi - lo)
           for k in set(a.opcodes) | set(b.opcodes)}
    traps = {k: (b.traps.get(k, 0) - a.traps.get(k, 0)) / (hi - lo)
             for k in set(a.traps) | set(b.traps)}
    return ops, traps


@pytest.mark.parametrize("ex_id, wrong", [
    ("05.1", 6), ("05.1", 8), ("05.1", 1), ("05.1", "7"), ("05.1", 7.5), ("05.1", True),
    ("05.2", (1, 2)), ("05.2", (2, 2)), ("05.2", (3, 1)), ("05.2", 2), ("05.2", "2, 1"),
    ("05.2", (2, 1, 0)),
    ("05.3", (0, 0)), ("05.3", (2, 5)), ("05.3", (10, 2)), ("05.3", (1, 10)), ("05.3", 12),
    ("05.4", 0), ("05.4", 1), ("05.4", 4), ("05.4", "2"),
])
def test_checker_rejects_wrong_answers(ex_id, wrong):
    assert not verdict(ex_id, wrong).ok


def test_05_1_every_privileged_or_sensitive_instruction_and_the_syscall_trap_enter():
    # On the bare machine the kernel executes these instructions in ring 0 for each getpid; on
    # the strict ISA each one traps in ring 1, and the system call itself traps too.
    ops, traps = native_per_iteration("syscall")
    trapping = {i.mnemonic for i in isa.INSTRUCTIONS if i.cls in (isa.PRIVILEGED, isa.SENSITIVE)}
    expected = round(sum(v for k, v in ops.items() if k in trapping) + traps["syscall"])
    assert expected == 7
    assert verdict("05.1", expected).ok
    # leaving out the reflected system call is the mistake the checker names
    assert "system call itself" in verdict("05.1", expected - 1).message


def test_05_2_true_faults_are_the_guests_own_and_hidden_ones_are_extra():
    _, traps = native_per_iteration("pgfault")
    page_faults = round(traps["page_fault"])
    assert page_faults == 1, traps          # the demand fault the guest kernel handles
    # the hidden ones: the retried load and the first store (dirty bit) each need an entry
    assert verdict("05.2", (2, page_faults)).ok
    assert "wrong way round" in verdict("05.2", (page_faults, 2)).message


def test_05_3_one_cached_shadow_means_a_new_root_at_every_switch():
    from kernel_sim.viz.translation import per_operation
    switches = per_operation("ctxswitch")["emulate:wrcr"]      # PTBR loads per iteration
    assert switches == 2
    one = per_operation("ctxswitch", max_roots=1)
    assert one["shadow:root_new"] == switches
    assert "shadow:root_new" not in per_operation("ctxswitch", max_roots=2)   # both fit
    assert verdict("05.3", (round(switches), round(one["shadow:hidden_fault"]))).ok


def test_05_4_one_callout_per_call_and_per_return():
    ops, _ = native_per_iteration("callret")
    calls = round(ops.get("CALL", 0) + ops.get("CALLR", 0))
    returns = round(ops.get("RET", 0))
    assert (calls, returns) == (1, 1)
    assert verdict("05.4", calls + returns).ok
