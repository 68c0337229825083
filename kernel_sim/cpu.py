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
hot loop stays small.

Every constant comes from the one place that defines it: ``isa.OP_ADD``, ``isa.VEC_GP``,
``isa.PORT_TIMER`` from the instruction set (:mod:`kernel_sim.isa`), ``S.C_PC``, ``S.EV_TRAPS``,
``S.K_TRAP`` from the state layout (:mod:`kernel_sim.state`).  Numba reads such a module attribute
once, when it compiles, and compiles the number into the machine code: ``ctrl[S.C_PC]`` costs
exactly what ``ctrl[0]`` costs.  The cache that keeps that machine code between processes is
keyed on every file the kernel imports (:mod:`kernel_sim.jit`), so a changed constant always
means a recompiled kernel.
"""
from __future__ import annotations

import numpy as np

from . import isa
from . import state as S
from .jit import njit
from .mmu import (
    ACC_FETCH,
    ACC_WRITE,
    BUS_ERROR,
    EPT_VIOLATION,
    flush_all,
    invalidate_page,
    tlb_miss,
    tlb_tag,
    translate,
)

# Markers private to this loop (not facts of the machine: nothing outside this file sees them)
NO_ACCESS = -1     # the instruction touches no data memory
MISS = -5000       # the inline TLB test could not answer
VM_EXIT_PENDING = 1000  # "vector": the instruction causes a VM exit (C_EXIT_* are set)


@njit
def s32(x):
    """A 32-bit word read as a signed integer."""
    return x - ((x & 0x80000000) << 1)


@njit
def trace_event(ctrl, trace, kind, pc, detail):
    """Append one record to the bounded trace ring buffer."""
    n = trace.shape[0]
    if n == 0:
        return
    pos = ctrl[S.C_TRACE_POS]
    j = pos % n
    trace[j, 0] = ctrl[S.C_TICKS]
    trace[j, 1] = pc
    trace[j, 2] = kind
    trace[j, 3] = detail
    ctrl[S.C_TRACE_POS] = pos + 1


@njit
def cr_index(cr):
    """Control-register number (``isa.CR_*``) -> ctrl[] index, or -1 if there is no such register.

    ``S.CR_TO_CTRL`` is a global tuple: Numba freezes it like a number, so this is a lookup in a
    constant table compiled into the kernel."""
    if cr < 0 or cr >= len(S.CR_TO_CTRL):
        return -1
    return S.CR_TO_CTRL[cr]


@njit
def delivery_exit(vec, err, rp, regs, ctrl, mem, tlb, counters, intercept, injected):
    """VMX non-root: does delivering ``vec`` cause a VM exit?  Returns STOP_VM_EXIT or STOP_NONE.

    An exception in the exception bitmap, or the timer under external-interrupt exiting, exits
    instead of being delivered (not for an event the monitor injects).  Otherwise the addresses
    the delivery will touch are translated first, in native order: an EPT violation, or a #PF
    the bitmap sends to the monitor, exits with the event recorded as IDT-vectoring information
    so that the monitor can re-inject it once the mapping is fixed.
    """
    if injected == 0:
        if vec < 32 and ((ctrl[S.C_EXCEPTION_BITMAP] >> vec) & 1) != 0:
            ctrl[S.C_PC] = rp
            ctrl[S.C_EXIT_REASON] = S.EXIT_EXCEPTION_NMI
            ctrl[S.C_EXIT_INTR_INFO] = vec
            ctrl[S.C_EXIT_INTR_ERROR] = err
            ctrl[S.C_EXIT_QUAL] = ctrl[S.C_EXIT_GLA] if vec == isa.VEC_PF else 0
            return S.STOP_VM_EXIT
        if vec == isa.VEC_TIMER and (ctrl[S.C_VMX_CONTROLS] & S.CTL_EXTINT_EXITING) != 0:
            ctrl[S.C_PC] = rp
            ctrl[S.C_EXIT_REASON] = S.EXIT_EXTERNAL_INTERRUPT
            ctrl[S.C_EXIT_QUAL] = 0
            return S.STOP_VM_EXIT
    tvb = ctrl[S.C_TVB]
    if tvb == isa.NO_TVB or intercept[vec] != 0:
        return S.STOP_NONE                      # native delivery would read no memory
    paging = ctrl[S.C_PAGING] & 1
    ptbr = ctrl[S.C_PTBR]
    levels = ctrl[S.C_LEVELS]
    mem_bytes = ctrl[S.C_MEM_BYTES]
    mask = (tlb.shape[0] >> 1) - 1
    va = (tvb + 4 * vec) & isa.WORD_MASK
    pa = translate(va, 0, 0, paging, ptbr, levels, mem, mem_bytes, tlb, mask, counters, ctrl)
    if pa >= 0:
        if mem[pa >> 2] == 0 or ctrl[S.C_DELIVERIES] + 1 > S.MAX_DELIVERIES:
            return S.STOP_NONE
        sp = regs[isa.SP]
        if ctrl[S.C_CPL] > 0:
            sp = ctrl[S.C_KSP]
        for k in range(5):
            va = (sp - 4 * (k + 1)) & isa.WORD_MASK
            pa = translate(va, ACC_WRITE, 0, paging, ptbr, levels, mem, mem_bytes, tlb, mask,
                           counters, ctrl)
            if pa < 0:
                break
    if pa >= 0 or pa == BUS_ERROR:
        return S.STOP_NONE
    if vec == isa.VEC_PF and injected == 0:
        ctrl[S.C_FAULT_ADDR] = ctrl[S.C_EXIT_GLA]       # CR2 was written as the delivery began
    if pa == EPT_VIOLATION:
        ctrl[S.C_EXIT_REASON] = S.EXIT_EPT_VIOLATION
        ctrl[S.C_EXIT_GLA] = va
    elif ((ctrl[S.C_EXCEPTION_BITMAP] >> isa.VEC_PF) & 1) != 0:
        ctrl[S.C_EXIT_REASON] = S.EXIT_EXCEPTION_NMI
        ctrl[S.C_EXIT_INTR_INFO] = isa.VEC_PF
        ctrl[S.C_EXIT_INTR_ERROR] = -1 - pa
        ctrl[S.C_EXIT_QUAL] = va
        ctrl[S.C_EXIT_GLA] = va
    else:
        return S.STOP_NONE                      # a guest #PF while delivering: a triple fault
    ctrl[S.C_IDT_VECTORING] = S.INJECT_VALID | vec
    ctrl[S.C_IDT_VECTORING_ERROR] = err
    ctrl[S.C_PC] = rp
    return S.STOP_VM_EXIT


@njit
def deliver(vec, err, rp, regs, ctrl, mem, tlb, counters, trace, intercept, injected):
    """Deliver trap ``vec`` (error code ``err``, return pc ``rp``) through the vector table.

    Reads pc, ring, IF and paging state from ``ctrl`` (the caller has synced them) and writes the
    new state back.  Returns STOP_NONE if the handler now runs, or the reason the run must stop.
    In VMX non-root operation the event may exit instead (:func:`delivery_exit`); ``injected``
    (1: the monitor injects it at VM entry) exempts it from the exception bitmap.
    """
    if ctrl[S.C_VMX] != 0:
        if delivery_exit(vec, err, rp, regs, ctrl, mem, tlb, counters, intercept,
                         injected) != S.STOP_NONE:
            return S.STOP_VM_EXIT
        if vec == isa.VEC_PF:
            if injected == 0:
                ctrl[S.C_FAULT_ADDR] = ctrl[S.C_EXIT_GLA]   # CR2 is written as the #PF is delivered
            counters[S.EV_PAGE_FAULTS] += 1           # a #PF reaches the guest (even injected)
    counters[S.EV_VECTOR_BASE + vec] += 1
    counters[S.EV_TRAPS] += 1
    trace_event(ctrl, trace, S.TRACE_TRAP, rp, (vec << 32) | err)
    ctrl[S.C_PC] = rp
    if intercept[vec] != 0:
        ctrl[S.C_STOP_VECTOR] = vec
        ctrl[S.C_STOP_ERROR] = err
        return S.STOP_TRAP_EXIT
    tvb = ctrl[S.C_TVB]
    if tvb == isa.NO_TVB:
        ctrl[S.C_STOP_VECTOR] = vec
        ctrl[S.C_STOP_ERROR] = err
        return S.STOP_UNHANDLED_TRAP
    paging = ctrl[S.C_PAGING] & 1
    ptbr = ctrl[S.C_PTBR]
    levels = ctrl[S.C_LEVELS]
    mem_bytes = ctrl[S.C_MEM_BYTES]
    mask = (tlb.shape[0] >> 1) - 1
    pa = translate((tvb + 4 * vec) & isa.WORD_MASK, 0, 0, paging, ptbr, levels, mem, mem_bytes, tlb,
                   mask, counters, ctrl)
    if pa < 0:
        ctrl[S.C_STOP_VECTOR] = vec
        ctrl[S.C_STOP_ERROR] = err
        return S.STOP_TRIPLE_FAULT
    handler = np.int64(mem[pa >> 2])
    if handler == 0:
        ctrl[S.C_STOP_VECTOR] = vec
        ctrl[S.C_STOP_ERROR] = err
        return S.STOP_UNHANDLED_TRAP
    # a fault storm: the guest's handlers keep faulting before retiring anything
    ctrl[S.C_DELIVERIES] += 1
    if ctrl[S.C_DELIVERIES] > S.MAX_DELIVERIES:
        ctrl[S.C_STOP_VECTOR] = vec
        ctrl[S.C_STOP_ERROR] = err
        return S.STOP_TRIPLE_FAULT
    old_cpl = ctrl[S.C_CPL]
    old_sp = regs[isa.SP]
    sp = old_sp
    if old_cpl > 0:
        sp = ctrl[S.C_KSP]
    frame = np.empty(5, np.int64)
    frame[0] = old_sp
    frame[1] = ctrl[S.C_IF] << 9
    frame[2] = old_cpl
    frame[3] = rp
    frame[4] = err
    where = np.empty(5, np.int64)
    for k in range(5):
        where[k] = translate((sp - 4 * (k + 1)) & isa.WORD_MASK, ACC_WRITE, 0, paging, ptbr, levels,
                             mem, mem_bytes, tlb, mask, counters, ctrl)
        if where[k] < 0:
            ctrl[S.C_STOP_VECTOR] = vec
            ctrl[S.C_STOP_ERROR] = err
            return S.STOP_TRIPLE_FAULT
    for k in range(5):
        mem[where[k] >> 2] = frame[k]
    regs[isa.SP] = (sp - 20) & isa.WORD_MASK
    ctrl[S.C_CPL] = 0
    ctrl[S.C_IF] = 0
    ctrl[S.C_PC] = handler
    return S.STOP_NONE


@njit
def vmx_fault(code, va, ctrl):
    """:func:`raise_fault` in VMX non-root operation: an EPT violation becomes
    ``(VM_EXIT_PENDING, 0)``; a page fault only notes its address in ``C_EXIT_GLA`` (CR2 and the
    page-fault count change when the fault is really delivered to the guest: it may exit)."""
    if code == EPT_VIOLATION:
        ctrl[S.C_EXIT_REASON] = S.EXIT_EPT_VIOLATION
        ctrl[S.C_EXIT_GLA] = va
        return VM_EXIT_PENDING, 0
    ctrl[S.C_EXIT_GLA] = va
    return isa.VEC_PF, -1 - code


@njit
def raise_fault(code, va, ctrl, counters):
    """Turn a translate() fault code into (vector, error code); record page-fault state
    (in VMX non-root operation see :func:`vmx_fault`)."""
    if code == BUS_ERROR:
        return isa.VEC_GP, 0
    if ctrl[S.C_VMX] != 0:
        return vmx_fault(code, va, ctrl)
    ctrl[S.C_FAULT_ADDR] = va
    counters[S.EV_PAGE_FAULTS] += 1
    return isa.VEC_PF, -1 - code


@njit
def charge_cycles(ctrl, costs, counters, before, ops_before):
    """Add the cycles of everything counted since ``before``/``ops_before`` to ctrl[C_CYCLES]."""
    cyc = 0
    for op in range(256):
        cyc += (counters[S.EV_OP_BASE + op] - ops_before[op]) * costs[op]
    cyc += (counters[S.EV_TLB_MISS] - before[0]) * costs[S.K_TLB_MISS]
    cyc += (counters[S.EV_WALK_REFS] - before[1]) * costs[S.K_WALK_REF]
    cyc += (counters[S.EV_TRAPS] - before[2]) * costs[S.K_TRAP]
    cyc += (counters[S.EV_IDLE_TICKS] - before[3]) * costs[S.K_IDLE_TICK]
    cyc += ((counters[S.EV_BLK_READS] + counters[S.EV_BLK_WRITES] - before[4])
            * costs[S.K_BLK_SECTOR])
    ctrl[S.C_CYCLES] += cyc


@njit
def port_in(port, ctrl, counters):
    counters[S.EV_IO_IN] += 1
    if port == isa.PORT_TIMER:
        return ctrl[S.C_TIMER_PERIOD]
    if port == isa.PORT_TICKS:
        return ctrl[S.C_TICKS] & isa.WORD_MASK
    if port == isa.PORT_CONSOLE:
        return 0
    if port == isa.PORT_BLK_SECTOR:
        return ctrl[S.C_BLK_SECTOR]
    if port == isa.PORT_BLK_BUFFER:
        return ctrl[S.C_BLK_BUFFER]
    if port == isa.PORT_BLK_COMMAND:
        return ctrl[S.C_BLK_STATUS]
    if port == isa.PORT_BLK_SIZE:
        return ctrl[S.C_DISK_SECTORS]
    return isa.WORD_MASK


@njit
def block_command(command, ctrl, mem, counters):
    """The block device's synchronous DMA: copy one 512-byte sector between disk and memory."""
    if command != isa.BLK_READ and command != isa.BLK_WRITE:
        ctrl[S.C_BLK_STATUS] = S.BLK_BAD_COMMAND
        return
    sector = ctrl[S.C_BLK_SECTOR]
    buf = ctrl[S.C_BLK_BUFFER] & 0xFFFFFFFC
    if sector >= ctrl[S.C_DISK_SECTORS] or buf + 4 * S.BLK_SECTOR_WORDS > ctrl[S.C_MEM_BYTES]:
        ctrl[S.C_BLK_STATUS] = S.BLK_BAD_ADDRESS
        return
    disk = (ctrl[S.C_MEM_BYTES] >> 2) + sector * S.BLK_SECTOR_WORDS
    word = buf >> 2
    if command == isa.BLK_READ:
        for k in range(S.BLK_SECTOR_WORDS):
            mem[word + k] = mem[disk + k]
        counters[S.EV_BLK_READS] += 1
    else:
        for k in range(S.BLK_SECTOR_WORDS):
            mem[disk + k] = mem[word + k]
        counters[S.EV_BLK_WRITES] += 1
    ctrl[S.C_BLK_STATUS] = S.BLK_OK


@njit
def port_out(port, value, pc, ctrl, mem, counters, console, trace):
    counters[S.EV_IO_OUT] += 1
    trace_event(ctrl, trace, S.TRACE_IO, pc, (port << 32) | value)
    if port == isa.PORT_CONSOLE:
        n = ctrl[S.C_CONSOLE_LEN]
        if n < console.shape[0]:
            console[n] = value & 0xFF
            ctrl[S.C_CONSOLE_LEN] = n + 1
        else:
            counters[S.EV_CONSOLE_DROPPED] += 1
    elif port == isa.PORT_TIMER:
        ctrl[S.C_TIMER_PERIOD] = value
        if value == 0:
            ctrl[S.C_TIMER_DEADLINE] = S.NEVER
        else:
            ctrl[S.C_TIMER_DEADLINE] = ctrl[S.C_TICKS] + value
    elif port == isa.PORT_BLK_SECTOR:
        ctrl[S.C_BLK_SECTOR] = value
    elif port == isa.PORT_BLK_BUFFER:
        ctrl[S.C_BLK_BUFFER] = value
    elif port == isa.PORT_BLK_COMMAND:
        block_command(value, ctrl, mem, counters)


@njit
def return_from_trap(op, regs, ctrl, mem, tlb, counters):
    """IRET / SYSRET: read the five-word trap frame at sp, then commit.

    On success sets ctrl[C_PC], C_CPL, C_IF and sp and returns (-1, 0); on a fault while reading
    the frame changes nothing but the fault state and returns (vector, error code).
    """
    sp = regs[isa.SP]
    paging = ctrl[S.C_PAGING] & 1
    mask = (tlb.shape[0] >> 1) - 1
    frame = np.empty(5, np.int64)
    for k in range(5):
        va = (sp + 4 * k) & isa.WORD_MASK
        p = translate(va, 0, ctrl[S.C_CPL], paging, ctrl[S.C_PTBR], ctrl[S.C_LEVELS], mem,
                      ctrl[S.C_MEM_BYTES], tlb, mask, counters, ctrl)
        if p < 0:
            return raise_fault(p, va, ctrl, counters)
        frame[k] = mem[p >> 2]
    ctrl[S.C_PC] = frame[1]
    regs[isa.SP] = frame[4]
    if op == isa.OP_IRET:
        counters[S.EV_IRET] += 1
        ctrl[S.C_CPL] = frame[2] & 3
        ctrl[S.C_IF] = (frame[3] >> 9) & 1
    else:
        counters[S.EV_SYSRET] += 1
        ctrl[S.C_CPL] = 3
        ctrl[S.C_IF] = 1
    return -1, 0


@njit
def run_native(regs, ctrl, mem, tlb, costs, counters, console, trace, intercept, budget):
    """Run the machine for at most ``budget`` retired instructions; return the stop reason.

    Also stored in ``ctrl[C_STOP_REASON]``.  See :mod:`kernel_sim.state` for the semantics.
    """
    before = np.empty(5, np.int64)
    before[0] = counters[S.EV_TLB_MISS]
    before[1] = counters[S.EV_WALK_REFS]
    before[2] = counters[S.EV_TRAPS]
    before[3] = counters[S.EV_IDLE_TICKS]
    before[4] = counters[S.EV_BLK_READS] + counters[S.EV_BLK_WRITES]
    ops_before = np.empty(256, np.int64)
    for op in range(256):
        ops_before[op] = counters[S.EV_OP_BASE + op]
    stop = execute(regs, ctrl, mem, tlb, counters, console, trace, intercept, budget)
    trace_event(ctrl, trace, S.TRACE_STOP, ctrl[S.C_PC], stop)
    charge_cycles(ctrl, costs, counters, before, ops_before)
    return stop


@njit
def execute(regs, ctrl, mem, tlb, counters, console, trace, intercept, budget):
    """The interpreter loop.

    Shape of one step: timer -> interrupt -> stop checks -> fetch -> decode and execute.  An
    instruction that touches memory (LD, ST, PUSH, POP, CALL, CALLR, RET, PUSHF, POPF) first
    computes its address ``va`` and access kind; one shared block then translates it and
    completes the instruction.  The TLB-hit test is written out inline at the two translation
    sites (fetch and data), and the loop calls no function on its hot path: with Numba, a call
    that takes arrays costs reference-count updates, which here would triple the time per step.
    """
    mem_bytes = ctrl[S.C_MEM_BYTES]
    tlb_mask = (tlb.shape[0] >> 1) - 1
    until = ctrl[S.C_UNTIL]
    strict = ctrl[S.C_STRICT]
    levels = ctrl[S.C_LEVELS]
    # hot state in locals
    pc = ctrl[S.C_PC]
    cpl = ctrl[S.C_CPL]
    iflag = ctrl[S.C_IF]
    paging = ctrl[S.C_PAGING] & 1
    ptbr = ctrl[S.C_PTBR]
    user_need = isa.PTE_U if cpl == 3 else 0
    ticks = ctrl[S.C_TICKS]
    deadline = ctrl[S.C_TIMER_DEADLINE]
    data_limit = ctrl[S.C_DATA_LIMIT]
    # VMX non-root operation: the controls the VMCS loaded (all 0 on a bare machine)
    vmx = ctrl[S.C_VMX]
    controls = ctrl[S.C_VMX_CONTROLS] if vmx != 0 else 0
    extint = controls & S.CTL_EXTINT_EXITING
    intwin = controls & S.CTL_INTWIN_EXITING
    ept = 1 if (vmx != 0 and ctrl[S.C_EPTP] != 0) else 0
    xlate = paging | ept       # 0: addresses are physical (no TLB)
    asid_key = (tlb_tag(ptbr, ctrl) << 20) + 1
    retired = 0
    stop = S.STOP_NONE
    if vmx != 0 and (ctrl[S.C_INJECT] & S.INJECT_VALID) != 0:
        # VM-entry event injection: delivered through the guest's vector table, never exiting
        inject = ctrl[S.C_INJECT]
        ctrl[S.C_INJECT] = 0
        stop = deliver(inject & 0xFF, ctrl[S.C_INJECT_ERROR], pc, regs, ctrl, mem, tlb, counters,
                       trace, intercept, 1)
        pc = ctrl[S.C_PC]
        cpl = ctrl[S.C_CPL]
        iflag = ctrl[S.C_IF]
        user_need = isa.PTE_U if cpl == 3 else 0

    while stop == S.STOP_NONE:
        # ---- 1-2. timer and interrupts ------------------------------------------------------
        if ticks >= deadline:
            ctrl[S.C_TIMER_PENDING] = 1
            deadline += ctrl[S.C_TIMER_PERIOD]
        if (iflag | extint) != 0 and ctrl[S.C_TIMER_PENDING] != 0:
            ctrl[S.C_TIMER_PENDING] = 0
            ctrl[S.C_PC] = pc
            ctrl[S.C_CPL] = cpl
            ctrl[S.C_IF] = iflag
            ctrl[S.C_TICKS] = ticks
            stop = deliver(isa.VEC_TIMER, 0, pc, regs, ctrl, mem, tlb, counters, trace, intercept,
                           0)
            pc = ctrl[S.C_PC]
            cpl = ctrl[S.C_CPL]
            iflag = ctrl[S.C_IF]
            user_need = isa.PTE_U if cpl == 3 else 0
            if stop != S.STOP_NONE:
                break
            continue
        if intwin != 0 and iflag != 0:
            ctrl[S.C_EXIT_REASON] = S.EXIT_INTERRUPT_WINDOW
            ctrl[S.C_EXIT_QUAL] = 0
            stop = S.STOP_VM_EXIT
            break
        # ---- 3. stop checks -----------------------------------------------------------------
        if pc == until:
            stop = S.STOP_UNTIL
            break
        if retired >= budget:
            stop = S.STOP_BUDGET
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
                    counters[S.EV_TLB_HIT] += 1
                    pa = (value & isa.PTE_FRAME_MASK) | (pc & 0xFFF)
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
            npc = (pc + 4) & isa.WORD_MASK
            acc = NO_ACCESS      # set by instructions that touch memory
            va = 0
            # ---- 5. decode and execute ----------------------------------------------------------
            if op == isa.OP_ADDI:
                regs[a] = (regs[b] + simm) & isa.WORD_MASK
            elif op == isa.OP_ADD:
                regs[a] = (regs[b] + regs[imm & 15]) & isa.WORD_MASK
            elif op == isa.OP_LD:
                va = (regs[b] + simm) & isa.WORD_MASK
                acc = 0
            elif op == isa.OP_ST:
                va = (regs[b] + simm) & isa.WORD_MASK
                acc = ACC_WRITE
            elif op == isa.OP_BNE:
                if regs[a] != regs[b]:
                    npc = (npc + 4 * simm) & isa.WORD_MASK
            elif op == isa.OP_BEQ:
                if regs[a] == regs[b]:
                    npc = (npc + 4 * simm) & isa.WORD_MASK
            elif op == isa.OP_BLT:
                if s32(regs[a]) < s32(regs[b]):
                    npc = (npc + 4 * simm) & isa.WORD_MASK
            elif op == isa.OP_BGE:
                if s32(regs[a]) >= s32(regs[b]):
                    npc = (npc + 4 * simm) & isa.WORD_MASK
            elif op == isa.OP_BLTU:
                if regs[a] < regs[b]:
                    npc = (npc + 4 * simm) & isa.WORD_MASK
            elif op == isa.OP_BGEU:
                if regs[a] >= regs[b]:
                    npc = (npc + 4 * simm) & isa.WORD_MASK
            elif op == isa.OP_JMP:
                off = word & 0xFFFFFF
                npc = (npc + 4 * (off - ((off & 0x800000) << 1))) & isa.WORD_MASK
            elif op == isa.OP_MOV:
                regs[a] = regs[b]
            elif op == isa.OP_MOVI:
                regs[a] = simm & isa.WORD_MASK
            elif op == isa.OP_LUI:
                regs[a] = imm << 16
            elif op == isa.OP_SUB:
                regs[a] = (regs[b] - regs[imm & 15]) & isa.WORD_MASK
            elif op == isa.OP_AND:
                regs[a] = regs[b] & regs[imm & 15]
            elif op == isa.OP_OR:
                regs[a] = regs[b] | regs[imm & 15]
            elif op == isa.OP_XOR:
                regs[a] = regs[b] ^ regs[imm & 15]
            elif op == isa.OP_SHL:
                regs[a] = (regs[b] << (regs[imm & 15] & 31)) & isa.WORD_MASK
            elif op == isa.OP_SHR:
                regs[a] = regs[b] >> (regs[imm & 15] & 31)
            elif op == isa.OP_SAR:
                regs[a] = (s32(regs[b]) >> (regs[imm & 15] & 31)) & isa.WORD_MASK
            elif op == isa.OP_MUL:
                # split so the product never overflows int64 (same low 32 bits)
                x = regs[b]
                y = regs[imm & 15]
                regs[a] = ((x & 0xFFFF) * y + ((((x >> 16) * y) & 0xFFFF) << 16)) & isa.WORD_MASK
            elif op == isa.OP_DIV or op == isa.OP_MOD:
                d = regs[imm & 15]
                if d == 0:
                    vec = isa.VEC_DE
                elif op == isa.OP_DIV:
                    regs[a] = regs[b] // d
                else:
                    regs[a] = regs[b] % d
            elif op == isa.OP_SLT:
                regs[a] = 1 if s32(regs[b]) < s32(regs[imm & 15]) else 0
            elif op == isa.OP_SLTU:
                regs[a] = 1 if regs[b] < regs[imm & 15] else 0
            elif op == isa.OP_ANDI:
                regs[a] = regs[b] & imm
            elif op == isa.OP_ORI:
                regs[a] = regs[b] | imm
            elif op == isa.OP_XORI:
                regs[a] = regs[b] ^ imm
            elif op == isa.OP_SHLI:
                regs[a] = (regs[b] << (imm & 31)) & isa.WORD_MASK
            elif op == isa.OP_SHRI:
                regs[a] = regs[b] >> (imm & 31)
            elif op == isa.OP_SARI:
                regs[a] = (s32(regs[b]) >> (imm & 31)) & isa.WORD_MASK
            elif op == isa.OP_NOP:
                pass
            elif op == isa.OP_PUSH or op == isa.OP_CALL or op == isa.OP_CALLR:
                va = (regs[isa.SP] - 4) & isa.WORD_MASK
                acc = ACC_WRITE
            elif op == isa.OP_POP or op == isa.OP_RET:
                va = regs[isa.SP]
                acc = 0
            elif op == isa.OP_JR:
                npc = regs[a]
            elif op == isa.OP_SYSCALL:
                pass  # retires below, then traps through vector 0x80
            elif op >= isa.OP_PUSHF and op <= isa.OP_RDTVB:
                # ---- sensitive but unprivileged: trap only on a strict machine --------------
                if strict != 0 and cpl != 0:
                    vec = isa.VEC_GP
                    counters[S.EV_PRIV_FAULTS] += 1
                elif op == isa.OP_PUSHF:
                    va = (regs[isa.SP] - 4) & isa.WORD_MASK
                    acc = ACC_WRITE
                elif op == isa.OP_POPF:
                    va = regs[isa.SP]
                    acc = 0
                elif op == isa.OP_GETCPL:
                    regs[a] = cpl
                else:
                    regs[a] = ctrl[S.C_TVB]
            elif op >= isa.OP_SYSRET and op <= isa.OP_TLBFLUSH:
                # ---- privileged instructions ----------------------------------------------
                if cpl != 0:
                    vec = isa.VEC_GP
                    counters[S.EV_PRIV_FAULTS] += 1
                elif op == isa.OP_CLI:
                    iflag = 0
                elif op == isa.OP_STI:
                    iflag = 1
                elif (op == isa.OP_IN or op == isa.OP_OUT) and (controls & S.CTL_IO_EXITING) != 0:
                    vec = VM_EXIT_PENDING
                    ctrl[S.C_EXIT_REASON] = S.EXIT_IO_INSTRUCTION
                    ctrl[S.C_EXIT_QUAL] = (imm << 16) | (8 if op == isa.OP_IN else 0) | 3
                elif op == isa.OP_IN:
                    ctrl[S.C_TICKS] = ticks
                    regs[a] = port_in(imm, ctrl, counters)
                elif op == isa.OP_OUT:
                    ctrl[S.C_TICKS] = ticks
                    ctrl[S.C_TIMER_DEADLINE] = deadline
                    port_out(imm, regs[a], pc, ctrl, mem, counters, console, trace)
                    deadline = ctrl[S.C_TIMER_DEADLINE]
                elif op == isa.OP_HLT:
                    if (controls & S.CTL_HLT_EXITING) != 0:
                        vec = VM_EXIT_PENDING
                        ctrl[S.C_EXIT_REASON] = S.EXIT_HLT
                        ctrl[S.C_EXIT_QUAL] = 0
                    else:
                        counters[S.EV_HLT] += 1
                elif op == isa.OP_WRCR:
                    idx = cr_index(imm)
                    if idx < 0:
                        vec = isa.VEC_GP
                    elif (idx == S.C_PTBR and (controls & S.CTL_CR3_LOAD_EXITING) != 0) or \
                            (idx == S.C_PAGING and (controls & S.CTL_CR0_PG_EXITING) != 0):
                        vec = VM_EXIT_PENDING
                        ctrl[S.C_EXIT_REASON] = S.EXIT_CR_ACCESS
                        ctrl[S.C_EXIT_QUAL] = imm | (a << 8)
                    else:
                        counters[S.EV_CR_WRITES] += 1
                        value = regs[a]
                        ctrl[idx] = value
                        if idx == S.C_PAGING:
                            counters[S.EV_PAGING_WRITES] += 1
                            paging = value & 1
                            xlate = paging | ept
                            flush_all(tlb, counters)
                        elif idx == S.C_PTBR:
                            counters[S.EV_PTBR_WRITES] += 1
                            ptbr = value
                            asid_key = (tlb_tag(ptbr, ctrl) << 20) + 1
                            if (value & 0xFFF) == 0:
                                flush_all(tlb, counters)
                elif op == isa.OP_RDCR:
                    idx = cr_index(imm)
                    if idx < 0:
                        vec = isa.VEC_GP
                    elif idx == S.C_PTBR and (controls & S.CTL_CR3_STORE_EXITING) != 0:
                        vec = VM_EXIT_PENDING
                        ctrl[S.C_EXIT_REASON] = S.EXIT_CR_ACCESS
                        ctrl[S.C_EXIT_QUAL] = imm | 16 | (a << 8)
                    else:
                        counters[S.EV_CR_READS] += 1
                        if idx == S.C_PTBR:
                            counters[S.EV_PTBR_READS] += 1
                        if idx == S.C_PAGING and (controls & S.CTL_CR0_PG_EXITING) != 0:
                            regs[a] = ctrl[S.C_CR0_SHADOW]    # the guest's view of paging
                        else:
                            regs[a] = ctrl[idx]
                elif op == isa.OP_INVLPG:
                    if (controls & S.CTL_INVLPG_EXITING) != 0:
                        vec = VM_EXIT_PENDING
                        ctrl[S.C_EXIT_REASON] = S.EXIT_INVLPG
                        ctrl[S.C_EXIT_QUAL] = regs[a]
                    else:
                        counters[S.EV_INVLPG] += 1
                        invalidate_page(regs[a], tlb_tag(ptbr, ctrl), tlb, tlb_mask)
                elif op == isa.OP_TLBFLUSH:
                    flush_all(tlb, counters)
                else:
                    # SYSRET / IRET: a slow path; sync the locals and let return_from_trap work
                    ctrl[S.C_CPL] = cpl
                    ctrl[S.C_IF] = iflag
                    vec, err = return_from_trap(op, regs, ctrl, mem, tlb, counters)
                    if vec < 0:
                        npc = ctrl[S.C_PC]
                        cpl = ctrl[S.C_CPL]
                        iflag = ctrl[S.C_IF]
                        user_need = isa.PTE_U if cpl == 3 else 0
            elif op == isa.OP_VMCALL and vmx != 0:
                vec = VM_EXIT_PENDING            # VMCALL always exits in non-root operation
                ctrl[S.C_EXIT_REASON] = S.EXIT_VMCALL
                ctrl[S.C_EXIT_QUAL] = 0
            else:
                vec = isa.VEC_UD

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
                        need = user_need | (isa.PTE_W | isa.PTE_D if acc == ACC_WRITE else 0)
                        if (value & need) == need:
                            counters[S.EV_TLB_HIT] += 1
                            pa = (value & isa.PTE_FRAME_MASK) | (va & 0xFFF)
                            if pa >= mem_bytes:
                                pa = BUS_ERROR
                    if pa == MISS:
                        pa = tlb_miss(va, acc, cpl, ptbr, levels, mem, mem_bytes, tlb, tlb_mask,
                                      counters, ctrl)
                if pa < 0:
                    vec, err = raise_fault(pa, va, ctrl, counters)
                elif op == isa.OP_LD:
                    regs[a] = mem[pa >> 2]
                elif op == isa.OP_ST:
                    mem[pa >> 2] = regs[a]
                elif acc == ACC_WRITE:
                    # PUSH, CALL, CALLR, PUSHF: write the word, then move sp
                    if op == isa.OP_PUSH:
                        mem[pa >> 2] = regs[a]
                    elif op == isa.OP_PUSHF:
                        mem[pa >> 2] = iflag << 9
                    else:
                        mem[pa >> 2] = npc
                        if op == isa.OP_CALL:
                            off = word & 0xFFFFFF
                            npc = (npc + 4 * (off - ((off & 0x800000) << 1))) & isa.WORD_MASK
                        else:
                            npc = regs[a]
                    regs[isa.SP] = va
                else:
                    # POP, RET, POPF: read the word, move sp, then use the value
                    value = np.int64(mem[pa >> 2])
                    regs[isa.SP] = (va + 4) & isa.WORD_MASK
                    if op == isa.OP_POP:
                        regs[a] = value
                    elif op == isa.OP_RET:
                        npc = value
                    else:
                        new_if = (value >> 9) & 1
                        if cpl == 0:
                            iflag = new_if
                        elif new_if != iflag:
                            counters[S.EV_POPF_IGNORED] += 1

        if vec >= 0:
            if vec == VM_EXIT_PENDING:
                # ---- a VM exit: nothing retired, pc stays at the exiting instruction ---------
                ctrl[S.C_EXIT_INSTR] = word     # 0 if the fetch itself exited
                stop = S.STOP_VM_EXIT
                break
            # ---- the instruction faulted: deliver, return pc = the faulting instruction ----
            ctrl[S.C_PC] = pc
            ctrl[S.C_CPL] = cpl
            ctrl[S.C_IF] = iflag
            ctrl[S.C_TICKS] = ticks
            stop = deliver(vec, err, pc, regs, ctrl, mem, tlb, counters, trace, intercept, 0)
            pc = ctrl[S.C_PC]
            cpl = ctrl[S.C_CPL]
            iflag = ctrl[S.C_IF]
            user_need = isa.PTE_U if cpl == 3 else 0
            if stop != S.STOP_NONE:
                break
            continue
        # ---- retire -------------------------------------------------------------------------
        ticks += 1
        retired += 1
        counters[S.EV_OP_BASE + op] += 1
        ctrl[S.C_DELIVERIES] = 0
        pc = npc
        if op == isa.OP_SYSCALL or op == isa.OP_HLT:
            ctrl[S.C_PC] = pc
            ctrl[S.C_CPL] = cpl
            ctrl[S.C_IF] = iflag
            ctrl[S.C_TICKS] = ticks
            if op == isa.OP_SYSCALL:
                stop = deliver(isa.VEC_SYSCALL, 0, pc, regs, ctrl, mem, tlb, counters, trace,
                               intercept, 0)
                pc = ctrl[S.C_PC]
                cpl = ctrl[S.C_CPL]
                iflag = ctrl[S.C_IF]
                user_need = isa.PTE_U if cpl == 3 else 0
                if stop != S.STOP_NONE:
                    break
            elif iflag != 0 and ctrl[S.C_TIMER_PENDING] != 0:
                pass  # an interrupt is already waiting: it is taken at the next step
            elif iflag != 0 and ctrl[S.C_TIMER_PERIOD] != 0:
                if deadline > ticks:
                    counters[S.EV_IDLE_TICKS] += deadline - ticks
                    ticks = deadline
            else:
                stop = S.STOP_HALT
                break

    if vmx != 0 and stop == S.STOP_TRIPLE_FAULT:
        stop = S.STOP_VM_EXIT                     # a triple fault in non-root operation exits
        ctrl[S.C_EXIT_REASON] = S.EXIT_TRIPLE_FAULT
        ctrl[S.C_EXIT_QUAL] = 0
    ctrl[S.C_PC] = pc
    ctrl[S.C_CPL] = cpl
    ctrl[S.C_IF] = iflag
    ctrl[S.C_TICKS] = ticks
    ctrl[S.C_TIMER_DEADLINE] = deadline
    ctrl[S.C_STOP_REASON] = stop
    counters[S.EV_INSTRUCTIONS] += retired
    return stop
