"""A monitor given a host machine and an allocation in it (monitors/base.Allocation).

A platform that runs several domains on one host places each guest and its monitor's region
in host memory itself.  Placement must be invisible to the guest -- the same run, to the same
digests, as in the monitor's own host -- and the monitor must stay inside what it was given
(resource control: every other word of the host, and the host's disk, keeps its pattern).
"""
import numpy as np
import pytest

from kernel_sim.guest import build_guest
from kernel_sim.machine import Machine
from kernel_sim.monitors import MonitorError, monitor_class
from kernel_sim.monitors.base import MONITOR_BYTES, Allocation

PATTERN = 0xA5C3F00D
HOST_BYTES = 16 << 20
HOSTED = ("trap_emulate", "binary_translation", "paravirt", "hw_shadow", "hw_ept")
BUDGET = 3_000_000


def guest(technique: str, workload: str = "forkwait"):
    return build_guest(workload, count=3, **monitor_class(technique).guest_options())


def painted_host(disk_sectors: int = 4) -> Machine:
    host = Machine(memory_size=HOST_BYTES, paging_levels=2, tlb_size=64,
                   disk_sectors=disk_sectors)
    host.mem[:] = PATTERN                          # the memory and the host's own disk
    return host


@pytest.mark.parametrize("technique", HOSTED)
def test_a_guest_placed_elsewhere_in_a_bigger_host_runs_the_same_and_stays_inside(technique):
    cls = monitor_class(technique)
    image = guest(technique)
    alone = cls(image).run(BUDGET)
    assert alone.stop == "halt", alone.stop_description

    host = painted_host()
    # the guest *below* its monitor's region, neither at the default addresses
    a = Allocation(monitor_base=9 << 20, guest_base=3 << 20 | 0x5000,
                   guest_size=image.ram_size)
    mon = cls(image, host=host, allocation=a)
    placed = mon.run(BUDGET)

    assert placed.user_digest == alone.user_digest
    if cls.needs.same_kernel_as_native:
        assert placed.state_digest == alone.state_digest
    else:   # paravirt: the guest's page tables hold machine frames, which moved with it
        assert mon.moff == a.guest_base
    assert (placed.stop, placed.console, placed.events, placed.traps) == \
        (alone.stop, alone.console, alone.events, alone.traps)
    assert placed.monitor_events == alone.monitor_events
    # it really ran there: the guest's RAM is host memory at guest_base
    view = mon.view().guest_memory()
    assert np.shares_memory(view, host.mem) and \
        view.__array_interface__["data"][0] - host.mem.__array_interface__["data"][0] == \
        a.guest_base
    # ...and touched nothing outside the allocation, nor the host's disk
    inside = np.zeros(len(host.mem), dtype=bool)
    inside[a.guest_base >> 2:a.guest_top >> 2] = True
    inside[a.monitor_base >> 2:a.monitor_top >> 2] = True
    outside = host.mem[~inside]
    assert np.all(outside == PATTERN), \
        f"{np.count_nonzero(outside != PATTERN)} host words outside the allocation changed"
    assert np.any(host.mem[a.monitor_base >> 2:a.monitor_top >> 2] != 0), \
        "the monitor's region is unused: the monitor kept its state somewhere else"


def test_two_guests_share_one_host_without_touching_each_other():
    """Two trap_emulate domains placed side by side in one host, run one after the other: the
    first one's memory is unchanged by the second's run (the platform's basic promise)."""
    cls = monitor_class("trap_emulate")
    image = guest("trap_emulate", "syscall")
    host = painted_host()
    ram = image.ram_size
    first = Allocation(monitor_base=0, guest_base=MONITOR_BYTES, guest_size=ram)
    second = Allocation(monitor_base=MONITOR_BYTES + ram, guest_base=2 * MONITOR_BYTES + ram,
                        guest_size=ram)
    r1 = cls(image, host=host, allocation=first).run(BUDGET)
    snapshot = host.mem[:first.guest_top >> 2].copy()
    r2 = cls(image, host=host, allocation=second).run(BUDGET)
    assert r1.state_digest == r2.state_digest == cls(image).run(BUDGET).state_digest
    assert np.array_equal(host.mem[:first.guest_top >> 2], snapshot)


@pytest.mark.parametrize("allocation,match", [
    (Allocation(monitor_base=0, guest_base=1 << 20, guest_size=1 << 20), "overlaps"),
    (Allocation(monitor_base=0, guest_base=15 << 20, guest_size=2 << 20), "beyond the host"),
    (Allocation(monitor_base=0, guest_base=0x200800, guest_size=1 << 20), "whole pages"),
    (Allocation(monitor_base=0, guest_base=4 << 20, guest_size=2 << 20), "image's RAM"),
])
def test_an_allocation_that_does_not_fit_is_refused(allocation, match):
    image = guest("trap_emulate", "syscall")
    mon = monitor_class("trap_emulate")(image, host=painted_host(), allocation=allocation)
    with pytest.raises(MonitorError, match=match):
        mon.run(BUDGET)


def test_a_host_must_come_with_an_allocation_and_match_the_monitors_machine():
    image = guest("trap_emulate", "syscall")
    cls = monitor_class("trap_emulate")
    with pytest.raises(MonitorError, match="both"):
        cls(image, host=painted_host())
    a = Allocation(monitor_base=0, guest_base=MONITOR_BYTES, guest_size=image.ram_size)
    with pytest.raises(MonitorError, match="both"):
        cls(image, allocation=a)
    three_level = Machine(memory_size=HOST_BYTES, paging_levels=3, tlb_size=64)
    with pytest.raises(MonitorError, match="levels"):
        cls(image, host=three_level, allocation=a).run(BUDGET)


@pytest.mark.parametrize("technique", ("native", "emulation"))
def test_techniques_without_a_host_refuse_one(technique):
    image = guest(technique, "syscall")
    a = Allocation(monitor_base=0, guest_base=MONITOR_BYTES, guest_size=image.ram_size)
    assert monitor_class(technique).places_guest_in_host is False
    with pytest.raises(MonitorError, match="cannot be given a host"):
        monitor_class(technique)(image, host=painted_host(), allocation=a)
