"""VMX: the hardware side of hardware-assisted virtualization (Intel VT-x style).

Intel VT-x (2005) and AMD-V (2006) gave the x86 CPU a second mode of operation.  The monitor
runs in **VMX root operation**; a guest runs in **VMX non-root operation**, where the guest
kernel keeps ring 0 and every ring behaves as usual -- but a list of events, chosen by the
monitor, leaves the guest and returns control to the monitor: a **VM exit**.  People call
root mode "ring -1"; Intel does not (rings 0-3 exist in both modes).

The **VMCS** (virtual-machine control structure) is a page of host-physical memory that the
monitor fills and the CPU reads at VM entry and writes at VM exit:

* the **guest-state area**: the guest's pc, ring, interrupt flag and control registers, loaded
  into the CPU at VM entry and saved back at VM exit (general registers stay in the register
  file, as on Intel, where the monitor saves them in software);
* the **host-state area**: what the CPU loads at VM exit to run the monitor again;
* the **VM-execution controls**: which events exit (``CTL_*`` bits, the exception bitmap), and
  whether the CPU uses EPT (nested paging, with the EPT pointer and levels) and a VPID;
* the **VM-entry controls**: an event to *inject* into the guest as the entry completes;
* the **VM-exit information**: the exit reason (Intel's basic exit reason numbers), the exit
  qualification, the guest-physical and guest-linear addresses, the exiting instruction, and
  the event being delivered when the exit happened (IDT-vectoring information).

:func:`vm_entry` and :func:`vm_exit` move state between the VMCS and the CPU's ``ctrl`` array,
exactly as the CPU's microcode would; :func:`run_guest` enters, runs the jitted CPU -- which
decides every exit from the controls it loaded (:mod:`kernel_sim.state`, "VMX non-root
operation") -- and exits.  Field names follow Intel's where one exists; the layout (one 32-bit
word per field at the offsets below) is this simulator's own.

Without a VPID every VM entry and every VM exit flushes the whole TLB (the guest's and the
monitor's translations would otherwise mix); with one, the TLB keeps the guest's entries,
tagged with its VPID, across exits.
"""
from __future__ import annotations

from typing import Dict

import numpy as np

from . import isa
from .state import (
    C_CPL,
    C_CR0_SHADOW,
    C_EPT_LEVELS,
    C_EPTP,
    C_EXCEPTION_BITMAP,
    C_EXIT_GLA,
    C_EXIT_GPA,
    C_EXIT_INSTR,
    C_EXIT_INTR_ERROR,
    C_EXIT_INTR_INFO,
    C_EXIT_QUAL,
    C_EXIT_REASON,
    C_FAULT_ADDR,
    C_IDT_VECTORING,
    C_IDT_VECTORING_ERROR,
    C_IF,
    C_INJECT,
    C_INJECT_ERROR,
    C_KSP,
    C_PAGING,
    C_PC,
    C_PTBR,
    C_SCRATCH,
    C_TVB,
    C_VMX,
    C_VMX_CONTROLS,
    C_VPID,
    CTL_CR0_PG_EXITING,
    CTL_CR3_LOAD_EXITING,
    CTL_CR3_STORE_EXITING,
    CTL_ENABLE_EPT,
    CTL_ENABLE_VPID,
    CTL_EXTINT_EXITING,
    CTL_HLT_EXITING,
    CTL_INTWIN_EXITING,
    CTL_INVLPG_EXITING,
    CTL_IO_EXITING,
    EXIT_NAMES,
    INJECT_VALID,
    STOP_VM_EXIT,
)

#: VMCS revision identifier written in the first word (Intel keeps one per processor model).
VMCS_REVISION = 0x4B53
VMCS_BYTES = isa.PAGE_SIZE

#: Field name -> word offset in the VMCS page, grouped by area.
VMCS_AREAS: Dict[str, tuple] = {
    "header": ("REVISION_ID", "LAUNCH_STATE"),
    "guest-state": ("GUEST_PC", "GUEST_CPL", "GUEST_IF", "GUEST_PAGING", "GUEST_PTBR",
                    "GUEST_FAULT_ADDR", "GUEST_TVB", "GUEST_KSP", "GUEST_SCRATCH"),
    "host-state": ("HOST_PC", "HOST_CPL", "HOST_PAGING", "HOST_PTBR"),
    "execution-controls": ("EXEC_CONTROLS", "EXCEPTION_BITMAP", "EPT_POINTER", "EPT_LEVELS",
                           "VPID", "CR0_READ_SHADOW"),
    "entry-controls": ("ENTRY_INTR_INFO", "ENTRY_EXCEPTION_ERROR"),
    "exit-information": ("EXIT_REASON", "EXIT_QUALIFICATION", "GUEST_PHYSICAL_ADDRESS",
                         "GUEST_LINEAR_ADDRESS", "EXIT_INSTRUCTION", "EXIT_INTR_INFO",
                         "EXIT_INTR_ERROR", "IDT_VECTORING_INFO", "IDT_VECTORING_ERROR"),
}
FIELDS: Dict[str, int] = {}
for _area in VMCS_AREAS.values():
    for _name in _area:
        FIELDS[_name] = len(FIELDS)

#: guest-state field -> the CPU's ctrl index it is loaded into and saved from
_GUEST_STATE = (("GUEST_PC", C_PC), ("GUEST_CPL", C_CPL), ("GUEST_IF", C_IF),
                ("GUEST_PAGING", C_PAGING), ("GUEST_PTBR", C_PTBR),
                ("GUEST_FAULT_ADDR", C_FAULT_ADDR), ("GUEST_TVB", C_TVB), ("GUEST_KSP", C_KSP),
                ("GUEST_SCRATCH", C_SCRATCH))
_HOST_STATE = (("HOST_PC", C_PC), ("HOST_CPL", C_CPL), ("HOST_PAGING", C_PAGING),
               ("HOST_PTBR", C_PTBR))
_EXIT_INFO = (("EXIT_REASON", C_EXIT_REASON), ("EXIT_QUALIFICATION", C_EXIT_QUAL),
              ("GUEST_PHYSICAL_ADDRESS", C_EXIT_GPA), ("GUEST_LINEAR_ADDRESS", C_EXIT_GLA),
              ("EXIT_INSTRUCTION", C_EXIT_INSTR), ("EXIT_INTR_INFO", C_EXIT_INTR_INFO),
              ("EXIT_INTR_ERROR", C_EXIT_INTR_ERROR), ("IDT_VECTORING_INFO", C_IDT_VECTORING),
              ("IDT_VECTORING_ERROR", C_IDT_VECTORING_ERROR))

#: Control name (as the monitors and widgets spell it) -> CTL_* bit.
CONTROLS: Dict[str, int] = {
    "external_interrupt_exiting": CTL_EXTINT_EXITING,
    "interrupt_window_exiting": CTL_INTWIN_EXITING,
    "hlt_exiting": CTL_HLT_EXITING,
    "invlpg_exiting": CTL_INVLPG_EXITING,
    "cr3_load_exiting": CTL_CR3_LOAD_EXITING,
    "cr3_store_exiting": CTL_CR3_STORE_EXITING,
    "io_exiting": CTL_IO_EXITING,
    "cr0_pg_exiting": CTL_CR0_PG_EXITING,
    "enable_ept": CTL_ENABLE_EPT,
    "enable_vpid": CTL_ENABLE_VPID,
}
#: What each control makes exit, for tables and widgets.
CONTROL_DOC: Dict[str, str] = {
    "external_interrupt_exiting": "a host timer interrupt exits (EXTERNAL_INTERRUPT), whatever "
                                  "the guest's IF",
    "interrupt_window_exiting": "exit as soon as the guest can take an interrupt "
                                "(INTERRUPT_WINDOW)",
    "hlt_exiting": "HLT exits (HLT)",
    "invlpg_exiting": "INVLPG exits (INVLPG)",
    "cr3_load_exiting": "WRCR ptbr exits (CR_ACCESS)",
    "cr3_store_exiting": "RDCR ptbr exits (CR_ACCESS)",
    "io_exiting": "IN and OUT exit (IO_INSTRUCTION)",
    "cr0_pg_exiting": "WRCR paging exits (CR_ACCESS); RDCR paging reads the read shadow",
    "enable_ept": "the CPU walks the guest's page tables through the EPT (nested paging)",
    "enable_vpid": "TLB entries are tagged with the guest's VPID: no flush at entry and exit",
}


class VmEntryError(RuntimeError):
    """VM entry failed its checks (Intel: "VM entry failed"); the message says which."""


class Vmcs:
    """A VMCS page at host-physical ``address`` in ``mem`` (uint32 words), read and written by
    field name -- the monitor's VMREAD and VMWRITE."""

    def __init__(self, mem: np.ndarray, address: int):
        if address % VMCS_BYTES:
            raise ValueError(f"a VMCS must be page aligned, got 0x{address:x}")
        if address + VMCS_BYTES > 4 * len(mem):
            raise ValueError("the VMCS does not fit in host memory")
        self.mem = mem
        self.address = address
        self._base = address >> 2
        self.mem[self._base:self._base + VMCS_BYTES // 4] = 0
        self.write("REVISION_ID", VMCS_REVISION)     # VMCLEAR + revision id

    def read(self, field: str) -> int:
        """VMREAD: the value of ``field``."""
        return self.mem.item(self._base + FIELDS[field])

    def write(self, field: str, value: int) -> None:
        """VMWRITE: set ``field`` (a 32-bit word)."""
        self.mem[self._base + FIELDS[field]] = int(value) & 0xFFFFFFFF

    def controls(self) -> Dict[str, bool]:
        """The execution controls by name."""
        word = self.read("EXEC_CONTROLS")
        return {name: bool(word & bit) for name, bit in CONTROLS.items()}

    def set_control(self, name: str, on: bool) -> None:
        bit = CONTROLS[name]
        word = self.read("EXEC_CONTROLS")
        self.write("EXEC_CONTROLS", (word | bit) if on else (word & ~bit))

    def exit_reason_name(self) -> str:
        reason = self.read("EXIT_REASON")
        return EXIT_NAMES.get(reason, f"reason {reason}")

    def dump(self) -> Dict[str, Dict[str, int]]:
        """Every field, by area (for notebooks: the VMCS is just memory)."""
        return {area: {name: self.read(name) for name in names}
                for area, names in VMCS_AREAS.items()}


def vm_entry(ctrl: np.ndarray, tlb: np.ndarray, vmcs: Vmcs) -> None:
    """VMLAUNCH/VMRESUME: check the VMCS, save nothing of the host (its state is in the VMCS's
    host-state area), load the guest state and the controls into the CPU, arm the injection."""
    controls = vmcs.read("EXEC_CONTROLS")
    if controls & CTL_ENABLE_EPT:
        levels = vmcs.read("EPT_LEVELS")
        if not 1 <= levels <= 4 or vmcs.read("EPT_POINTER") == 0:
            raise VmEntryError("enable_ept is set but the EPT pointer or its levels (1..4) are "
                               "invalid")
    if controls & CTL_ENABLE_VPID and vmcs.read("VPID") == 0:
        raise VmEntryError("enable_vpid is set but the VPID is 0 (0 belongs to the host)")
    info = vmcs.read("ENTRY_INTR_INFO")
    if info & INJECT_VALID and (info & 0xFF) == isa.VEC_TIMER and not vmcs.read("GUEST_IF"):
        raise VmEntryError("cannot inject an external interrupt while the guest's IF is 0")
    for name, idx in _GUEST_STATE:
        ctrl[idx] = vmcs.read(name)
    ctrl[C_VMX] = 1
    ctrl[C_VMX_CONTROLS] = controls
    ctrl[C_EXCEPTION_BITMAP] = vmcs.read("EXCEPTION_BITMAP")
    ctrl[C_EPTP] = vmcs.read("EPT_POINTER") if controls & CTL_ENABLE_EPT else 0
    ctrl[C_EPT_LEVELS] = vmcs.read("EPT_LEVELS") if controls & CTL_ENABLE_EPT else 0
    ctrl[C_VPID] = vmcs.read("VPID") if controls & CTL_ENABLE_VPID else 0
    ctrl[C_CR0_SHADOW] = vmcs.read("CR0_READ_SHADOW")
    ctrl[C_INJECT] = info if info & INJECT_VALID else 0
    ctrl[C_INJECT_ERROR] = vmcs.read("ENTRY_EXCEPTION_ERROR")
    ctrl[C_IDT_VECTORING] = 0
    vmcs.write("ENTRY_INTR_INFO", 0)           # the injection is consumed by this entry
    vmcs.write("LAUNCH_STATE", 1)
    if not controls & CTL_ENABLE_VPID:
        tlb[:] = 0


def vm_exit(ctrl: np.ndarray, tlb: np.ndarray, vmcs: Vmcs, exited: bool = True) -> None:
    """VM exit: save the guest state and the exit information into the VMCS, load the host
    state.  ``exited=False``: the run stopped for another reason (budget); the guest state is
    saved the same way, and the exit-reason fields are left as they were."""
    for name, idx in _GUEST_STATE:
        vmcs.write(name, ctrl[idx])
    if exited:
        for name, idx in _EXIT_INFO:
            vmcs.write(name, ctrl[idx])
    controls = int(ctrl[C_VMX_CONTROLS])
    ctrl[C_VMX] = 0
    ctrl[C_VMX_CONTROLS] = 0
    ctrl[C_EXCEPTION_BITMAP] = 0
    ctrl[C_EPTP] = 0
    ctrl[C_EPT_LEVELS] = 0
    ctrl[C_VPID] = 0
    ctrl[C_INJECT] = 0
    for name, idx in _HOST_STATE:
        ctrl[idx] = vmcs.read(name)
    ctrl[C_IF] = 0
    if not controls & CTL_ENABLE_VPID:
        tlb[:] = 0


def run_guest(machine, vmcs: Vmcs, budget: int) -> int:
    """Enter the guest of ``vmcs`` on ``machine``'s CPU, run at most ``budget`` guest
    instructions, come back to root operation.  Returns the CPU's stop reason
    (``STOP_VM_EXIT``: read the reason from the VMCS)."""
    from .cpu import run_native
    m = machine
    vm_entry(m.ctrl, m.tlb, vmcs)
    stop = run_native(m.regs, m.ctrl, m.mem, m.tlb, m.costs, m.counters, m.console_buffer,
                      m.trace, m.intercept, budget)
    vm_exit(m.ctrl, m.tlb, vmcs, exited=stop == STOP_VM_EXIT)
    return stop


__all__ = ["Vmcs", "VmEntryError", "vm_entry", "vm_exit", "run_guest", "FIELDS", "VMCS_AREAS",
           "CONTROLS", "CONTROL_DOC", "EXIT_NAMES", "VMCS_REVISION"]
