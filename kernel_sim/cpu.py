"""The CPU kernel: fetch, decode, execute -- one jitted loop over the machine's NumPy arrays.

:func:`run_native` runs the machine exactly as :mod:`kernel_sim.state` specifies, until the
instruction budget runs out, the CPU halts for good, or something needs a higher layer (an
unhandled or intercepted trap).  The state lives in arrays; the loop keeps the hottest values
(pc, ring, interrupt flag, tick count) in local variables and writes them back on every slow path
and at exit.

Simulated cycles are not added instruction by instruction.  Every cost in the model is
*(number of events) x (cost per event)*, so the loop only counts events (retired instructions per
opcode, TLB misses, walk references, traps, idle ticks) and :func:`charge_cycles` turns the counts
accumulated during the run into cycles at exit.  Same result, less work on the hot path.

Slow paths -- trap delivery, control-register writes, HLT -- are separate functions so that the
hot loop stays small.  Opcode and index constants are repeated here on purpose: Numba freezes
module globals at compile time and its cache only notices edits to this file.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .mmu import (
    ACC_FETCH,
    ACC_WRITE,
    BUS_ERROR,
    EPT_VIOLATION,
    FRAME_MASK,
    PTE_D,
    PTE_U,
    PTE_W,
    flush_all,
    invalidate_page,
    tlb_miss,
    tlb_tag,
    translate,
)
from .state import (
    C_BLK_BUFFER,
    C_BLK_SECTOR,
    C_CR0_SHADOW,
    C_EPTP,
    C_EXCEPTION_BITMAP,
    C_EXIT_GLA,
    C_EXIT_INSTR,
    C_EXIT_INTR_ERROR,
    C_EXIT_INTR_INFO,
    C_EXIT_QUAL,
    C_EXIT_REASON,
    C_IDT_VECTORING,
    C_IDT_VECTORING_ERROR,
    C_INJECT,
    C_INJECT_ERROR,
    C_VMX,
    C_VMX_CONTROLS,
    CTL_CR0_PG_EXITING,
    CTL_CR3_LOAD_EXITING,
    CTL_CR3_STORE_EXITING,
    CTL_EXTINT_EXITING,
    CTL_HLT_EXITING,
    CTL_INTWIN_EXITING,
    CTL_INVLPG_EXITING,
    CTL_IO_EXITING,
    EV_PAGING_WRITES,
    EV_PTBR_READS,
    EV_PTBR_WRITES,
    EXIT_CR_ACCESS,
    EXIT_EPT_VIOLATION,
    EXIT_EXCEPTION_NMI,
    EXIT_EXTERNAL_INTERRUPT,
    EXIT_HLT,
    EXIT_INTERRUPT_WINDOW,
    EXIT_INVLPG,
    EXIT_IO_INSTRUCTION,
    EXIT_TRIPLE_FAULT,
    EXIT_VMCALL,
    INJECT_VALID,
    STOP_VM_EXIT,
    C_BLK_STATUS,
    C_CONSOLE_LEN,
    C_CPL,
    C_CYCLES,
    C_DATA_LIMIT,
    C_DELIVERIES,
    C_DISK_SECTORS,
    C_FAULT_ADDR,
    C_IF,
    C_KSP,
    C_LEVELS,
    C_MEM_BYTES,
    C_PAGING,
    C_PC,
    C_PTBR,
    C_SCRATCH,
    C_STOP_ERROR,
    C_STOP_REASON,
    C_STOP_VECTOR,
    C_STRICT,
    C_TICKS,
    C_TIMER_DEADLINE,
    C_TIMER_PENDING,
    C_TIMER_PERIOD,
    C_TRACE_POS,
    C_TVB,
    C_UNTIL,
    BLK_BAD_ADDRESS,
    BLK_BAD_COMMAND,
    BLK_OK,
    BLK_SECTOR_WORDS,
    EV_BLK_READS,
    EV_BLK_WRITES,
    EV_CONSOLE_DROPPED,
    EV_CR_READS,
    EV_CR_WRITES,
    EV_HLT,
    EV_IDLE_TICKS,
    EV_INSTRUCTIONS,
    EV_INVLPG,
    EV_IO_IN,
    EV_IO_OUT,
    EV_IRET,
    EV_OP_BASE,
    EV_PAGE_FAULTS,
    EV_POPF_IGNORED,
    EV_PRIV_FAULTS,
    EV_SYSRET,
    EV_TLB_HIT,
    EV_TLB_MISS,
    EV_TRAPS,
    EV_VECTOR_BASE,
    EV_WALK_REFS,
    K_BLK_SECTOR,
    K_IDLE_TICK,
    K_TLB_MISS,
    K_TRAP,
    K_WALK_REF,
    NEVER,
    STOP_BUDGET,
    STOP_HALT,
    STOP_NONE,
    STOP_TRAP_EXIT,
    STOP_TRIPLE_FAULT,
    STOP_UNHANDLED_TRAP,
    STOP_UNTIL,
    TRACE_IO,
    TRACE_STOP,
    TRACE_TRAP,
)

MASK32 = 0xFFFFFFFF
NO_TVB = 0xFFFFFFFF
FLAG_IF = 1 << 9
SP = 15
VEC_DE = 0
VEC_UD = 6
VEC_GP = 13
VEC_PF = 14
VEC_TIMER = 32
VEC_SYSCALL = 0x80
MAX_DELIVERIES = 16
PORT_CONSOLE = 0x10
PORT_TIMER = 0x20
PORT_TICKS = 0x21
PORT_BLK_SECTOR = 0x30
PORT_BLK_BUFFER = 0x31
PORT_BLK_COMMAND = 0x32
PORT_BLK_SIZE = 0x33
BLK_READ = 1
BLK_WRITE = 2

# opcodes (must equal kernel_sim.isa; tests/test_isa.py checks that they do)
OP_NOP, OP_MOV, OP_MOVI, OP_LUI = 0x01, 0x02, 0x03, 0x04
OP_ADD, OP_SUB, OP_AND, OP_OR, OP_XOR = 0x10, 0x11, 0x12, 0x13, 0x14
OP_SHL, OP_SHR, OP_SAR, OP_MUL, OP_DIV, OP_MOD, OP_SLT, OP_SLTU = (
    0x15, 0x16, 0x17, 0x18, 0x19, 0x1A, 0x1B, 0x1C)
OP_ADDI, OP_ANDI, OP_ORI, OP_XORI, OP_SHLI, OP_SHRI, OP_SARI = (
    0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26)
OP_LD, OP_ST, OP_PUSH, OP_POP = 0x30, 0x31, 0x32, 0x33
OP_BEQ, OP_BNE, OP_BLT, OP_BGE, OP_BLTU, OP_BGEU = 0x40, 0x41, 0x42, 0x43, 0x44, 0x45
OP_JMP, OP_JR, OP_CALL, OP_CALLR, OP_RET = 0x46, 0x47, 0x48, 0x49, 0x4A
OP_SYSCALL, OP_SYSRET, OP_IRET, OP_HLT, OP_IN, OP_OUT = 0x50, 0x51, 0x52, 0x53, 0x54, 0x55
OP_CLI, OP_STI, OP_WRCR, OP_RDCR, OP_INVLPG, OP_TLBFLUSH = 0x56, 0x57, 0x58, 0x59, 0x5A, 0x5B
OP_PUSHF, OP_POPF, OP_GETCPL, OP_RDTVB = 0x60, 0x61, 0x62, 0x63
OP_VMCALL = 0xF0
NUM_CRS = 6
NO_ACCESS = -1     # the instruction touches no data memory
MISS = -5000       # marker: the inline TLB test could not answer
VM_EXIT_PENDING = 1000  # "vector" marker: the instruction causes a VM exit (C_EXIT_* are set)


@njit(cache=True)
def s32(x):
    """A 32-bit word read as a signed integer."""
    return x - ((x & 0x80000000) << 1)


@njit(cache=True)
def trace_event(ctrl, trace, kind, pc, detail):
    """Append one record to the bounded trace ring buffer."""
    n = trace.shape[0]
    if n == 0:
        return
    pos = ctrl[C_TRACE_POS]
    j = pos % n
    trace[j, 0] = ctrl[C_TICKS]
    trace[j, 1] = pc
    trace[j, 2] = kind
    trace[j, 3] = detail
    ctrl[C_TRACE_POS] = pos + 1


@njit(cache=True)
def cr_index(cr):
    """Control-register number -> ctrl[] index, or -1 if there is no such register."""
    if cr == 0:
        return C_PAGING
    if cr == 1:
        return C_PTBR
    if cr == 2:
        return C_FAULT_ADDR
    if cr == 3:
        return C_TVB
    if cr == 4:
        return C_KSP
    if cr == 5:
        return C_SCRATCH
    return -1


@njit(cache=True)
def delivery_exit(vec, err, rp, regs, ctrl, mem, tlb, counters, intercept, injected):
    """VMX non-root: does delivering ``vec`` cause a VM exit?  Returns STOP_VM_EXIT or STOP_NONE.

    An exception in the exception bitmap, or the timer under external-interrupt exiting, exits
    instead of being delivered (not for an event the monitor injects).  Otherwise the addresses
    the delivery will touch are translated first, in native order: an EPT violation, or a #PF
    the bitmap sends to the monitor, exits with the event recorded as IDT-vectoring information
    so that the monitor can re-inject it once the mapping is fixed.
    """
    if injected == 0:
        if vec < 32 and ((ctrl[C_EXCEPTION_BITMAP] >> vec) & 1) != 0:
            ctrl[C_PC] = rp
            ctrl[C_EXIT_REASON] = EXIT_EXCEPTION_NMI
            ctrl[C_EXIT_INTR_INFO] = vec
            ctrl[C_EXIT_INTR_ERROR] = err
            ctrl[C_EXIT_QUAL] = ctrl[C_EXIT_GLA] if vec == VEC_PF else 0
            return STOP_VM_EXIT
        if vec == VEC_TIMER and (ctrl[C_VMX_CONTROLS] & CTL_EXTINT_EXITING) != 0:
            ctrl[C_PC] = rp
            ctrl[C_EXIT_REASON] = EXIT_EXTERNAL_INTERRUPT
            ctrl[C_EXIT_QUAL] = 0
            return STOP_VM_EXIT
    tvb = ctrl[C_TVB]
    if tvb == NO_TVB or intercept[vec] != 0:
        return STOP_NONE                      # native delivery would read no memory
    paging = ctrl[C_PAGING] & 1
    ptbr = ctrl[C_PTBR]
    levels = ctrl[C_LEVELS]
    mem_bytes = ctrl[C_MEM_BYTES]
    mask = (tlb.shape[0] >> 1) - 1
    va = (tvb + 4 * vec) & MASK32
    pa = translate(va, 0, 0, paging, ptbr, levels, mem, mem_bytes, tlb, mask, counters, ctrl)
    if pa >= 0:
        if mem[pa >> 2] == 0 or ctrl[C_DELIVERIES] + 1 > MAX_DELIVERIES:
            return STOP_NONE
        sp = regs[SP]
        if ctrl[C_CPL] > 0:
            sp = ctrl[C_KSP]
        for k in range(5):
            va = (sp - 4 * (k + 1)) & MASK32
            pa = translate(va, ACC_WRITE, 0, paging, ptbr, levels, mem, mem_bytes, tlb, mask,
                           counters, ctrl)
            if pa < 0:
                break
    if pa >= 0 or pa == BUS_ERROR:
        return STOP_NONE
    if vec == VEC_PF and injected == 0:
        ctrl[C_FAULT_ADDR] = ctrl[C_EXIT_GLA]       # CR2 was written as the delivery began
    if pa == EPT_VIOLATION:
        ctrl[C_EXIT_REASON] = EXIT_EPT_VIOLATION
        ctrl[C_EXIT_GLA] = va
    elif ((ctrl[C_EXCEPTION_BITMAP] >> VEC_PF) & 1) != 0:
        ctrl[C_EXIT_REASON] = EXIT_EXCEPTION_NMI
        ctrl[C_EXIT_INTR_INFO] = VEC_PF
        ctrl[C_EXIT_INTR_ERROR] = -1 - pa
        ctrl[C_EXIT_QUAL] = va
        ctrl[C_EXIT_GLA] = va
    else:
        return STOP_NONE                      # a guest #PF while delivering: a triple fault
    ctrl[C_IDT_VECTORING] = INJECT_VALID | vec
    ctrl[C_IDT_VECTORING_ERROR] = err
    ctrl[C_PC] = rp
    return STOP_VM_EXIT


@njit(cache=True)
def deliver(vec, err, rp, regs, ctrl, mem, tlb, counters, trace, intercept, injected):
    """Deliver trap ``vec`` (error code ``err``, return pc ``rp``) through the vector table.

    Reads pc, ring, IF and paging state from ``ctrl`` (the caller has synced them) and writes the
    new state back.  Returns STOP_NONE if the handler now runs, or the reason the run must stop.
    In VMX non-root operation the event may exit instead (:func:`delivery_exit`); ``injected``
    (1: the monitor injects it at VM entry) exempts it from the exception bitmap.
    """
    if ctrl[C_VMX] != 0:
        if delivery_exit(vec, err, rp, regs, ctrl, mem, tlb, counters, intercept,
                         injected) != STOP_NONE:
            return STOP_VM_EXIT
        if vec == VEC_PF:
            if injected == 0:
                ctrl[C_FAULT_ADDR] = ctrl[C_EXIT_GLA]   # CR2 is written as the #PF is delivered
            counters[EV_PAGE_FAULTS] += 1           # a #PF reaches the guest (even injected)
    counters[EV_VECTOR_BASE + vec] += 1
    counters[EV_TRAPS] += 1
    trace_event(ctrl, trace, TRACE_TRAP, rp, (vec << 32) | err)
    ctrl[C_PC] = rp
    if intercept[vec] != 0:
        ctrl[C_STOP_VECTOR] = vec
        ctrl[C_STOP_ERROR] = err
        return STOP_TRAP_EXIT
    tvb = ctrl[C_TVB]
    if tvb == NO_TVB:
        ctrl[C_STOP_VECTOR] = vec
        ctrl[C_STOP_ERROR] = err
        return STOP_UNHANDLED_TRAP
    paging = ctrl[C_PAGING] & 1
    ptbr = ctrl[C_PTBR]
    levels = ctrl[C_LEVELS]
    mem_bytes = ctrl[C_MEM_BYTES]
    mask = (tlb.shape[0] >> 1) - 1
    pa = translate((tvb + 4 * vec) & MASK32, 0, 0, paging, ptbr, levels, mem, mem_bytes, tlb,
                   mask, counters, ctrl)
    if pa < 0:
        ctrl[C_STOP_VECTOR] = vec
        ctrl[C_STOP_ERROR] = err
        return STOP_TRIPLE_FAULT
    handler = np.int64(mem[pa >> 2])
    if handler == 0:
        ctrl[C_STOP_VECTOR] = vec
        ctrl[C_STOP_ERROR] = err
        return STOP_UNHANDLED_TRAP
    # a fault storm: the guest's handlers keep faulting before retiring anything
    ctrl[C_DELIVERIES] += 1
    if ctrl[C_DELIVERIES] > MAX_DELIVERIES:
        ctrl[C_STOP_VECTOR] = vec
        ctrl[C_STOP_ERROR] = err
        return STOP_TRIPLE_FAULT
    old_cpl = ctrl[C_CPL]
    old_sp = regs[SP]
    sp = old_sp
    if old_cpl > 0:
        sp = ctrl[C_KSP]
    frame = np.empty(5, np.int64)
    frame[0] = old_sp
    frame[1] = ctrl[C_IF] << 9
    frame[2] = old_cpl
    frame[3] = rp
    frame[4] = err
    where = np.empty(5, np.int64)
    for k in range(5):
        where[k] = translate((sp - 4 * (k + 1)) & MASK32, ACC_WRITE, 0, paging, ptbr, levels,
                             mem, mem_bytes, tlb, mask, counters, ctrl)
        if where[k] < 0:
            ctrl[C_STOP_VECTOR] = vec
            ctrl[C_STOP_ERROR] = err
            return STOP_TRIPLE_FAULT
    for k in range(5):
        mem[where[k] >> 2] = frame[k]
    regs[SP] = (sp - 20) & MASK32
    ctrl[C_CPL] = 0
    ctrl[C_IF] = 0
    ctrl[C_PC] = handler
    return STOP_NONE


@njit(cache=True)
def vmx_fault(code, va, ctrl):
    """:func:`raise_fault` in VMX non-root operation: an EPT violation becomes
    ``(VM_EXIT_PENDING, 0)``; a page fault only notes its address in ``C_EXIT_GLA`` (CR2 and the
    page-fault count change when the fault is really delivered to the guest: it may exit)."""
    if code == EPT_VIOLATION:
        ctrl[C_EXIT_REASON] = EXIT_EPT_VIOLATION
        ctrl[C_EXIT_GLA] = va
        return VM_EXIT_PENDING, 0
    ctrl[C_EXIT_GLA] = va
    return VEC_PF, -1 - code


@njit(cache=True)
def raise_fault(code, va, ctrl, counters):
    """Turn a translate() fault code into (vector, error code); record page-fault state
    (in VMX non-root operation see :func:`vmx_fault`)."""
    if code == BUS_ERROR:
        return VEC_GP, 0
    if ctrl[C_VMX] != 0:
        return vmx_fault(code, va, ctrl)
    ctrl[C_FAULT_ADDR] = va
    counters[EV_PAGE_FAULTS] += 1
    return VEC_PF, -1 - code


@njit(cache=True)
def charge_cycles(ctrl, costs, counters, before, ops_before):
    """Add the cycles of everything counted since ``before``/``ops_before`` to ctrl[C_CYCLES]."""
    cyc = 0
    for op in range(256):
        cyc += (counters[EV_OP_BASE + op] - ops_before[op]) * costs[op]
    cyc += (counters[EV_TLB_MISS] - before[0]) * costs[K_TLB_MISS]
    cyc += (counters[EV_WALK_REFS] - before[1]) * costs[K_WALK_REF]
    cyc += (counters[EV_TRAPS] - before[2]) * costs[K_TRAP]
    cyc += (counters[EV_IDLE_TICKS] - before[3]) * costs[K_IDLE_TICK]
    cyc += (counters[EV_BLK_READS] + counters[EV_BLK_WRITES] - before[4]) * costs[K_BLK_SECTOR]
    ctrl[C_CYCLES] += cyc


@njit(cache=True)
def port_in(port, ctrl, counters):
    counters[EV_IO_IN] += 1
    if port == PORT_TIMER:
        return ctrl[C_TIMER_PERIOD]
    if port == PORT_TICKS:
        return ctrl[C_TICKS] & MASK32
    if port == PORT_CONSOLE:
        return 0
    if port == PORT_BLK_SECTOR:
        return ctrl[C_BLK_SECTOR]
    if port == PORT_BLK_BUFFER:
        return ctrl[C_BLK_BUFFER]
    if port == PORT_BLK_COMMAND:
        return ctrl[C_BLK_STATUS]
    if port == PORT_BLK_SIZE:
        return ctrl[C_DISK_SECTORS]
    return MASK32


@njit(cache=True)
def block_command(command, ctrl, mem, counters):
    """The block device's synchronous DMA: copy one 512-byte sector between disk and memory."""
    if command != BLK_READ and command != BLK_WRITE:
        ctrl[C_BLK_STATUS] = BLK_BAD_COMMAND
        return
    sector = ctrl[C_BLK_SECTOR]
    buf = ctrl[C_BLK_BUFFER] & 0xFFFFFFFC
    if sector >= ctrl[C_DISK_SECTORS] or buf + 4 * BLK_SECTOR_WORDS > ctrl[C_MEM_BYTES]:
        ctrl[C_BLK_STATUS] = BLK_BAD_ADDRESS
        return
    disk = (ctrl[C_MEM_BYTES] >> 2) + sector * BLK_SECTOR_WORDS
    word = buf >> 2
    if command == BLK_READ:
        for k in range(BLK_SECTOR_WORDS):
            mem[word + k] = mem[disk + k]
        counters[EV_BLK_READS] += 1
    else:
        for k in range(BLK_SECTOR_WORDS):
            mem[disk + k] = mem[word + k]
        counters[EV_BLK_WRITES] += 1
    ctrl[C_BLK_STATUS] = BLK_OK


@njit(cache=True)
def port_out(port, value, pc, ctrl, mem, counters, console, trace):
    counters[EV_IO_OUT] += 1
    trace_event(ctrl, trace, TRACE_IO, pc, (port << 32) | value)
    if port == PORT_CONSOLE:
        n = ctrl[C_CONSOLE_LEN]
        if n < console.shape[0]:
            console[n] = value & 0xFF
            ctrl[C_CONSOLE_LEN] = n + 1
        else:
            counters[EV_CONSOLE_DROPPED] += 1
    elif port == PORT_TIMER:
        ctrl[C_TIMER_PERIOD] = value
        if value == 0:
            ctrl[C_TIMER_DEADLINE] = NEVER
        else:
            ctrl[C_TIMER_DEADLINE] = ctrl[C_TICKS] + value
    elif port == PORT_BLK_SECTOR:
        ctrl[C_BLK_SECTOR] = value
    elif port == PORT_BLK_BUFFER:
        ctrl[C_BLK_BUFFER] = value
    elif port == PORT_BLK_COMMAND:
        block_command(value, ctrl, mem, counters)


@njit(cache=True)
def return_from_trap(op, regs, ctrl, mem, tlb, counters):
    """IRET / SYSRET: read the five-word trap frame at sp, then commit.

    On success sets ctrl[C_PC], C_CPL, C_IF and sp and returns (-1, 0); on a fault while reading
    the frame changes nothing but the fault state and returns (vector, error code).
    """
    sp = regs[SP]
    paging = ctrl[C_PAGING] & 1
    mask = (tlb.shape[0] >> 1) - 1
    frame = np.empty(5, np.int64)
    for k in range(5):
        va = (sp + 4 * k) & MASK32
        p = translate(va, 0, ctrl[C_CPL], paging, ctrl[C_PTBR], ctrl[C_LEVELS], mem,
                      ctrl[C_MEM_BYTES], tlb, mask, counters, ctrl)
        if p < 0:
            return raise_fault(p, va, ctrl, counters)
        frame[k] = mem[p >> 2]
    ctrl[C_PC] = frame[1]
    regs[SP] = frame[4]
    if op == OP_IRET:
        counters[EV_IRET] += 1
        ctrl[C_CPL] = frame[2] & 3
        ctrl[C_IF] = (frame[3] >> 9) & 1
    else:
        counters[EV_SYSRET] += 1
        ctrl[C_CPL] = 3
        ctrl[C_IF] = 1
    return -1, 0


@njit(cache=True)
def run_native(regs, ctrl, mem, tlb, costs, counters, console, trace, intercept, budget):
    """Run the machine for at most ``budget`` retired instructions; return the stop reason.

    Also stored in ``ctrl[C_STOP_REASON]``.  See :mod:`kernel_sim.state` for the semantics.
    """
    before = np.empty(5, np.int64)
    before[0] = counters[EV_TLB_MISS]
    before[1] = counters[EV_WALK_REFS]
    before[2] = counters[EV_TRAPS]
    before[3] = counters[EV_IDLE_TICKS]
    before[4] = counters[EV_BLK_READS] + counters[EV_BLK_WRITES]
    ops_before = np.empty(256, np.int64)
    for op in range(256):
        ops_before[op] = counters[EV_OP_BASE + op]
    stop = execute(regs, ctrl, mem, tlb, counters, console, trace, intercept, budget)
    trace_event(ctrl, trace, TRACE_STOP, ctrl[C_PC], stop)
    charge_cycles(ctrl, costs, counters, before, ops_before)
    return stop


@njit(cache=True)
def execute(regs, ctrl, mem, tlb, counters, console, trace, intercept, budget):
    """The interpreter loop.

    Shape of one step: timer -> interrupt -> stop checks -> fetch -> decode and execute.  An
    instruction that touches memory (LD, ST, PUSH, POP, CALL, CALLR, RET, PUSHF, POPF) first
    computes its address ``va`` and access kind; one shared block then translates it and
    completes the instruction.  The TLB-hit test is written out inline at the two translation
    sites (fetch and data), and the loop calls no function on its hot path: with Numba, a call
    that takes arrays costs reference-count updates, which here would triple the time per step.
    """
    mem_bytes = ctrl[C_MEM_BYTES]
    tlb_mask = (tlb.shape[0] >> 1) - 1
    until = ctrl[C_UNTIL]
    strict = ctrl[C_STRICT]
    levels = ctrl[C_LEVELS]
    # hot state in locals
    pc = ctrl[C_PC]
    cpl = ctrl[C_CPL]
    iflag = ctrl[C_IF]
    paging = ctrl[C_PAGING] & 1
    ptbr = ctrl[C_PTBR]
    user_need = PTE_U if cpl == 3 else 0
    ticks = ctrl[C_TICKS]
    deadline = ctrl[C_TIMER_DEADLINE]
    data_limit = ctrl[C_DATA_LIMIT]
    # VMX non-root operation: the controls the VMCS loaded (all 0 on a bare machine)
    vmx = ctrl[C_VMX]
    controls = ctrl[C_VMX_CONTROLS] if vmx != 0 else 0
    extint = controls & CTL_EXTINT_EXITING
    intwin = controls & CTL_INTWIN_EXITING
    ept = 1 if (vmx != 0 and ctrl[C_EPTP] != 0) else 0
    xlate = paging | ept       # 0: addresses are physical (no TLB)
    asid_key = (tlb_tag(ptbr, ctrl) << 20) + 1
    retired = 0
    stop = STOP_NONE
    if vmx != 0 and (ctrl[C_INJECT] & INJECT_VALID) != 0:
        # VM-entry event injection: delivered through the guest's vector table, never exiting
        inject = ctrl[C_INJECT]
        ctrl[C_INJECT] = 0
        stop = deliver(inject & 0xFF, ctrl[C_INJECT_ERROR], pc, regs, ctrl, mem, tlb, counters,
                       trace, intercept, 1)
        pc = ctrl[C_PC]
        cpl = ctrl[C_CPL]
        iflag = ctrl[C_IF]
        user_need = PTE_U if cpl == 3 else 0

    while stop == STOP_NONE:
        # ---- 1-2. timer and interrupts ------------------------------------------------------
        if ticks >= deadline:
            ctrl[C_TIMER_PENDING] = 1
            deadline += ctrl[C_TIMER_PERIOD]
        if (iflag | extint) != 0 and ctrl[C_TIMER_PENDING] != 0:
            ctrl[C_TIMER_PENDING] = 0
            ctrl[C_PC] = pc
            ctrl[C_CPL] = cpl
            ctrl[C_IF] = iflag
            ctrl[C_TICKS] = ticks
            stop = deliver(VEC_TIMER, 0, pc, regs, ctrl, mem, tlb, counters, trace, intercept, 0)
            pc = ctrl[C_PC]
            cpl = ctrl[C_CPL]
            iflag = ctrl[C_IF]
            user_need = PTE_U if cpl == 3 else 0
            if stop != STOP_NONE:
                break
            continue
        if intwin != 0 and iflag != 0:
            ctrl[C_EXIT_REASON] = EXIT_INTERRUPT_WINDOW
            ctrl[C_EXIT_QUAL] = 0
            stop = STOP_VM_EXIT
            break
        # ---- 3. stop checks -----------------------------------------------------------------
        if pc == until:
            stop = STOP_UNTIL
            break
        if retired >= budget:
            stop = STOP_BUDGET
            break
        # ---- 4. fetch (TLB-hit test inline) ---------------------------------------------------
        vec = -1
        err = 0
        op = 0
        word = 0
        if xlate == 0:
            pa = pc if pc < mem_bytes else BUS_ERROR
        else:
            vpn = pc >> 12
            i = 2 * ((vpn ^ (vpn >> 7) ^ (vpn >> 14)) & tlb_mask)
            pa = MISS
            if tlb[i] == asid_key + vpn:
                value = tlb[i + 1]
                if (value & user_need) == user_need:
                    counters[EV_TLB_HIT] += 1
                    pa = (value & FRAME_MASK) | (pc & 0xFFF)
                    if pa >= mem_bytes:
                        pa = BUS_ERROR
            if pa == MISS:
                pa = tlb_miss(pc, ACC_FETCH, cpl, ptbr, levels, mem, mem_bytes, tlb, tlb_mask,
                              counters, ctrl)
        if pa < 0:
            vec, err = raise_fault(pa, pc, ctrl, counters)
        else:
            word = np.int64(mem[pa >> 2])
            op = word >> 24
            a = (word >> 20) & 15
            b = (word >> 16) & 15
            imm = word & 0xFFFF
            simm = imm - ((imm & 0x8000) << 1)
            npc = (pc + 4) & MASK32
            acc = NO_ACCESS      # set by instructions that touch memory
            va = 0
            # ---- 5. decode and execute ----------------------------------------------------------
            if op == OP_ADDI:
                regs[a] = (regs[b] + simm) & MASK32
            elif op == OP_ADD:
                regs[a] = (regs[b] + regs[imm & 15]) & MASK32
            elif op == OP_LD:
                va = (regs[b] + simm) & MASK32
                acc = 0
            elif op == OP_ST:
                va = (regs[b] + simm) & MASK32
                acc = ACC_WRITE
            elif op == OP_BNE:
                if regs[a] != regs[b]:
                    npc = (npc + 4 * simm) & MASK32
            elif op == OP_BEQ:
                if regs[a] == regs[b]:
                    npc = (npc + 4 * simm) & MASK32
            elif op == OP_BLT:
                if s32(regs[a]) < s32(regs[b]):
                    npc = (npc + 4 * simm) & MASK32
            elif op == OP_BGE:
                if s32(regs[a]) >= s32(regs[b]):
                    npc = (npc + 4 * simm) & MASK32
            elif op == OP_BLTU:
                if regs[a] < regs[b]:
                    npc = (npc + 4 * simm) & MASK32
            elif op == OP_BGEU:
                if regs[a] >= regs[b]:
                    npc = (npc + 4 * simm) & MASK32
            elif op == OP_JMP:
                off = word & 0xFFFFFF
                npc = (npc + 4 * (off - ((off & 0x800000) << 1))) & MASK32
            elif op == OP_MOV:
                regs[a] = regs[b]
            elif op == OP_MOVI:
                regs[a] = simm & MASK32
            elif op == OP_LUI:
                regs[a] = imm << 16
            elif op == OP_SUB:
                regs[a] = (regs[b] - regs[imm & 15]) & MASK32
            elif op == OP_AND:
                regs[a] = regs[b] & regs[imm & 15]
            elif op == OP_OR:
                regs[a] = regs[b] | regs[imm & 15]
            elif op == OP_XOR:
                regs[a] = regs[b] ^ regs[imm & 15]
            elif op == OP_SHL:
                regs[a] = (regs[b] << (regs[imm & 15] & 31)) & MASK32
            elif op == OP_SHR:
                regs[a] = regs[b] >> (regs[imm & 15] & 31)
            elif op == OP_SAR:
                regs[a] = (s32(regs[b]) >> (regs[imm & 15] & 31)) & MASK32
            elif op == OP_MUL:
                # split so the product never overflows int64 (same low 32 bits)
                x = regs[b]
                y = regs[imm & 15]
                regs[a] = ((x & 0xFFFF) * y + ((((x >> 16) * y) & 0xFFFF) << 16)) & MASK32
            elif op == OP_DIV or op == OP_MOD:
                d = regs[imm & 15]
                if d == 0:
                    vec = VEC_DE
                elif op == OP_DIV:
                    regs[a] = regs[b] // d
                else:
                    regs[a] = regs[b] % d
            elif op == OP_SLT:
                regs[a] = 1 if s32(regs[b]) < s32(regs[imm & 15]) else 0
            elif op == OP_SLTU:
                regs[a] = 1 if regs[b] < regs[imm & 15] else 0
            elif op == OP_ANDI:
                regs[a] = regs[b] & imm
            elif op == OP_ORI:
                regs[a] = regs[b] | imm
            elif op == OP_XORI:
                regs[a] = regs[b] ^ imm
            elif op == OP_SHLI:
                regs[a] = (regs[b] << (imm & 31)) & MASK32
            elif op == OP_SHRI:
                regs[a] = regs[b] >> (imm & 31)
            elif op == OP_SARI:
                regs[a] = (s32(regs[b]) >> (imm & 31)) & MASK32
            elif op == OP_NOP:
                pass
            elif op == OP_PUSH or op == OP_CALL or op == OP_CALLR:
                va = (regs[SP] - 4) & MASK32
                acc = ACC_WRITE
            elif op == OP_POP or op == OP_RET:
                va = regs[SP]
                acc = 0
            elif op == OP_JR:
                npc = regs[a]
            elif op == OP_SYSCALL:
                pass  # retires below, then traps through vector 0x80
            elif op >= OP_PUSHF and op <= OP_RDTVB:
                # ---- sensitive but unprivileged: trap only on a strict machine --------------
                if strict != 0 and cpl != 0:
                    vec = VEC_GP
                    counters[EV_PRIV_FAULTS] += 1
                elif op == OP_PUSHF:
                    va = (regs[SP] - 4) & MASK32
                    acc = ACC_WRITE
                elif op == OP_POPF:
                    va = regs[SP]
                    acc = 0
                elif op == OP_GETCPL:
                    regs[a] = cpl
                else:
                    regs[a] = ctrl[C_TVB]
            elif op >= OP_SYSRET and op <= OP_TLBFLUSH:
                # ---- privileged instructions ----------------------------------------------
                if cpl != 0:
                    vec = VEC_GP
                    counters[EV_PRIV_FAULTS] += 1
                elif op == OP_CLI:
                    iflag = 0
                elif op == OP_STI:
                    iflag = 1
                elif (op == OP_IN or op == OP_OUT) and (controls & CTL_IO_EXITING) != 0:
                    vec = VM_EXIT_PENDING
                    ctrl[C_EXIT_REASON] = EXIT_IO_INSTRUCTION
                    ctrl[C_EXIT_QUAL] = (imm << 16) | (8 if op == OP_IN else 0) | 3
                elif op == OP_IN:
                    ctrl[C_TICKS] = ticks
                    regs[a] = port_in(imm, ctrl, counters)
                elif op == OP_OUT:
                    ctrl[C_TICKS] = ticks
                    ctrl[C_TIMER_DEADLINE] = deadline
                    port_out(imm, regs[a], pc, ctrl, mem, counters, console, trace)
                    deadline = ctrl[C_TIMER_DEADLINE]
                elif op == OP_HLT:
                    if (controls & CTL_HLT_EXITING) != 0:
                        vec = VM_EXIT_PENDING
                        ctrl[C_EXIT_REASON] = EXIT_HLT
                        ctrl[C_EXIT_QUAL] = 0
                    else:
                        counters[EV_HLT] += 1
                elif op == OP_WRCR:
                    idx = cr_index(imm)
                    if idx < 0:
                        vec = VEC_GP
                    elif (idx == C_PTBR and (controls & CTL_CR3_LOAD_EXITING) != 0) or \
                            (idx == C_PAGING and (controls & CTL_CR0_PG_EXITING) != 0):
                        vec = VM_EXIT_PENDING
                        ctrl[C_EXIT_REASON] = EXIT_CR_ACCESS
                        ctrl[C_EXIT_QUAL] = imm | (a << 8)
                    else:
                        counters[EV_CR_WRITES] += 1
                        value = regs[a]
                        ctrl[idx] = value
                        if idx == C_PAGING:
                            counters[EV_PAGING_WRITES] += 1
                            paging = value & 1
                            xlate = paging | ept
                            flush_all(tlb, counters)
                        elif idx == C_PTBR:
                            counters[EV_PTBR_WRITES] += 1
                            ptbr = value
                            asid_key = (tlb_tag(ptbr, ctrl) << 20) + 1
                            if (value & 0xFFF) == 0:
                                flush_all(tlb, counters)
                elif op == OP_RDCR:
                    idx = cr_index(imm)
                    if idx < 0:
                        vec = VEC_GP
                    elif idx == C_PTBR and (controls & CTL_CR3_STORE_EXITING) != 0:
                        vec = VM_EXIT_PENDING
                        ctrl[C_EXIT_REASON] = EXIT_CR_ACCESS
                        ctrl[C_EXIT_QUAL] = imm | 16 | (a << 8)
                    else:
                        counters[EV_CR_READS] += 1
                        if idx == C_PTBR:
                            counters[EV_PTBR_READS] += 1
                        if idx == C_PAGING and (controls & CTL_CR0_PG_EXITING) != 0:
                            regs[a] = ctrl[C_CR0_SHADOW]    # the guest's view of paging
                        else:
                            regs[a] = ctrl[idx]
                elif op == OP_INVLPG:
                    if (controls & CTL_INVLPG_EXITING) != 0:
                        vec = VM_EXIT_PENDING
                        ctrl[C_EXIT_REASON] = EXIT_INVLPG
                        ctrl[C_EXIT_QUAL] = regs[a]
                    else:
                        counters[EV_INVLPG] += 1
                        invalidate_page(regs[a], tlb_tag(ptbr, ctrl), tlb, tlb_mask)
                elif op == OP_TLBFLUSH:
                    flush_all(tlb, counters)
                else:
                    # SYSRET / IRET: a slow path; sync the locals and let return_from_trap work
                    ctrl[C_CPL] = cpl
                    ctrl[C_IF] = iflag
                    vec, err = return_from_trap(op, regs, ctrl, mem, tlb, counters)
                    if vec < 0:
                        npc = ctrl[C_PC]
                        cpl = ctrl[C_CPL]
                        iflag = ctrl[C_IF]
                        user_need = PTE_U if cpl == 3 else 0
            elif op == OP_VMCALL and vmx != 0:
                vec = VM_EXIT_PENDING            # VMCALL always exits in non-root operation
                ctrl[C_EXIT_REASON] = EXIT_VMCALL
                ctrl[C_EXIT_QUAL] = 0
            else:
                vec = VEC_UD

            # ---- the data access of a memory instruction (TLB-hit test inline) ---------------
            if acc != NO_ACCESS:
                if data_limit != 0 and cpl != 0 and va >= data_limit:
                    pa = BUS_ERROR      # beyond the monitor's data limit: #GP(0)
                elif xlate == 0:
                    pa = va if va < mem_bytes else BUS_ERROR
                else:
                    vpn = va >> 12
                    i = 2 * ((vpn ^ (vpn >> 7) ^ (vpn >> 14)) & tlb_mask)
                    pa = MISS
                    if tlb[i] == asid_key + vpn:
                        value = tlb[i + 1]
                        need = user_need | (PTE_W | PTE_D if acc == ACC_WRITE else 0)
                        if (value & need) == need:
                            counters[EV_TLB_HIT] += 1
                            pa = (value & FRAME_MASK) | (va & 0xFFF)
                            if pa >= mem_bytes:
                                pa = BUS_ERROR
                    if pa == MISS:
                        pa = tlb_miss(va, acc, cpl, ptbr, levels, mem, mem_bytes, tlb, tlb_mask,
                                      counters, ctrl)
                if pa < 0:
                    vec, err = raise_fault(pa, va, ctrl, counters)
                elif op == OP_LD:
                    regs[a] = mem[pa >> 2]
                elif op == OP_ST:
                    mem[pa >> 2] = regs[a]
                elif acc == ACC_WRITE:
                    # PUSH, CALL, CALLR, PUSHF: write the word, then move sp
                    if op == OP_PUSH:
                        mem[pa >> 2] = regs[a]
                    elif op == OP_PUSHF:
                        mem[pa >> 2] = iflag << 9
                    else:
                        mem[pa >> 2] = npc
                        if op == OP_CALL:
                            off = word & 0xFFFFFF
                            npc = (npc + 4 * (off - ((off & 0x800000) << 1))) & MASK32
                        else:
                            npc = regs[a]
                    regs[SP] = va
                else:
                    # POP, RET, POPF: read the word, move sp, then use the value
                    value = np.int64(mem[pa >> 2])
                    regs[SP] = (va + 4) & MASK32
                    if op == OP_POP:
                        regs[a] = value
                    elif op == OP_RET:
                        npc = value
                    else:
                        new_if = (value >> 9) & 1
                        if cpl == 0:
                            iflag = new_if
                        elif new_if != iflag:
                            counters[EV_POPF_IGNORED] += 1

        if vec >= 0:
            if vec == VM_EXIT_PENDING:
                # ---- a VM exit: nothing retired, pc stays at the exiting instruction ---------
                ctrl[C_EXIT_INSTR] = word     # 0 if the fetch itself exited
                stop = STOP_VM_EXIT
                break
            # ---- the instruction faulted: deliver, return pc = the faulting instruction ----
            ctrl[C_PC] = pc
            ctrl[C_CPL] = cpl
            ctrl[C_IF] = iflag
            ctrl[C_TICKS] = ticks
            stop = deliver(vec, err, pc, regs, ctrl, mem, tlb, counters, trace, intercept, 0)
            pc = ctrl[C_PC]
            cpl = ctrl[C_CPL]
            iflag = ctrl[C_IF]
            user_need = PTE_U if cpl == 3 else 0
            if stop != STOP_NONE:
                break
            continue
        # ---- retire -------------------------------------------------------------------------
        ticks += 1
        retired += 1
        counters[EV_OP_BASE + op] += 1
        ctrl[C_DELIVERIES] = 0
        pc = npc
        if op == OP_SYSCALL or op == OP_HLT:
            ctrl[C_PC] = pc
            ctrl[C_CPL] = cpl
            ctrl[C_IF] = iflag
            ctrl[C_TICKS] = ticks
            if op == OP_SYSCALL:
                stop = deliver(VEC_SYSCALL, 0, pc, regs, ctrl, mem, tlb, counters, trace,
                               intercept, 0)
                pc = ctrl[C_PC]
                cpl = ctrl[C_CPL]
                iflag = ctrl[C_IF]
                user_need = PTE_U if cpl == 3 else 0
                if stop != STOP_NONE:
                    break
            elif iflag != 0 and ctrl[C_TIMER_PENDING] != 0:
                pass  # an interrupt is already waiting: it is taken at the next step
            elif iflag != 0 and ctrl[C_TIMER_PERIOD] != 0:
                if deadline > ticks:
                    counters[EV_IDLE_TICKS] += deadline - ticks
                    ticks = deadline
            else:
                stop = STOP_HALT
                break

    if vmx != 0 and stop == STOP_TRIPLE_FAULT:
        stop = STOP_VM_EXIT                     # a triple fault in non-root operation exits
        ctrl[C_EXIT_REASON] = EXIT_TRIPLE_FAULT
        ctrl[C_EXIT_QUAL] = 0
    ctrl[C_PC] = pc
    ctrl[C_CPL] = cpl
    ctrl[C_IF] = iflag
    ctrl[C_TICKS] = ticks
    ctrl[C_TIMER_DEADLINE] = deadline
    ctrl[C_STOP_REASON] = stop
    counters[EV_INSTRUCTIONS] += retired
    return stop
