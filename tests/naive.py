"""A slow, readable reference interpreter of the toy machine (the differential tests' oracle).

This file is written only from the specification: the docstring of :mod:`kernel_sim.state` (the
execution contract) and the instruction table in :mod:`kernel_sim.isa`; for nested paging also
the EPT entry and qualification bits that :mod:`kernel_sim.mmu`'s docstring documents (copied
here as constants).  It imports constants from those two modules and nothing from
``kernel_sim.cpu``, ``kernel_sim.mmu`` or ``kernel_sim.machine``, so a bug in the jitted CPU
cannot leak into it.  Speed does not matter
here; clarity does.  Every register is a Python ``int`` in ``0 .. 2**32 - 1``, memory is a list of
words, and every rule of the contract is one visible statement.

Use it like the real machine::

    m = NaiveMachine(memory_size=64 << 10, paging_levels=2, tlb_size=8, costs=cost_list)
    m.mem[0x1000 // 4] = encode(OP_MOVI, 1, 0, 42)
    m.pc = 0x1000
    reason = m.run(budget=100)
    arrays = m.export()     # regs, ctrl, mem, tlb, counters, ... in kernel_sim.state's layout

Decisions where the contract leaves room (each is also marked ``DECISION`` in the code):

* Counting a delivery (``EV_TRAPS``, the per-vector counter, ``K_TRAP`` cycles, the trace record)
  happens for every delivery, including ones that stop the run (intercepted, unhandled, triple
  fault).
* The checks of a delivery run in the contract's order: intercept, no table, read the handler
  (a fault: triple fault), handler 0, then the storm check, then the pushes.  ``C_DELIVERIES``
  (the storm counter) counts only deliveries that get past the step-1 stops (intercepted or
  unhandled traps are not delivered to the guest, so a monitor that intercepts many traps in a
  row never sees a triple fault); the 17th consecutive one stops the run with
  ``STOP_TRIPLE_FAULT``.  Retiring an instruction resets it to 0.
* A triple fault changes nothing but pc (= the return pc), ``C_STOP_VECTOR``/``C_STOP_ERROR`` (the
  vector being delivered and its error code) and the stop reason; a page fault met while
  delivering does not write ``FAULT_ADDR`` nor count ``EV_PAGE_FAULTS``.
* The #GP raised by the strict mode for PUSHF/POPF/GETCPL/RDTVB in rings 1..3 counts as a
  privilege fault (``EV_PRIV_FAULTS``), like the privileged instructions' #GP.
* A page-walk entry address beyond memory raises #GP(0) *before* the reference is counted.
* The bus check ``pa >= memory size`` comes after translation: a successful walk fills the TLB
  even when the frame lies beyond memory; the access then raises #GP(0).
* ``HLT`` with IF == 1 and a timer interrupt already pending neither skips nor stops (x86: HLT
  wakes at once), even when the timer is off.
* Clearing a TLB entry (flush, INVLPG) zeroes both its key and its value.
* A trace record is written for every delivery (pc = return pc), every OUT (pc = the
  instruction, tick = ticks before it retires; IN is counted but not traced) and every stop
  (pc = pc at the stop).

VMX non-root operation (``vmx == 1``; the contract's sections "VMX non-root operation" and
"Exits during event delivery") adds these decisions:

* The VMX fields (controls, exception bitmap, EPT pointer, VPID, read shadow) only matter while
  ``vmx == 1``; a machine with ``vmx == 0`` ignores them (EPT off, TLB keys without a VPID).
* A VM exit writes the exit-information fields the contract defines for its reason and leaves
  the others as they were (VT-x calls them undefined): every exit writes ``exit_reason``,
  ``exit_qual`` (0 when the reason has no qualification) and ``idt_vectoring`` (0 unless the
  exit happened while delivering an event); instruction exits write ``exit_instr`` (the
  instruction word); EPT violations write ``exit_gpa``, ``exit_gla`` and ``exit_instr`` (the
  word of the instruction whose access exited, 0 if its fetch did; not written when the
  violation happened while delivering an event); exception exits write ``exit_intr_info``,
  ``exit_intr_error`` and, for #PF, ``exit_gla``.  :data:`EXIT_INFO_DEFINED` lists this.
* The delivery probe applies to every event, the injected one included (the injection itself
  never exits through the exception bitmap, but the contract's "any event" covers a nested EPT
  violation while delivering it); it is skipped where native delivery would touch nothing:
  an intercepted vector, no vector table.  Its translations are ordinary translations (TLB
  lookups, fills, walk counters and cycles count), and when it finds nothing the delivery
  translates the same addresses again.
* An exit during event delivery changes nothing but the probe's translation side effects and
  the exit information -- and, for a #PF that is not being injected, ``fault_addr``: CR2 is
  written as the delivery of a #PF begins (as on Intel hardware; the monitor relies on it when
  it re-injects the event).
* Under EPT a combined translation whose host-physical frame lies beyond memory raises #GP(0)
  *without* filling the TLB (the nested walk checks the bus before the fill).
* Setting a guest A or D bit needs EPT write permission on the guest table page (the kernel_sim.mmu
  docstring's model choice); the violation names the table entry's guest-physical address.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kernel_sim import isa
from kernel_sim import state as S

MASK = isa.WORD_MASK
MAX_DELIVERIES_IN_A_ROW = S.MAX_DELIVERIES

READ, WRITE, FETCH = "read", "write", "fetch"


def signed(v: int) -> int:
    """Read a 32-bit word as two's complement."""
    v &= MASK
    return v - (1 << 32) if v & 0x80000000 else v


# ---- nested paging (EPT) entry bits and EPT-violation qualification bits (kernel_sim.mmu's
# docstring; repeated here so that this file imports nothing from the jitted code)
EPT_R, EPT_W, EPT_X = 1, 2, 4
EPT_RWX = 7
EPTQ_READ, EPTQ_WRITE, EPTQ_FETCH = 1, 2, 4  # the access tried
EPTQ_PERM_SHIFT = 3         # bits 3..5: the R/W/X the nested entries granted
EPTQ_GVA_VALID = 128        # always set: the access had a guest-virtual address
EPTQ_FINAL = 256            # the access was to the final page (clear: to a guest table entry)

#: Which exit-information fields (ctrl indices) a VM exit of each reason writes; the others
#: keep their old value (undefined for that reason).  ``None`` as key: the run did not exit.
_COMMON = (S.C_EXIT_REASON, S.C_EXIT_QUAL, S.C_IDT_VECTORING)
_INSTRUCTION = _COMMON + (S.C_EXIT_INSTR,)
EXIT_INFO_FIELDS = (S.C_EXIT_REASON, S.C_EXIT_QUAL, S.C_EXIT_GPA, S.C_EXIT_GLA, S.C_EXIT_INSTR,
                    S.C_EXIT_INTR_INFO, S.C_EXIT_INTR_ERROR, S.C_IDT_VECTORING,
                    S.C_IDT_VECTORING_ERROR)
EXIT_INFO_DEFINED = {
    S.EXIT_EXTERNAL_INTERRUPT: _COMMON,
    S.EXIT_INTERRUPT_WINDOW: _COMMON,
    S.EXIT_TRIPLE_FAULT: _COMMON,
    S.EXIT_HLT: _INSTRUCTION,
    S.EXIT_VMCALL: _INSTRUCTION,
    S.EXIT_IO_INSTRUCTION: _INSTRUCTION,
    S.EXIT_CR_ACCESS: _INSTRUCTION,
    S.EXIT_INVLPG: _INSTRUCTION,
    # + C_EXIT_GLA for #PF; + C_IDT_VECTORING_ERROR when C_IDT_VECTORING is valid
    S.EXIT_EXCEPTION_NMI: _COMMON + (S.C_EXIT_INTR_INFO, S.C_EXIT_INTR_ERROR),
    # + C_EXIT_INSTR unless during event delivery; + C_IDT_VECTORING_ERROR when valid
    S.EXIT_EPT_VIOLATION: _COMMON + (S.C_EXIT_GPA, S.C_EXIT_GLA),
}


def exit_info_defined(ctrl) -> tuple[int, ...]:
    """The exit-information fields (ctrl indices) that ``ctrl`` (an exported state) defines."""
    if ctrl[S.C_STOP_REASON] != S.STOP_VM_EXIT:
        return ()
    reason = int(ctrl[S.C_EXIT_REASON])
    fields = EXIT_INFO_DEFINED[reason]
    vectoring = ctrl[S.C_IDT_VECTORING] & S.INJECT_VALID
    if vectoring:
        fields += (S.C_IDT_VECTORING_ERROR,)
    if reason == S.EXIT_EXCEPTION_NMI and ctrl[S.C_EXIT_INTR_INFO] == isa.VEC_PF:
        fields += (S.C_EXIT_GLA,)
    if reason == S.EXIT_EPT_VIOLATION and not vectoring:
        fields += (S.C_EXIT_INSTR,)
    return fields


class VMExit(Exception):
    """An instruction that the VMCS sends to the monitor: the step turns it into a VM exit."""

    def __init__(self, reason: int, qualification: int = 0):
        super().__init__(f"VM exit {S.EXIT_NAMES.get(reason, reason)}")
        self.reason = reason
        self.qualification = qualification


class EPTViolation(Exception):
    """The nested table refused a guest-physical access: a VM exit, never a guest fault."""

    def __init__(self, gpa: int, gla: int, qualification: int):
        super().__init__(f"EPT violation at guest-physical {gpa:#x}")
        self.gpa = gpa
        self.gla = gla
        self.qualification = qualification


class Fault(Exception):
    """An exception raised by an instruction: the step catches it and delivers the vector."""

    def __init__(self, vector: int, error: int = 0, address: int | None = None):
        super().__init__(f"vector {vector} error {error:#x}")
        self.vector = vector
        self.error = error
        self.address = address          # the faulting virtual address (page faults only)


PRIVILEGED_OPS = {i.opcode for i in isa.INSTRUCTIONS if i.cls == isa.PRIVILEGED}
# VMCALL/CALLOUT are not implemented by the bare machine: they are not in the dispatch table,
# so they raise #UD like any undefined opcode -- except VMCALL in VMX non-root operation, which
# exits (check_allowed).
SENSITIVE_OPS = {i.opcode for i in isa.INSTRUCTIONS if i.cls == isa.SENSITIVE}


class NaiveMachine:
    """The reference machine: the same state as :mod:`kernel_sim.state`, held in plain Python."""

    def __init__(self, memory_size: int = 64 << 10, paging_levels: int = 2, tlb_size: int = 16,
                 strict: bool = False, ring: int = 0, costs: Sequence[int] | None = None,
                 console_size: int = 1 << 16, trace_size: int = 4096, disk_sectors: int = 0):
        assert memory_size % isa.PAGE_SIZE == 0 and 1 <= paging_levels <= 4
        assert tlb_size >= 1 and tlb_size & (tlb_size - 1) == 0
        if costs is None:   # the per-opcode costs of the ISA table, no extras
            costs = isa.cost_table() + [0] * (S.NUM_COSTS - 256)
        assert len(costs) == S.NUM_COSTS
        self.costs: list[int] = [int(c) for c in costs]
        self.mem_bytes = memory_size
        self.mem: list[int] = [0] * (memory_size // 4)
        self.disk_sectors = disk_sectors
        self.disk: list[int] = [0] * (disk_sectors * S.BLK_SECTOR_WORDS)   # the block device
        self.blk_sector = 0
        self.blk_buffer = 0
        self.blk_status = 0
        self.data_limit = 0       # monitor-only segment limit for data accesses (0 = none)
        self.tlb_size = tlb_size
        self.tlb: list[int] = [0] * (2 * tlb_size)
        self.counters: list[int] = [0] * S.NUM_COUNTERS
        self.console_size = console_size
        self.console = bytearray()
        self.trace_size = trace_size
        self.trace: list[list[int]] = [[0, 0, 0, 0] for _ in range(trace_size)]
        self.trace_pos = 0
        self.intercept: list[int] = [0] * isa.NUM_VECTORS
        # power-on state (as after an x86 reset: interrupts off, paging off, no vector table)
        self.regs: list[int] = [0] * isa.NUM_REGS
        self.regs[isa.SP] = memory_size & MASK
        self.pc = 0
        self.cpl = ring
        self.if_ = 0
        self.paging = 0
        self.ptbr = 0
        self.fault_addr = 0
        self.tvb = isa.NO_TVB
        self.ksp = 0
        self.scratch = 0
        self.ticks = 0
        self.timer_period = 0
        self.timer_deadline = S.NEVER
        self.timer_pending = 0
        self.strict = int(bool(strict))
        self.levels = paging_levels
        self.cycles = 0
        self.stop_reason = S.STOP_NONE
        self.stop_vector = 0
        self.stop_error = 0
        self.until = -1
        self.deliveries = 0
        self._budget: int | None = None
        self._retired_in_run = 0
        # VMX non-root operation (loaded from a VMCS at VM entry; all 0 on a bare machine)
        self.vmx = 0
        self.vmx_controls = 0
        self.exception_bitmap = 0
        self.eptp = 0
        self.ept_levels = 0
        self.vpid = 0
        self.cr0_shadow = 0
        self.inject = 0
        self.inject_error = 0
        # exit information (written by VM exits)
        self.exit_reason = 0
        self.exit_qual = 0
        self.exit_gpa = 0
        self.exit_gla = 0
        self.exit_instr = 0
        self.exit_intr_info = 0
        self.exit_intr_error = 0
        self.idt_vectoring = 0
        self.idt_vectoring_error = 0

    # ---- control registers by number (isa.CR_*) -------------------------------------------
    _CR_ATTRS = ("paging", "ptbr", "fault_addr", "tvb", "ksp", "scratch")

    #: ctrl index -> attribute, for every ctrl slot a caller may set before a run
    CTRL_ATTRS = {
        S.C_PC: "pc", S.C_CPL: "cpl", S.C_IF: "if_", S.C_PAGING: "paging", S.C_PTBR: "ptbr",
        S.C_FAULT_ADDR: "fault_addr", S.C_TVB: "tvb", S.C_KSP: "ksp", S.C_SCRATCH: "scratch",
        S.C_TICKS: "ticks", S.C_TIMER_PERIOD: "timer_period",
        S.C_TIMER_DEADLINE: "timer_deadline", S.C_TIMER_PENDING: "timer_pending",
        S.C_DATA_LIMIT: "data_limit", S.C_VMX: "vmx", S.C_VMX_CONTROLS: "vmx_controls",
        S.C_EXCEPTION_BITMAP: "exception_bitmap", S.C_EPTP: "eptp",
        S.C_EPT_LEVELS: "ept_levels", S.C_VPID: "vpid", S.C_CR0_SHADOW: "cr0_shadow",
        S.C_INJECT: "inject", S.C_INJECT_ERROR: "inject_error",
        S.C_EXIT_REASON: "exit_reason", S.C_EXIT_QUAL: "exit_qual", S.C_EXIT_GPA: "exit_gpa",
        S.C_EXIT_GLA: "exit_gla", S.C_EXIT_INSTR: "exit_instr",
        S.C_EXIT_INTR_INFO: "exit_intr_info", S.C_EXIT_INTR_ERROR: "exit_intr_error",
        S.C_IDT_VECTORING: "idt_vectoring", S.C_IDT_VECTORING_ERROR: "idt_vectoring_error",
    }

    # ---- helpers ----------------------------------------------------------------------------
    def controls(self) -> int:
        """The VMX execution controls in force (none outside non-root operation)."""
        return self.vmx_controls if self.vmx else 0

    def ept_on(self) -> bool:
        return bool(self.vmx) and self.eptp != 0

    def count(self, event: int, n: int = 1) -> None:
        self.counters[event] += n

    def trace_event(self, pc: int, kind: int, detail: int) -> None:
        if self.trace_size:
            self.trace[self.trace_pos % self.trace_size] = [self.ticks, pc, kind, detail]
        self.trace_pos += 1

    # ---- TLB --------------------------------------------------------------------------------
    def tlb_key_and_index(self, va: int):
        """Where ``va`` lives in the direct-mapped, ASID-tagged TLB: (key, entry index)."""
        vpn = (va & MASK) >> isa.PAGE_SHIFT
        tag = self.ptbr & isa.ASID_MASK         # the address space ...
        if self.vmx:
            tag |= self.vpid << 12              # ... of this virtual machine (VPID)
        key = ((tag << 20) | vpn) + 1           # + 1 so that key 0 means "empty"
        index = (vpn ^ (vpn >> 7) ^ (vpn >> 14)) & (self.tlb_size - 1)   # XOR-folded index
        return key, index

    def tlb_clear_all(self) -> None:
        self.tlb = [0] * (2 * self.tlb_size)
        self.count(S.EV_TLB_FLUSHES)

    # ---- MMU --------------------------------------------------------------------------------
    def translate(self, va: int, access: str, cpl: int | None = None) -> int:
        """Translate a virtual byte address; return the physical *word index*.

        ``access`` is READ, WRITE or FETCH; ``cpl`` is the privilege level of the access (the
        current one by default; trap delivery passes 0: supervisor accesses).  Raises
        :class:`Fault` (#PF or the bus-error #GP) and leaves the walk's side effects (A/D bits,
        TLB fill, counters, cycles) in place, as hardware does.
        """
        va &= MASK
        if cpl is None:
            cpl = self.cpl
        if access != FETCH and cpl > 0 and self.data_limit and va >= self.data_limit:
            raise Fault(isa.VEC_GP, 0)          # beyond the monitor's data limit
        if not (self.paging & 1) and not self.ept_on():
            pa = va
        else:
            pa = self.translate_paged(va, access, cpl)
        if pa >= self.mem_bytes:
            raise Fault(isa.VEC_GP, 0)          # bus error
        return pa >> 2                          # the low two address bits are ignored

    def translate_paged(self, va: int, access: str, cpl: int) -> int:
        write = access == WRITE
        key, i = self.tlb_key_and_index(va)
        needs = (isa.PTE_W | isa.PTE_D if write else 0) | (isa.PTE_U if cpl == 3 else 0)
        value = self.tlb[2 * i + 1]
        if self.tlb[2 * i] == key and value & needs == needs:
            self.count(S.EV_TLB_HIT)
            return (value & isa.PTE_FRAME_MASK) | (va & 0xFFF)
        self.count(S.EV_TLB_MISS)
        self.cycles += self.costs[S.K_TLB_MISS]
        if self.ept_on():
            return self.walk_nested(va, access, cpl, key, i)
        return self.walk(va, access, cpl, key, i)

    def page_fault(self, va: int, access: str, cpl: int, present: bool) -> Fault:
        error = ((isa.PF_PRESENT if present else 0) | (isa.PF_WRITE if access == WRITE else 0)
                 | (isa.PF_USER if cpl == 3 else 0) | (isa.PF_FETCH if access == FETCH else 0))
        return Fault(isa.VEC_PF, error, address=va)

    def walk(self, va: int, access: str, cpl: int, key: int, i: int) -> int:
        """Walk ``levels`` page tables from PTBR, as the contract's *Walk* paragraph says."""
        covered_bits = self.levels * isa.LEVEL_BITS + isa.PAGE_SHIFT
        if covered_bits < 32 and va >> covered_bits != 0:
            raise self.page_fault(va, access, cpl, present=False)
        table = self.ptbr & isa.PTE_FRAME_MASK
        perm = isa.PTE_W | isa.PTE_U
        entry_addr = pte = 0
        for k in range(self.levels - 1, -1, -1):
            idx = (va >> (isa.PAGE_SHIFT + isa.LEVEL_BITS * k)) & 0x3FF
            entry_addr = table + 4 * idx
            if entry_addr >= self.mem_bytes:
                # DECISION: the bus error is raised before the reference is counted.
                raise Fault(isa.VEC_GP, 0)
            self.count(S.EV_WALK_REFS)
            self.cycles += self.costs[S.K_WALK_REF]
            pte = self.mem[entry_addr >> 2]
            if not pte & isa.PTE_P:
                raise self.page_fault(va, access, cpl, present=False)
            pte |= isa.PTE_A
            self.mem[entry_addr >> 2] = pte
            perm &= pte
            table = pte & isa.PTE_FRAME_MASK
        write = access == WRITE
        if (write and not perm & isa.PTE_W) or (cpl == 3 and not perm & isa.PTE_U):
            raise self.page_fault(va, access, cpl, present=True)
        if write:
            pte |= isa.PTE_D
            self.mem[entry_addr >> 2] = pte
        frame = pte & isa.PTE_FRAME_MASK
        self.tlb[2 * i] = key
        self.tlb[2 * i + 1] = frame | (perm & (isa.PTE_W | isa.PTE_U)) | (pte & isa.PTE_D)
        return frame | (va & 0xFFF)

    # ---- nested paging (EPT) ----------------------------------------------------------------
    def count_walk_ref(self, nested: bool) -> None:
        self.count(S.EV_WALK_REFS)
        if nested:
            self.count(S.EV_NESTED_REFS)
        self.cycles += self.costs[S.K_WALK_REF]

    def ept_translate(self, gpa: int, need: int, final: bool, gla: int) -> tuple[int, int]:
        """Guest-physical -> (host-physical address, EPT permissions granted) through the nested
        table; raises :class:`EPTViolation` (or #GP(0) for a nested entry beyond memory).

        ``need`` is EPT_R, EPT_W or EPT_X (it is also the qualification's access bit);
        ``final`` tells the qualification whether this is the data page or a guest table.
        """
        def violation(granted: int) -> EPTViolation:
            qual = need | (granted << EPTQ_PERM_SHIFT) | EPTQ_GVA_VALID
            return EPTViolation(gpa, gla, qual | (EPTQ_FINAL if final else 0))

        if self.ept_levels == 0:                # no nested table: guest-physical = host-physical
            return gpa, EPT_RWX
        covered_bits = self.ept_levels * isa.LEVEL_BITS + isa.PAGE_SHIFT
        if covered_bits < 32 and gpa >> covered_bits != 0:
            raise violation(0)                  # beyond the guest-physical address space
        table = self.eptp & isa.PTE_FRAME_MASK
        granted = EPT_RWX
        for k in range(self.ept_levels - 1, -1, -1):
            entry_addr = table + 4 * ((gpa >> (isa.PAGE_SHIFT + isa.LEVEL_BITS * k)) & 0x3FF)
            if entry_addr >= self.mem_bytes:
                raise Fault(isa.VEC_GP, 0)
            self.count_walk_ref(nested=True)
            entry = self.mem[entry_addr >> 2]
            if entry & EPT_RWX == 0:
                raise violation(0)              # not present: nothing granted
            granted &= entry
            table = entry & isa.PTE_FRAME_MASK
        if granted & need != need:
            raise violation(granted)
        return table | (gpa & 0xFFF), granted

    def walk_nested(self, va: int, access: str, cpl: int, key: int, i: int) -> int:
        """The two-dimensional walk under EPT; fills TLB entry ``i`` with the combined
        guest-virtual -> host-physical translation.  Returns the host-physical address."""
        write = access == WRITE
        need = EPT_W if write else EPT_X if access == FETCH else EPT_R
        if not self.paging & 1:
            # guest paging off: the virtual address is guest-physical; only the nested table
            hpa, granted = self.ept_translate(va, need, True, va)
            if hpa >= self.mem_bytes:
                raise Fault(isa.VEC_GP, 0)      # DECISION: no TLB fill beyond memory
            value = (hpa & isa.PTE_FRAME_MASK) | isa.PTE_U
            if granted & EPT_W:
                value |= isa.PTE_W | isa.PTE_D
            self.tlb[2 * i], self.tlb[2 * i + 1] = key, value
            return hpa
        covered_bits = self.levels * isa.LEVEL_BITS + isa.PAGE_SHIFT
        if covered_bits < 32 and va >> covered_bits != 0:
            raise self.page_fault(va, access, cpl, present=False)
        table = self.ptbr & isa.PTE_FRAME_MASK  # guest-physical
        perm = isa.PTE_W | isa.PTE_U
        pte = leaf_hpa = leaf_gpa = leaf_granted = 0
        for k in range(self.levels - 1, -1, -1):
            entry_gpa = table + 4 * ((va >> (isa.PAGE_SHIFT + isa.LEVEL_BITS * k)) & 0x3FF)
            entry_hpa, granted = self.ept_translate(entry_gpa, EPT_R, False, va)
            if entry_hpa >= self.mem_bytes:
                raise Fault(isa.VEC_GP, 0)
            self.count_walk_ref(nested=False)
            pte = self.mem[entry_hpa >> 2]
            if not pte & isa.PTE_P:
                raise self.page_fault(va, access, cpl, present=False)
            if not pte & isa.PTE_A:
                if not granted & EPT_W:         # setting A writes the guest's table
                    raise EPTViolation(entry_gpa, va, EPTQ_WRITE | (granted << EPTQ_PERM_SHIFT)
                                       | EPTQ_GVA_VALID)
                pte |= isa.PTE_A
                self.mem[entry_hpa >> 2] = pte
            perm &= pte
            table = pte & isa.PTE_FRAME_MASK
            leaf_hpa, leaf_gpa, leaf_granted = entry_hpa, entry_gpa, granted
        if (write and not perm & isa.PTE_W) or (cpl == 3 and not perm & isa.PTE_U):
            raise self.page_fault(va, access, cpl, present=True)
        hpa, granted = self.ept_translate(table | (va & 0xFFF), need, True, va)
        if write and not pte & isa.PTE_D:
            if not leaf_granted & EPT_W:        # setting D writes the guest's leaf table
                raise EPTViolation(leaf_gpa, va, EPTQ_WRITE
                                   | (leaf_granted << EPTQ_PERM_SHIFT) | EPTQ_GVA_VALID)
            pte |= isa.PTE_D
            self.mem[leaf_hpa >> 2] = pte
        if hpa >= self.mem_bytes:
            raise Fault(isa.VEC_GP, 0)          # DECISION: no TLB fill beyond memory
        value = (hpa & isa.PTE_FRAME_MASK) | (perm & isa.PTE_U) | (pte & isa.PTE_D)
        if perm & isa.PTE_W and granted & EPT_W:
            value |= isa.PTE_W                  # writable only if both tables allow it
        self.tlb[2 * i], self.tlb[2 * i + 1] = key, value
        return hpa

    def read(self, va: int, access: str = READ, cpl: int | None = None) -> int:
        return self.mem[self.translate(va, access, cpl)]

    # ---- trap delivery ----------------------------------------------------------------------
    def stop(self, reason: int, vector: int | None = None, error: int = 0) -> int:
        if reason == S.STOP_TRIPLE_FAULT and self.vmx:
            # a triple fault in non-root operation exits (C_STOP_VECTOR/ERROR still name it)
            self.set_exit_info(S.EXIT_TRIPLE_FAULT)
            reason = S.STOP_VM_EXIT
        self.stop_reason = reason
        if vector is not None:
            self.stop_vector = vector
            self.stop_error = error
        self.trace_event(self.pc, S.TRACE_STOP, reason)
        return reason

    # ---- VM exits ---------------------------------------------------------------------------
    def set_exit_info(self, reason: int, qualification: int = 0) -> None:
        """The fields every VM exit writes (the others: see :data:`EXIT_INFO_DEFINED`)."""
        self.exit_reason = reason
        self.exit_qual = qualification & MASK
        self.idt_vectoring = 0

    def vm_exit(self, reason: int, qualification: int = 0, pc: int | None = None) -> int:
        """Leave the guest: nothing retires, pc stays at the exiting instruction (or ``pc``)."""
        if pc is not None:
            self.pc = pc & MASK
        self.set_exit_info(reason, qualification)
        return self.stop(S.STOP_VM_EXIT)

    def ept_exit(self, v: EPTViolation, instruction: int | None) -> int:
        """An EPT violation exit; ``instruction``: the word whose access exited (0: its fetch),
        ``None`` during event delivery (the caller records the IDT-vectoring information)."""
        self.set_exit_info(S.EXIT_EPT_VIOLATION, v.qualification)
        self.exit_gpa, self.exit_gla = v.gpa, v.gla & MASK
        if instruction is not None:
            self.exit_instr = instruction
        return self.stop(S.STOP_VM_EXIT)

    def exception_exit(self, vector: int, error: int, address: int | None, return_pc: int) -> int:
        """An exception whose bit is set in the exception bitmap goes to the monitor."""
        self.pc = return_pc & MASK
        self.set_exit_info(S.EXIT_EXCEPTION_NMI, address if vector == isa.VEC_PF else 0)
        self.exit_intr_info, self.exit_intr_error = vector, error
        if vector == isa.VEC_PF:
            self.exit_gla = address
        return self.stop(S.STOP_VM_EXIT)

    def delivery_probe(self, vector: int, error: int, return_pc: int, address: int | None = None,
                       injected: bool = False) -> int | None:
        """Exits during event delivery: translate what the delivery will touch, in its order
        (vector entry, then the five frame words), skipping what it would not reach.  An EPT
        violation, or a #PF the exception bitmap sends to the monitor, exits with the event as
        IDT-vectoring information; return that stop, or None to deliver natively (which then
        meets any other fault itself: a triple fault)."""
        if self.intercept[vector] or self.tvb == isa.NO_TVB:
            return None                         # native delivery reads no memory
        pf_exits = (self.exception_bitmap >> isa.VEC_PF) & 1
        try:
            handler = self.read(self.tvb + 4 * vector, READ, cpl=0)
            if handler == 0 or self.deliveries + 1 > MAX_DELIVERIES_IN_A_ROW:
                return None                     # native delivery stops before the pushes
            new_sp = self.ksp if self.cpl > 0 else self.regs[isa.SP]
            for n in range(5):
                self.translate(new_sp - 4 * (n + 1), WRITE, cpl=0)
            return None
        except EPTViolation as v:
            if vector == isa.VEC_PF and not injected:
                self.fault_addr = address       # CR2 was written as the delivery began
            self.pc = return_pc & MASK
            reason = self.ept_exit(v, instruction=None)
        except Fault as f:
            if f.vector != isa.VEC_PF or not pf_exits:
                return None
            if vector == isa.VEC_PF and not injected:
                self.fault_addr = address       # CR2 was written as the delivery began
            reason = self.exception_exit(isa.VEC_PF, f.error, f.address, return_pc)
        self.idt_vectoring = S.INJECT_VALID | vector
        self.idt_vectoring_error = error
        return reason

    def deliver(self, vector: int, error: int, return_pc: int, address: int | None = None,
                injected: bool = False) -> int:
        """Deliver a trap; return a stop reason (STOP_NONE when the handler now runs).

        ``address``: a #PF's faulting virtual address (written to FAULT_ADDR when the #PF
        really reaches the guest); ``injected``: the monitor injects the event at VM entry.
        """
        return_pc &= MASK
        if self.vmx:
            if not injected and vector < 32 and (self.exception_bitmap >> vector) & 1:
                return self.exception_exit(vector, error, address, return_pc)
            if not injected and vector == isa.VEC_TIMER and \
                    self.controls() & S.CTL_EXTINT_EXITING:
                return self.vm_exit(S.EXIT_EXTERNAL_INTERRUPT, pc=return_pc)
            reason = self.delivery_probe(vector, error, return_pc, address, injected)
            if reason is not None:
                return reason
        if vector == isa.VEC_PF:
            # the #PF reaches the guest (an injected one: the monitor has set FAULT_ADDR)
            if not injected:
                self.fault_addr = address
            self.count(S.EV_PAGE_FAULTS)
        self.count(S.EV_TRAPS)
        self.count(S.EV_VECTOR_BASE + vector)
        self.cycles += self.costs[S.K_TRAP]
        self.trace_event(return_pc, S.TRACE_TRAP, (vector << 32) | error)
        if self.intercept[vector]:
            self.pc = return_pc
            return self.stop(S.STOP_TRAP_EXIT, vector, error)
        if self.tvb == isa.NO_TVB:
            self.pc = return_pc
            return self.stop(S.STOP_UNHANDLED_TRAP, vector, error)
        try:
            handler = self.read(self.tvb + 4 * vector, READ, cpl=0)   # a supervisor read
        except Fault:
            self.pc = return_pc
            return self.stop(S.STOP_TRIPLE_FAULT, vector, error)
        if handler == 0:
            self.pc = return_pc
            return self.stop(S.STOP_UNHANDLED_TRAP, vector, error)
        # DECISION: the storm counter counts deliveries that reach a handler (the step-1 stops
        # above are not deliveries to the guest), and is checked here, in the contract's order.
        self.deliveries += 1
        if self.deliveries > MAX_DELIVERIES_IN_A_ROW:
            self.pc = return_pc
            return self.stop(S.STOP_TRIPLE_FAULT, vector, error)
        old_sp, old_cpl, old_flags = self.regs[isa.SP], self.cpl, self.if_ << 9
        new_sp = self.ksp if old_cpl > 0 else old_sp
        frame = (old_sp, old_flags, old_cpl, return_pc, error)   # pushed in this order
        try:
            slots = [self.translate(new_sp - 4 * (n + 1), WRITE, cpl=0) for n in range(5)]
        except Fault:
            self.pc = return_pc
            return self.stop(S.STOP_TRIPLE_FAULT, vector, error)
        for slot, value in zip(slots, frame, strict=True):
            self.mem[slot] = value & MASK
        self.regs[isa.SP] = (new_sp - 20) & MASK
        self.cpl = 0
        self.if_ = 0
        self.pc = handler
        return S.STOP_NONE

    # ---- the step ---------------------------------------------------------------------------
    def step(self) -> int:
        """One step of the contract; return the stop reason (STOP_NONE: keep going)."""
        # 1. timer
        if self.ticks >= self.timer_deadline:
            self.timer_pending = 1
            self.timer_deadline += self.timer_period
        # 2. interrupt (under external-interrupt exiting: whatever IF, and it exits)
        if self.timer_pending and (self.if_ or self.controls() & S.CTL_EXTINT_EXITING):
            self.timer_pending = 0
            return self.deliver(isa.VEC_TIMER, 0, self.pc)
        # VMX: interrupt-window exiting, at a boundary where the guest can take interrupts
        if self.controls() & S.CTL_INTWIN_EXITING and self.if_:
            return self.vm_exit(S.EXIT_INTERRUPT_WINDOW)
        # 3. stop checks
        if self.pc == self.until:
            return self.stop(S.STOP_UNTIL)
        if self._budget is not None and self._retired_in_run >= self._budget:
            return self.stop(S.STOP_BUDGET)
        # 4. fetch
        pc = self.pc
        try:
            word = self.read(pc, FETCH)
        except Fault as f:
            return self.raise_fault(f, pc)
        except EPTViolation as v:
            return self.ept_exit(v, instruction=0)       # no instruction word: 0
        # 5. execute
        opcode, a, b, imm = isa.decode(word)
        try:
            self.check_allowed(opcode)
            next_pc = self.EXECUTE[opcode](self, a, b, imm, word)
        except Fault as f:
            return self.raise_fault(f, pc)
        except EPTViolation as v:
            return self.ept_exit(v, instruction=word)
        except VMExit as e:
            self.exit_instr = word
            return self.vm_exit(e.reason, e.qualification)
        self.retire(opcode)
        self.pc = next_pc & MASK
        if opcode == isa.OP_SYSCALL:
            return self.deliver(isa.VEC_SYSCALL, 0, pc + 4)
        if opcode == isa.OP_HLT:
            return self.after_hlt()
        return S.STOP_NONE

    def raise_fault(self, f: Fault, pc: int) -> int:
        """Deliver an instruction's fault (a #PF sets FAULT_ADDR if it reaches the guest)."""
        return self.deliver(f.vector, f.error, pc, address=f.address)

    def check_allowed(self, opcode: int) -> None:
        if self.vmx and opcode == isa.OP_VMCALL:
            raise VMExit(S.EXIT_VMCALL)         # in any ring
        if opcode not in self.EXECUTE:
            raise Fault(isa.VEC_UD, 0)
        if self.cpl > 0 and (opcode in PRIVILEGED_OPS or (self.strict and opcode in SENSITIVE_OPS)):
            self.count(S.EV_PRIV_FAULTS)        # DECISION: strict-mode #GP counts here too
            raise Fault(isa.VEC_GP, 0)

    def retire(self, opcode: int) -> None:
        self.ticks += 1
        self.count(S.EV_INSTRUCTIONS)
        self.cycles += self.costs[opcode]
        self.count(S.EV_OP_BASE + opcode)
        self.deliveries = 0
        if self._budget is not None:
            self._retired_in_run += 1

    def after_hlt(self) -> int:
        self.count(S.EV_HLT)
        if self.if_ and self.timer_pending:
            return S.STOP_NONE                  # DECISION: wakes at once, nothing skipped
        if self.if_ and self.timer_period != 0:
            skipped = max(0, self.timer_deadline - self.ticks)
            self.ticks += skipped
            self.count(S.EV_IDLE_TICKS, skipped)
            self.cycles += self.costs[S.K_IDLE_TICK] * skipped
            return S.STOP_NONE
        return self.stop(S.STOP_HALT)

    def run(self, budget: int, until: int | None = None) -> int:
        """Run until a stop; return the stop reason (a ``STOP_*`` constant)."""
        self.until = -1 if until is None else until
        self.stop_reason = S.STOP_NONE
        self._budget = budget
        self._retired_in_run = 0
        try:
            if self.vmx and self.inject & S.INJECT_VALID:
                # VM-entry event injection, before the first step; never an exception-bitmap exit
                vector, self.inject = self.inject & 0xFF, 0
                reason = self.deliver(vector, self.inject_error, self.pc, injected=True)
                if reason != S.STOP_NONE:
                    return reason
            while True:
                reason = self.step()
                if reason != S.STOP_NONE:
                    return reason
        finally:
            self._budget = None

    # ---- instructions -----------------------------------------------------------------------
    # Each returns the next pc.  All reads and translations come first, all writes last, so a
    # Fault raised part-way leaves the architectural state unchanged.
    def set_reg(self, r: int, value: int) -> None:
        self.regs[r] = value & MASK

    def op_nop(self, a, b, imm, word):
        return self.pc + 4

    def op_mov(self, a, b, imm, word):
        self.set_reg(a, self.regs[b])
        return self.pc + 4

    def op_movi(self, a, b, imm, word):
        self.set_reg(a, isa.sign16(imm))
        return self.pc + 4

    def op_lui(self, a, b, imm, word):
        self.set_reg(a, imm << 16)
        return self.pc + 4

    def alu3(self, a, b, imm, fn):
        self.set_reg(a, fn(self.regs[b], self.regs[imm & 0xF]))
        return self.pc + 4

    def op_add(self, a, b, imm, word):
        return self.alu3(a, b, imm, lambda x, y: x + y)

    def op_sub(self, a, b, imm, word):
        return self.alu3(a, b, imm, lambda x, y: x - y)

    def op_and(self, a, b, imm, word):
        return self.alu3(a, b, imm, lambda x, y: x & y)

    def op_or(self, a, b, imm, word):
        return self.alu3(a, b, imm, lambda x, y: x | y)

    def op_xor(self, a, b, imm, word):
        return self.alu3(a, b, imm, lambda x, y: x ^ y)

    def op_shl(self, a, b, imm, word):
        return self.alu3(a, b, imm, lambda x, y: x << (y & 31))

    def op_shr(self, a, b, imm, word):
        return self.alu3(a, b, imm, lambda x, y: x >> (y & 31))

    def op_sar(self, a, b, imm, word):
        return self.alu3(a, b, imm, lambda x, y: signed(x) >> (y & 31))

    def op_mul(self, a, b, imm, word):
        return self.alu3(a, b, imm, lambda x, y: x * y)

    def divide(self, a, b, imm, fn):
        divisor = self.regs[imm & 0xF]
        if divisor == 0:
            raise Fault(isa.VEC_DE, 0)
        self.set_reg(a, fn(self.regs[b], divisor))
        return self.pc + 4

    def op_div(self, a, b, imm, word):
        return self.divide(a, b, imm, lambda x, y: x // y)

    def op_mod(self, a, b, imm, word):
        return self.divide(a, b, imm, lambda x, y: x % y)

    def op_slt(self, a, b, imm, word):
        return self.alu3(a, b, imm, lambda x, y: int(signed(x) < signed(y)))

    def op_sltu(self, a, b, imm, word):
        return self.alu3(a, b, imm, lambda x, y: int(x < y))

    def op_addi(self, a, b, imm, word):
        self.set_reg(a, self.regs[b] + isa.sign16(imm))
        return self.pc + 4

    def op_andi(self, a, b, imm, word):
        self.set_reg(a, self.regs[b] & imm)
        return self.pc + 4

    def op_ori(self, a, b, imm, word):
        self.set_reg(a, self.regs[b] | imm)
        return self.pc + 4

    def op_xori(self, a, b, imm, word):
        self.set_reg(a, self.regs[b] ^ imm)
        return self.pc + 4

    def op_shli(self, a, b, imm, word):
        self.set_reg(a, self.regs[b] << (imm & 31))
        return self.pc + 4

    def op_shri(self, a, b, imm, word):
        self.set_reg(a, self.regs[b] >> (imm & 31))
        return self.pc + 4

    def op_sari(self, a, b, imm, word):
        self.set_reg(a, signed(self.regs[b]) >> (imm & 31))
        return self.pc + 4

    def op_ld(self, a, b, imm, word):
        value = self.read(self.regs[b] + isa.sign16(imm), READ)
        self.set_reg(a, value)
        return self.pc + 4

    def op_st(self, a, b, imm, word):
        slot = self.translate(self.regs[b] + isa.sign16(imm), WRITE)
        self.mem[slot] = self.regs[a]
        return self.pc + 4

    def push(self, value: int) -> None:
        """Write ``value`` at sp - 4, then sp -= 4 (one translated access)."""
        slot = self.translate(self.regs[isa.SP] - 4, WRITE)
        self.mem[slot] = value & MASK
        self.set_reg(isa.SP, self.regs[isa.SP] - 4)

    def pop(self) -> int:
        value = self.read(self.regs[isa.SP], READ)
        self.set_reg(isa.SP, self.regs[isa.SP] + 4)
        return value

    def op_push(self, a, b, imm, word):
        self.push(self.regs[a])
        return self.pc + 4

    def op_pop(self, a, b, imm, word):
        value = self.pop()          # sp += 4 first, so POP sp loads the popped value
        self.set_reg(a, value)
        return self.pc + 4

    def branch(self, imm, taken: bool):
        return self.pc + 4 + 4 * isa.sign16(imm) if taken else self.pc + 4

    def op_beq(self, a, b, imm, word):
        return self.branch(imm, self.regs[a] == self.regs[b])

    def op_bne(self, a, b, imm, word):
        return self.branch(imm, self.regs[a] != self.regs[b])

    def op_blt(self, a, b, imm, word):
        return self.branch(imm, signed(self.regs[a]) < signed(self.regs[b]))

    def op_bge(self, a, b, imm, word):
        return self.branch(imm, signed(self.regs[a]) >= signed(self.regs[b]))

    def op_bltu(self, a, b, imm, word):
        return self.branch(imm, self.regs[a] < self.regs[b])

    def op_bgeu(self, a, b, imm, word):
        return self.branch(imm, self.regs[a] >= self.regs[b])

    def op_jmp(self, a, b, imm, word):
        return self.pc + 4 + 4 * isa.sign24(word)

    def op_jr(self, a, b, imm, word):
        return self.regs[a]

    def op_call(self, a, b, imm, word):
        self.push(self.pc + 4)
        return self.pc + 4 + 4 * isa.sign24(word)

    def op_callr(self, a, b, imm, word):
        target = self.regs[a]       # read before the push (CALLR sp jumps to the old sp)
        self.push(self.pc + 4)
        return target

    def op_ret(self, a, b, imm, word):
        return self.pop()

    def op_syscall(self, a, b, imm, word):
        return self.pc + 4          # the step delivers vector 0x80 after the retire

    def pop_frame(self):
        """Read the five-word trap frame at sp: (error, pc, cpl, flags, sp)."""
        sp = self.regs[isa.SP]
        return [self.read(sp + 4 * n, READ) for n in range(5)]

    def op_sysret(self, a, b, imm, word):
        _, pc, _, _, sp = self.pop_frame()
        self.cpl, self.if_ = 3, 1
        self.set_reg(isa.SP, sp)
        self.count(S.EV_SYSRET)
        return pc

    def op_iret(self, a, b, imm, word):
        _, pc, cpl, flags, sp = self.pop_frame()
        self.cpl, self.if_ = cpl & 3, (flags >> 9) & 1
        self.set_reg(isa.SP, sp)
        self.count(S.EV_IRET)
        return pc

    def op_hlt(self, a, b, imm, word):
        if self.controls() & S.CTL_HLT_EXITING:
            raise VMExit(S.EXIT_HLT)
        return self.pc + 4          # the step handles the idle skip after the retire

    def io_exit(self, port: int, is_in: bool) -> None:
        if self.controls() & S.CTL_IO_EXITING:     # qualification: port, direction, size 4
            raise VMExit(S.EXIT_IO_INSTRUCTION, port << 16 | (8 if is_in else 0) | 3)

    def op_in(self, a, b, imm, word):
        self.io_exit(imm, is_in=True)
        port = imm
        if port == isa.PORT_CONSOLE:
            value = 0
        elif port == isa.PORT_TIMER:
            value = self.timer_period
        elif port == isa.PORT_TICKS:
            value = self.ticks & MASK
        elif port == isa.PORT_BLK_SECTOR:
            value = self.blk_sector
        elif port == isa.PORT_BLK_BUFFER:
            value = self.blk_buffer
        elif port == isa.PORT_BLK_COMMAND:
            value = self.blk_status
        elif port == isa.PORT_BLK_SIZE:
            value = self.disk_sectors
        else:
            value = 0xFFFFFFFF
        self.set_reg(a, value)
        self.count(S.EV_IO_IN)              # DECISION: reads are counted, not traced
        return self.pc + 4

    def op_out(self, a, b, imm, word):
        self.io_exit(imm, is_in=False)
        port, value = imm, self.regs[a]
        if port == isa.PORT_CONSOLE:
            if len(self.console) < self.console_size:
                self.console.append(value & 0xFF)
            else:
                self.count(S.EV_CONSOLE_DROPPED)
        elif port == isa.PORT_TIMER:
            self.timer_period = value
            self.timer_deadline = S.NEVER if value == 0 else self.ticks + value
        elif port == isa.PORT_BLK_SECTOR:
            self.blk_sector = value
        elif port == isa.PORT_BLK_BUFFER:
            self.blk_buffer = value
        elif port == isa.PORT_BLK_COMMAND:
            self.block_command(value)
        self.count(S.EV_IO_OUT)
        self.trace_event(self.pc, S.TRACE_IO, (port << 32) | value)
        return self.pc + 4

    def block_command(self, command: int) -> None:
        """Synchronous DMA of one sector between the disk and physical memory."""
        words = S.BLK_SECTOR_WORDS
        if command not in (isa.BLK_READ, isa.BLK_WRITE):
            self.blk_status = S.BLK_BAD_COMMAND
            return
        start = (self.blk_buffer & ~3) // 4
        if self.blk_sector >= self.disk_sectors or 4 * (start + words) > self.mem_bytes:
            self.blk_status = S.BLK_BAD_ADDRESS
            return
        first = self.blk_sector * words
        if command == isa.BLK_READ:
            self.mem[start:start + words] = self.disk[first:first + words]
            self.count(S.EV_BLK_READS)
        else:
            self.disk[first:first + words] = self.mem[start:start + words]
            self.count(S.EV_BLK_WRITES)
        self.cycles += self.costs[S.K_BLK_SECTOR]
        self.blk_status = S.BLK_OK

    def op_cli(self, a, b, imm, word):
        self.if_ = 0
        return self.pc + 4

    def op_sti(self, a, b, imm, word):
        self.if_ = 1
        return self.pc + 4

    def op_wrcr(self, a, b, imm, word):
        if imm >= isa.NUM_CRS:
            raise Fault(isa.VEC_GP, 0)
        if (imm == isa.CR_PTBR and self.controls() & S.CTL_CR3_LOAD_EXITING) or \
                (imm == isa.CR_PAGING and self.controls() & S.CTL_CR0_PG_EXITING):
            raise VMExit(S.EXIT_CR_ACCESS, imm | 0 << 4 | a << 8)      # type 0: a write
        value = self.regs[a]
        setattr(self, self._CR_ATTRS[imm], value)
        self.count(S.EV_CR_WRITES)
        if imm == isa.CR_PTBR:
            self.count(S.EV_PTBR_WRITES)
        if imm == isa.CR_PAGING:
            self.count(S.EV_PAGING_WRITES)
        if imm == isa.CR_PAGING or (imm == isa.CR_PTBR and value & isa.ASID_MASK == 0):
            self.tlb_clear_all()
        return self.pc + 4

    def op_rdcr(self, a, b, imm, word):
        if imm >= isa.NUM_CRS:
            raise Fault(isa.VEC_GP, 0)
        if imm == isa.CR_PTBR and self.controls() & S.CTL_CR3_STORE_EXITING:
            raise VMExit(S.EXIT_CR_ACCESS, imm | 1 << 4 | a << 8)      # type 1: a read
        if imm == isa.CR_PAGING and self.controls() & S.CTL_CR0_PG_EXITING:
            self.set_reg(a, self.cr0_shadow)    # the paging state the guest believes it has
        else:
            self.set_reg(a, getattr(self, self._CR_ATTRS[imm]))
        self.count(S.EV_CR_READS)
        if imm == isa.CR_PTBR:
            self.count(S.EV_PTBR_READS)
        return self.pc + 4

    def op_invlpg(self, a, b, imm, word):
        if self.controls() & S.CTL_INVLPG_EXITING:
            raise VMExit(S.EXIT_INVLPG, self.regs[a])
        key, i = self.tlb_key_and_index(self.regs[a])
        if self.tlb[2 * i] == key:
            self.tlb[2 * i] = self.tlb[2 * i + 1] = 0
        self.count(S.EV_INVLPG)
        return self.pc + 4

    def op_tlbflush(self, a, b, imm, word):
        self.tlb_clear_all()
        return self.pc + 4

    def op_pushf(self, a, b, imm, word):
        self.push(self.if_ << 9)
        return self.pc + 4

    def op_popf(self, a, b, imm, word):
        new_if = (self.pop() >> 9) & 1
        if self.cpl == 0:
            self.if_ = new_if
        elif new_if != self.if_:
            self.count(S.EV_POPF_IGNORED)
        return self.pc + 4

    def op_getcpl(self, a, b, imm, word):
        self.set_reg(a, self.cpl)
        return self.pc + 4

    def op_rdtvb(self, a, b, imm, word):
        self.set_reg(a, self.tvb)
        return self.pc + 4

    # ---- export -----------------------------------------------------------------------------
    def ctrl_array(self) -> np.ndarray:
        ctrl = np.zeros(S.NUM_CTRL, dtype=np.int64)
        values = {
            S.C_PC: self.pc, S.C_CPL: self.cpl, S.C_IF: self.if_, S.C_PAGING: self.paging,
            S.C_PTBR: self.ptbr, S.C_FAULT_ADDR: self.fault_addr, S.C_TVB: self.tvb,
            S.C_KSP: self.ksp, S.C_SCRATCH: self.scratch, S.C_TICKS: self.ticks,
            S.C_TIMER_PERIOD: self.timer_period, S.C_TIMER_DEADLINE: self.timer_deadline,
            S.C_TIMER_PENDING: self.timer_pending, S.C_STRICT: self.strict,
            S.C_LEVELS: self.levels, S.C_CYCLES: self.cycles, S.C_STOP_REASON: self.stop_reason,
            S.C_STOP_VECTOR: self.stop_vector, S.C_STOP_ERROR: self.stop_error,
            S.C_CONSOLE_LEN: len(self.console), S.C_TRACE_POS: self.trace_pos,
            S.C_UNTIL: self.until, S.C_DELIVERIES: self.deliveries,
            S.C_MEM_BYTES: self.mem_bytes, S.C_DISK_SECTORS: self.disk_sectors,
            S.C_BLK_SECTOR: self.blk_sector, S.C_BLK_BUFFER: self.blk_buffer,
            S.C_BLK_STATUS: self.blk_status, S.C_DATA_LIMIT: self.data_limit,
        }
        values.update({index: getattr(self, name) for index, name in self.CTRL_ATTRS.items()
                       if index not in values})
        for index, value in values.items():
            ctrl[index] = value
        return ctrl

    def console_bytes(self) -> bytes:
        return bytes(self.console)

    def export(self) -> dict:
        """The full state as arrays in :mod:`kernel_sim.state`'s layout."""
        console = np.zeros(self.console_size, dtype=np.uint8)
        console[:len(self.console)] = list(self.console)
        return dict(
            regs=np.array(self.regs, dtype=np.int64),
            ctrl=self.ctrl_array(),
            mem=np.array(self.mem + self.disk, dtype=np.uint32),    # the disk follows memory
            tlb=np.array(self.tlb, dtype=np.int64),
            counters=np.array(self.counters, dtype=np.int64),
            console=console,
            trace=np.array(self.trace, dtype=np.int64).reshape(self.trace_size, 4),
            intercept=np.array(self.intercept, dtype=np.uint8),
            costs=np.array(self.costs, dtype=np.int64),
        )


def _build_dispatch():
    table = {}
    for ins in isa.MACHINE_INSTRUCTIONS:
        table[ins.opcode] = getattr(NaiveMachine, "op_" + ins.mnemonic.lower())
    return table


NaiveMachine.EXECUTE = _build_dispatch()
