"""Popek & Goldberg's equivalence property, workload by workload, for every technique.

For every guest-OS workload, every technique must leave the same *user-visible* state as the
bare machine (same console, same memory and registers as ring 3 sees them), and every technique
but ``paravirt`` -- which runs a different kernel binary, built with PARAVIRT=1 -- the same
*guest* state (registers, control state, ticks, all of guest-physical memory, disk, console).
``trap_emulate`` runs on the strict ISA here: on the non-strict one it is not equivalent, which
tests/test_trap_emulate.py and tests/test_popek_goldberg.py show on purpose.
"""
from functools import lru_cache

import pytest

from kernel_sim.guest import WORKLOADS, build_guest
from kernel_sim.monitors import available_techniques, run_technique

TECHNIQUES = [t for t in available_techniques() if t != "native"]
#: small loop counts keep the whole matrix fast; each still runs every kernel path of the
#: workload several times (forkwait is the heaviest: a fork copies an address space)
COUNTS = {name: max(2, min(25, w.default_count // 20)) for name, w in WORKLOADS.items()}


@lru_cache(maxsize=None)
def run(workload: str, technique: str):
    image = build_guest(workload, count=COUNTS[workload], paravirt=(technique == "paravirt"))
    return run_technique(image, technique, strict=True)


@pytest.mark.parametrize("technique", TECHNIQUES)
@pytest.mark.parametrize("workload", sorted(WORKLOADS))
def test_technique_leaves_the_same_state_as_native(workload, technique):
    native, virt = run(workload, "native"), run(workload, technique)
    assert native.stop == "halt", native.stop_description
    assert virt.stop == "halt", f"{technique}: {virt.stop_description}; notes {virt.notes}"
    assert virt.console == native.console
    assert virt.user_digest == native.user_digest
    if technique != "paravirt":
        assert virt.state_digest == native.state_digest
        assert virt.instructions == native.instructions      # same guest instructions


@pytest.mark.parametrize("technique", TECHNIQUES)
def test_every_technique_steps_in_somewhere(technique):
    """A technique that never counted an event would not be virtualizing anything."""
    result = run("syscall", technique)
    assert sum(result.monitor_events.values()) > 0
    assert result.cycles > run("syscall", "native").cycles
