"""hw_shadow and hw_ept: equivalence on generated kernels, ring 0 of non-root mode, the VMCS.

* **Equivalence.**  Hundreds of generated guest kernels (``guest_programs.py``) run natively and
  under both memory modes, each with randomly chosen optional controls, extra exception-bitmap
  vectors, VPID on or off and nested-table depth: the whole guest-visible state must be
  identical (optional controls only add exits), and the batch must have produced every exit
  reason the generator can provoke.
* **Non-root ring 0.**  The guest kernel really runs in ring 0 of VMX non-root operation: exits
  taken from kernel code record guest ring 0 while the CPU was in non-root mode, and GETCPL
  executed natively in the kernel returns 0 without any exit.
* **The VMCS** is memory: VM entry loads the guest state from it and refuses inconsistent
  controls, VM exit writes the guest state and the exit information back.
* **VPID.**  Without one every transition flushes the TLB; with one the guest's entries survive
  the monitor's exits.
"""
from __future__ import annotations

import os
from collections import Counter

import numpy as np
import pytest
from containment import image, same
from guest_programs import guest_programs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernel_sim import isa
from kernel_sim.asm import assemble
from kernel_sim.guest import build_guest
from kernel_sim.machine import Machine
from kernel_sim.monitors import run_technique
from kernel_sim.monitors.hardware_assist import OPTIONAL_CONTROLS, HwEpt, HwShadow
from kernel_sim.state import (
    C_CPL,
    C_EXIT_QUAL,
    C_EXIT_REASON,
    C_PC,
    C_VMX,
    CTL_ENABLE_EPT,
    CTL_ENABLE_VPID,
    CTL_EXTINT_EXITING,
    CTL_HLT_EXITING,
    EV_TLB_HIT,
    EV_TLB_MISS,
    EXIT_HLT,
    STOP_VM_EXIT,
)
from kernel_sim.vmx import Vmcs, VmEntryError, run_guest, vm_entry

EXAMPLES = int(os.environ.get("KERNEL_SIM_HW_EXAMPLES", "300"))


@st.composite
def hw_settings(draw, mode: str):
    """Random settings a monitor of ``mode`` accepts: they must not change what the guest sees."""
    out = {"vpid": draw(st.booleans())}
    controls = {name: draw(st.booleans()) for name in OPTIONAL_CONTROLS[mode]}
    if controls:
        out["controls"] = controls
    out["exception_bitmap"] = tuple(draw(st.sets(st.sampled_from(
        (isa.VEC_DE, isa.VEC_UD, isa.VEC_GP, isa.VEC_PF)))))
    if mode == "hw_ept":
        out["ept_levels"] = draw(st.integers(1, 4))
    out["time_slice"] = draw(st.sampled_from((97, 1000, 50_000)))
    return out


# ==== equivalence ===============================================================================
def test_generated_kernels_leave_exactly_the_native_state_in_both_memory_modes():
    seen: Counter = Counter()
    failures = []

    @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def check(data):
        strict = data.draw(st.booleans())
        program = data.draw(guest_programs(strict=strict))
        img = program.image()
        native = run_technique(img, "native", count=program.budget, strict=strict)
        for mode in ("hw_shadow", "hw_ept"):
            knobs = data.draw(hw_settings(mode))
            hw = run_technique(img, mode, count=program.budget, strict=strict, cpu="modern",
                               **knobs)
            seen.update(hw.monitor_events)
            if not same(native, hw):
                failures.append((mode, knobs, program.source))

    check()
    assert not failures, (f"{len(failures)} runs diverged; first ({failures[0][0]}, "
                          f"{failures[0][1]}):\n{failures[0][2]}")
    if EXAMPLES >= 300:
        # the batch must really have exercised the monitor, or the equality above means little
        expected = ["EXTERNAL_INTERRUPT", "INTERRUPT_WINDOW", "HLT", "IO_INSTRUCTION",
                    "CR_ACCESS", "INVLPG", "EPT_VIOLATION", "EXCEPTION_NMI:page_fault",
                    "EXCEPTION_NMI:general_protection", "EXCEPTION_NMI:divide_error"]
        missing = [name for name in expected if seen[name] == 0]
        assert not missing, f"the generated kernels never caused {missing}"


@pytest.mark.parametrize("mode", ["hw_shadow", "hw_ept"])
def test_the_course_guest_os_runs_unchanged_with_every_optional_control(mode):
    img = build_guest("forkwait", count=3)
    native = run_technique(img, "native")
    every = {name: True for name in OPTIONAL_CONTROLS[mode]}
    hw = run_technique(img, mode, controls=every, exception_bitmap=range(32))
    assert same(native, hw)
    # every vector the guest raised exited once per delivery
    for key, n in native.traps.items():
        vec = next(v for v, k in isa.VECTOR_KEYS.items() if k == key)
        if vec < 32:
            assert hw.monitor_events[f"EXCEPTION_NMI:{key}"] >= n


# ==== the guest kernel runs in ring 0 of non-root operation ===================================
GETCPL_KERNEL = """
        li   r1, 0x1000
        li   r2, tick
        st   r2, [r1 + 4 * 32]
        wrcr tvb, r1
        getcpl r9               ; the kernel asks for its ring: no exit, no emulation
        movi r1, 300
        out  timer, r1          ; I/O exits: the monitor owns the timer
        sti
        movi r3, 1000
spin:   addi r3, r3, -1
        bne  r3, r0, spin
        cli
        hlt
tick:   getcpl r10
        addi r11, r11, 1
        iret
"""


@pytest.mark.parametrize("cls", [HwShadow, HwEpt])
def test_guest_kernel_instructions_run_in_ring_0_of_non_root_mode(cls):
    mon = cls(image(GETCPL_KERNEL), cpu="nehalem")
    mon._boot()
    # every entry puts the CPU in non-root operation with the guest's own ring
    observed = []
    import kernel_sim.monitors.hardware_assist as ha
    real = ha.run_guest

    def spy(machine, vmcs, budget):
        stop = real(machine, vmcs, budget)
        observed.append((vmcs.read("GUEST_CPL"), stop))
        return stop

    ha.run_guest = spy
    try:
        mon._run(100_000)
    finally:
        ha.run_guest = real
    r = mon.result()
    assert r.stop == "halt"
    assert r.registers[9] == 0 and r.registers[10] == 0      # GETCPL saw ring 0, natively
    # timer interrupts: the spin takes 1 + 2 * 1000 ticks after STI, each 3-instruction handler
    # adds 3; interrupt k comes at tick 300 k, so k runs while 300 k <= 2002 + 3 k: k = 6
    assert r.registers[11] == 6
    assert same(run_technique(image(GETCPL_KERNEL), "native"), r)
    assert "emulate:getcpl" not in r.monitor_events
    assert r.opcodes["GETCPL"] == 1 + r.registers[11]
    # every run of the guest ended in a VM exit taken with the guest in ring 0
    assert observed and all(cpl == 0 and stop == STOP_VM_EXIT for cpl, stop in observed)
    assert len(observed) == sum(r.monitor_events.values())
    # the exit trace: every exit was taken from kernel code, in ring 0
    assert r.exit_timeline and all(cpl == 0 for _, _, cpl, _ in r.exit_timeline)
    labels = [name for _, name, _, _ in r.exit_timeline]
    assert labels.count("IO_INSTRUCTION") == 1 and labels[-1] == "HLT"
    # trap_emulate, by contrast, runs the same kernel in host ring 1 (ring compression)
    te = run_technique(image(GETCPL_KERNEL), "trap_emulate")
    assert te.registers[9] == 1


def test_user_code_exits_are_recorded_in_ring_3():
    source = """
        li   r1, 0x1000
        li   r2, 0x3000
        st   r2, [r1 + 4 * 0x80]
        wrcr tvb, r1
        li   r1, 0x8000
        wrcr ksp, r1
        li   r1, 0x7000
        push r1                 ; user sp
        movi r1, 0
        push r1                 ; flags: IF = 0
        movi r1, 3
        push r1                 ; ring 3
        li   r1, 0x2000
        push r1                 ; user pc
        push r0
        iret
.org 0x2000
        movi r1, 9
        div  r2, r1, r0         ; #DE in ring 3: exits when the bitmap says so
        syscall
.org 0x3000
        hlt
"""
    r = run_technique(image(source), "hw_ept", exception_bitmap=(isa.VEC_DE,))
    de = [(cpl, pc) for _, name, cpl, pc in r.exit_timeline
          if name == "EXCEPTION_NMI:divide_error"]
    assert de == [(3, 0x2004)]
    # the guest had no #DE handler: it stops exactly as the bare machine does
    assert same(run_technique(image(source), "native"), r)


# ==== the VMCS is memory; entry checks ==========================================================
def test_vm_entry_loads_the_guest_state_from_the_vmcs_and_exit_writes_it_back():
    m = Machine(memory_size=64 * 1024, paging_levels=2, tlb_size=16)
    program = assemble("""
        movi r1, 7
        getcpl r2
        hlt
""")
    m.load(program)
    vmcs = Vmcs(m.mem, 0x8000)
    assert int(m.mem[0x8000 >> 2]) == vmcs.read("REVISION_ID") != 0
    vmcs.write("GUEST_PC", program.entry)
    vmcs.write("GUEST_CPL", 0)
    vmcs.write("EXEC_CONTROLS", CTL_HLT_EXITING | CTL_EXTINT_EXITING)
    vmcs.write("HOST_PC", 0x1234)
    m.ctrl[C_CPL] = 3                           # whatever the CPU held before: replaced
    stop = run_guest(m, vmcs, 1000)
    assert stop == STOP_VM_EXIT
    assert vmcs.read("EXIT_REASON") == EXIT_HLT and vmcs.exit_reason_name() == "HLT"
    assert vmcs.read("GUEST_PC") == program.entry + 8     # the HLT itself did not retire
    assert m.regs[1] == 7 and m.regs[2] == 0
    assert m.ctrl[C_VMX] == 0 and m.ctrl[C_PC] == 0x1234   # host state loaded
    # the exit information and the guest state are words of host memory, not only CPU state
    from kernel_sim.vmx import FIELDS
    assert int(m.mem[(0x8000 >> 2) + FIELDS["EXIT_REASON"]]) == EXIT_HLT
    assert int(m.mem[(0x8000 >> 2) + FIELDS["GUEST_PC"]]) == program.entry + 8


def test_vm_entry_refuses_inconsistent_controls():
    m = Machine(memory_size=64 * 1024)
    vmcs = Vmcs(m.mem, 0x8000)
    vmcs.write("EXEC_CONTROLS", CTL_ENABLE_EPT)
    with pytest.raises(VmEntryError, match="EPT"):
        vm_entry(m.ctrl, m.tlb, vmcs)
    vmcs.write("EXEC_CONTROLS", CTL_ENABLE_VPID)
    with pytest.raises(VmEntryError, match="VPID"):
        vm_entry(m.ctrl, m.tlb, vmcs)
    with pytest.raises(ValueError, match="aligned"):
        Vmcs(m.mem, 0x8004)


def test_io_exit_qualification_names_port_and_direction():
    m = Machine(memory_size=64 * 1024)
    m.load(assemble("        in   r3, ticks\n        hlt\n"))
    vmcs = Vmcs(m.mem, 0x8000)
    from kernel_sim.state import CTL_IO_EXITING, EXIT_IO_INSTRUCTION
    vmcs.write("GUEST_PC", m.pc)
    vmcs.write("EXEC_CONTROLS", CTL_IO_EXITING)
    assert run_guest(m, vmcs, 100) == STOP_VM_EXIT
    qual = vmcs.read("EXIT_QUALIFICATION")
    assert vmcs.read("EXIT_REASON") == EXIT_IO_INSTRUCTION
    assert qual >> 16 == isa.PORT_TICKS and qual & 8 and qual & 7 == 3
    assert (vmcs.read("EXIT_INSTRUCTION") >> 24) == isa.OP_IN
    assert int(m.ctrl[C_EXIT_QUAL]) == qual and int(m.ctrl[C_EXIT_REASON]) == EXIT_IO_INSTRUCTION


# ==== VPID ======================================================================================
def test_without_vpid_every_transition_flushes_the_tlb():
    img = build_guest("io", count=200)       # many I/O exits, few page-table changes
    with_vpid = run_technique(img, "hw_ept", cpu="nehalem", vpid=True)
    without = run_technique(img, "hw_ept", cpu="nehalem", vpid=False)
    assert with_vpid.state_digest == without.state_digest
    exits = sum(without.monitor_events.values())
    assert exits > 500
    # each exit empties the TLB, so the next accesses to code, stack and data miss again
    assert without.events["tlb_misses"] >= with_vpid.events["tlb_misses"] + exits
    assert any("flushed" in n for n in without.notes)
    assert not any("flushed" in n for n in with_vpid.notes)


def test_a_vpid_tagged_entry_survives_an_exit():
    m = Machine(memory_size=64 * 1024, tlb_size=16)
    m.load(assemble("        ld   r1, [r0 + 0x4400]\n        hlt\n        ld   r2, [r0 + 0x4400]\n"
                    "        hlt\n"))
    for vpid in (0, 5):
        m.tlb[:] = 0
        m.counters[:] = 0
        vmcs = Vmcs(m.mem, 0x8000)
        # an identity EPT over the first 64 KiB, RWX, one level
        ept = 0x9000
        m.mem[ept >> 2:(ept >> 2) + 16] = (np.arange(16, dtype=np.uint32) << 12) | 7
        ctl = CTL_HLT_EXITING | CTL_ENABLE_EPT | (CTL_ENABLE_VPID if vpid else 0)
        vmcs.write("EXEC_CONTROLS", ctl)
        vmcs.write("EPT_POINTER", ept)
        vmcs.write("EPT_LEVELS", 1)
        vmcs.write("VPID", vpid)
        vmcs.write("GUEST_PC", 0)
        assert run_guest(m, vmcs, 100) == STOP_VM_EXIT            # first HLT
        misses = int(m.counters[EV_TLB_MISS])
        vmcs.write("GUEST_PC", 8)                                  # the monitor skips the HLT
        assert run_guest(m, vmcs, 100) == STOP_VM_EXIT
        second = int(m.counters[EV_TLB_MISS]) - misses
        if vpid:       # the code page and the data page are still cached under VPID 5
            assert second == 0 and m.counters[EV_TLB_HIT] >= 2
        else:          # flushed at the exit and at the entry: both pages miss again
            assert second == 2
