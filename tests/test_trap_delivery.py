"""Trap delivery written once (monitors/vcpu.TrapDelivery): the rules of kernel_sim.state, on a
virtual CPU kept in software.

The equivalence tests show that whole guests run the same under every technique; these pin the
delivery rules themselves on a bare :class:`VirtualCPU` (paging off, so guest-virtual is
guest-physical): the frame, the stack switch, the ring and IF, the counts, the storm limit and
a frame that cannot be pushed.
"""
import numpy as np
import pytest

from kernel_sim import isa
from kernel_sim.monitors.vcpu import MAX_DELIVERIES, Stop, TrapDelivery, VirtualCPU
from kernel_sim.state import (C_CPL, C_IF, C_KSP, C_PC, C_TVB, EV_TRAPS, EV_VECTOR_BASE,
                              STOP_TRIPLE_FAULT, STOP_UNHANDLED_TRAP)

BASE, RAM = 0x4000, 64 << 10          # the guest's RAM sits at host 0x4000
TVB, HANDLER, USER_SP, KSP = 0x1000, 0x3000, 0x8000, 0x9000


def vcpu() -> VirtualCPU:
    mem = np.zeros((BASE + RAM + 0x1000) // 4, dtype=np.uint32)
    v = VirtualCPU(np.zeros(isa.NUM_REGS, dtype=np.int64), mem, BASE, RAM,
                   np.zeros(0, dtype=np.uint32))
    v.reset(entry=0x100)
    v.ctrl[C_TVB] = TVB
    v.ram[(TVB >> 2) + isa.VEC_SYSCALL] = HANDLER
    v.ctrl[C_KSP] = KSP
    return v


def frame_at(v: VirtualCPU, sp: int) -> list:
    """The five words at ``sp``: error code, return pc, old ring, old flags, old sp."""
    return [int(w) for w in v.ram[sp >> 2:(sp >> 2) + 5]]


def test_a_trap_from_user_mode_switches_to_the_kernel_stack_and_pushes_the_frame():
    v = vcpu()
    v.ctrl[C_CPL], v.ctrl[C_IF], v.regs[isa.SP] = 3, 1, USER_SP
    v.deliver(isa.VEC_SYSCALL, 7, 0x104)
    assert int(v.regs[isa.SP]) == KSP - 20
    assert frame_at(v, KSP - 20) == [7, 0x104, 3, isa.FLAG_IF, USER_SP]
    assert (int(v.ctrl[C_CPL]), int(v.ctrl[C_IF]), int(v.ctrl[C_PC])) == (0, 0, HANDLER)
    assert v.counters[EV_VECTOR_BASE + isa.VEC_SYSCALL] == 1 and v.counters[EV_TRAPS] == 1
    # the frame is in the guest's slice of host memory, not at host address KSP
    assert v.mem[(BASE + KSP - 4) >> 2] == USER_SP and v.mem[(KSP - 4) >> 2] == 0


def test_a_trap_in_ring_0_stays_on_the_current_stack():
    v = vcpu()
    v.ctrl[C_CPL], v.ctrl[C_IF], v.regs[isa.SP] = 0, 0, USER_SP
    v.deliver(isa.VEC_SYSCALL, 0, 0x200)
    assert int(v.regs[isa.SP]) == USER_SP - 20
    assert frame_at(v, USER_SP - 20) == [0, 0x200, 0, 0, USER_SP]


def test_a_vector_without_a_handler_stops_the_guest_and_is_counted():
    v = vcpu()
    with pytest.raises(Stop) as stop:
        v.deliver(isa.VEC_GP, 0, 0x100)
    assert stop.value.reason == STOP_UNHANDLED_TRAP and stop.value.vector == isa.VEC_GP
    assert v.counters[EV_VECTOR_BASE + isa.VEC_GP] == 1        # counted, as the CPU counts it


def test_more_than_the_storm_limit_in_a_row_is_a_triple_fault_and_retiring_resets_it():
    v = vcpu()
    v.regs[isa.SP] = USER_SP
    for _ in range(MAX_DELIVERIES):
        v.deliver(isa.VEC_SYSCALL, 0, HANDLER)
    v.retire(isa.OP_ADD, HANDLER + 4)                 # one retired instruction: a new row
    for _ in range(MAX_DELIVERIES):
        v.deliver(isa.VEC_SYSCALL, 0, HANDLER)
    with pytest.raises(Stop) as stop:
        v.deliver(isa.VEC_SYSCALL, 0, HANDLER)
    assert stop.value.reason == STOP_TRIPLE_FAULT


def test_a_frame_that_cannot_be_pushed_is_a_triple_fault_that_writes_nothing():
    v = vcpu()
    v.ctrl[C_CPL], v.regs[isa.SP] = 3, USER_SP
    v.ctrl[C_KSP] = 8                                 # slots 4 and 0 fit; the next ones do not
    before = v.ram.copy()
    with pytest.raises(Stop) as stop:
        v.deliver(isa.VEC_SYSCALL, 0, 0x104)
    assert stop.value.reason == STOP_TRIPLE_FAULT
    assert np.array_equal(v.ram, before), "a failed delivery must not leave half a frame"


def test_paravirt_reflects_with_the_same_rules():
    """The paravirt monitor's reflection into its ring-1 kernel is a TrapDelivery too (one
    implementation of the rules), differing only in what it declares: the handler's ring."""
    from kernel_sim.monitors import paravirt
    reflect = [c for c in vars(paravirt).values() if isinstance(c, type)
               and issubclass(c, TrapDelivery) and c is not TrapDelivery]
    assert len(reflect) == 1 and reflect[0].handler_ring == 1
    assert reflect[0].deliver is TrapDelivery.deliver
