"""The soft CPU of the ``emulation`` technique: the whole guest machine, in software.

This is a second implementation of the ISA's semantics (:mod:`kernel_sim.state` is the contract),
written for a different job than :mod:`kernel_sim.cpu`.  The hardware CPU *is* the machine; this
one is a program that *pretends* to be it, the way Bochs and QEMU do:

* the guest's registers and its *virtual CPU* (``vcpu``: an int64 array in the ``ctrl`` layout)
  are plain arrays;
* guest-physical memory is ``gmem``, the guest's slice of host memory.  Every access is checked
  against the guest's size (an address beyond it is the bus error #GP, as on the bare machine),
  so the guest cannot name a host address outside its slice;
* the MMU is a *soft MMU*: a software TLB with exactly the hardware TLB's size, index function
  and tagging, and a software page walker that sets A/D bits in guest memory;
* the devices (console, timer, block device with its own ``disk`` array) are software models;
  each port access counts one device emulation.

Two ways of running the guest (``translate_mode``):

**interpret** (Bochs): every instruction is fetched through the soft MMU, decoded and dispatched.

**translate** (QEMU): on entering a guest pc whose instruction is innocuous, look up a *block
cache* keyed by the guest-physical pc.  On a miss, *translate* a block: decode the instructions
from that address on -- up to and including a control transfer, up to (not including) a
privileged, sensitive, trapping or invalid instruction, or up to the end of the page, at most
``MAX_BLOCK`` instructions -- into pre-decoded micro-ops in ``uops`` (one row per instruction:
``op, a, b, x`` with the operand ``x`` already extracted, sign-extended or scaled).  Then run the
block from that buffer, no decoding.  Instructions a block cannot hold are interpreted one by
one, as QEMU calls a helper for them.  Blocks are keyed by *physical* address, so every process
that maps the same code shares its translation; a block never crosses a page, and before each
instruction of a block the soft TLB must still map the block's virtual page to the block's frame
(the fetch is checked exactly as the hardware would check it: same TLB hits, misses and faults).

Self-modifying code: ``codemap`` has one byte per guest word, set when the word is translated
into a block; ``pages[ppn, 0]`` counts the live blocks translated from page ``ppn``.  A write --
a guest store, a trap-frame push, a page walk setting an A/D bit, the disk's DMA -- to a word
marked in ``codemap`` invalidates all the blocks of its page at once (the page's generation
``pages[ppn, 1]`` moves on, so their cache entries no longer match) and ends the block being
run.  Writes to *data* that shares a page with code cost nothing (QEMU keeps a similar bitmap of
the bytes of each page that hold translated code).  When ``uops`` is full the whole cache is
flushed, as QEMU flushes its code buffer.

Performance notes: as in :mod:`kernel_sim.cpu`, the loop keeps the hot state in locals and makes
no call that passes arrays on its hot path (Numba would update reference counts on every call);
helpers with array arguments run only on slow paths (TLB misses, traps, ports, translation).

Separate software, shared facts: this file imports no code from the hardware CPU or MMU, but it
reads the machine's facts where they are defined -- opcodes, vectors, ports, page-table bits from
:mod:`kernel_sim.isa` (``isa.OP_ADD``), state indices and counters from :mod:`kernel_sim.state`
(``S.C_PC``, ``S.EV_TRAPS``) -- as QEMU's target code includes the architecture's headers.  Numba
compiles those module attributes in as constants, and :mod:`kernel_sim.jit` keys the on-disk
cache on ``isa.py`` and ``state.py`` too, so a changed constant recompiles the emulator.
"""
from __future__ import annotations

import numpy as np

from .. import isa
from .. import state as S
from ..jit import njit

# ---- the emulator's own counters (emu[]) ------------------------------------------------------
E_INTERPRETED = 0       # instructions dispatched one by one (retired)
E_TB_EXECUTED = 1       # instructions run from translated blocks (retired)
E_TB_ENTER = 2          # block entries
E_TRANSLATIONS = 3      # blocks translated
E_TRANSLATED_INSNS = 4  # instructions translated
E_CACHE_HITS = 5        # block entries that found their block in the cache
E_INVALIDATIONS = 6     # blocks discarded because the guest wrote to their page
E_TB_FLUSHES = 7        # full flushes of the block cache (micro-op buffer full)
E_DEVICE = 8            # port accesses emulated by the device models
E_UOP_TOP = 9           # first free row of uops (persists between runs)
E_SMC = 10              # set by an invalidation: the running block must end
NUM_EMU = 16

# ---- the soft MMU's own conventions (private to this file: the hardware MMU has its own) ------
ACC_READ, ACC_WRITE, ACC_FETCH = 0, 1, 2     # access kinds
BUS_ERROR = -1000       # soft_translate's answer for an address beyond guest memory (#GP)
MISS = -5000            # the inline soft-TLB test could not answer
NO_ACCESS = -1          # the instruction touches no data memory

#: the longest block the translator builds (instructions)
MAX_BLOCK = 64
#: columns of a micro-op row and of a block-cache slot
UOP_OP, UOP_A, UOP_B, UOP_X = 0, 1, 2, 3
TB_KEY, TB_GEN, TB_START, TB_LEN = 0, 1, 2, 3


# ================================================================================================
# Decoding (shared by the interpreter and the translator: scalar arguments only)
# ================================================================================================
@njit(inline="always")
def s32(x):
    """A 32-bit word read as a signed integer."""
    return x - ((x & 0x80000000) << 1)


@njit(inline="always")
def operand(op, word):
    """The operand ``x`` of an instruction word, in the form its execution uses.

    Three-register ALU: the register number c; ADDI/MOVI/LD/ST: the sign-extended imm16;
    LUI: imm16 << 16; shifts by a constant: the amount (0..31); branches: the byte offset
    4 * imm16; JMP/CALL: the byte offset 4 * imm24; everything else: imm16 (port, CR number).
    """
    imm = word & 0xFFFF
    if op >= isa.OP_ADD and op <= isa.OP_SLTU:
        return imm & 15
    if op == isa.OP_ADDI or op == isa.OP_MOVI or op == isa.OP_LD or op == isa.OP_ST:
        return imm - ((imm & 0x8000) << 1)
    if op == isa.OP_LUI:
        return imm << 16
    if op >= isa.OP_SHLI and op <= isa.OP_SARI:
        return imm & 31
    if op >= isa.OP_BEQ and op <= isa.OP_BGEU:
        return 4 * (imm - ((imm & 0x8000) << 1))
    if op == isa.OP_JMP or op == isa.OP_CALL:
        off = word & 0xFFFFFF
        return 4 * (off - ((off & 0x800000) << 1))
    return imm


@njit(inline="always")
def translatable(op):
    """Innocuous instructions go into blocks; the rest are interpreted one by one."""
    return ((op >= isa.OP_NOP and op <= isa.OP_LUI) or (op >= isa.OP_ADD and op <= isa.OP_SLTU)
            or (op >= isa.OP_ADDI and op <= isa.OP_SARI) or (op >= isa.OP_LD and op <= isa.OP_POP)
            or (op >= isa.OP_BEQ and op <= isa.OP_RET))


@njit(inline="always")
def ends_block(op):
    """Control transfers end a block (after themselves)."""
    return op >= isa.OP_BEQ and op <= isa.OP_RET


# ================================================================================================
# Self-modifying code: invalidating translated blocks
# ================================================================================================
@njit
def invalidate_page(ppn, pages, codemap, emu):
    """The guest wrote translated code in page ``ppn``: drop all the page's blocks."""
    emu[E_INVALIDATIONS] += pages[ppn, 0]
    pages[ppn, 0] = 0
    pages[ppn, 1] += 1
    for w in range(ppn << 10, (ppn + 1) << 10):
        codemap[w] = 0
    emu[E_SMC] = 1


@njit
def write_word(pa, value, gmem, pages, codemap, emu):
    """A slow-path write of guest-physical ``pa`` (trap frames, page-table bits, DMA)."""
    gmem[pa >> 2] = value
    if codemap[pa >> 2] != 0:
        invalidate_page(pa >> 12, pages, codemap, emu)


@njit
def flush_blocks(tbs, pages, codemap, emu):
    """The micro-op buffer is full: forget every block (QEMU's tb_flush)."""
    for s in range(tbs.shape[0]):
        tbs[s, TB_KEY] = 0
    for p in range(pages.shape[0]):
        pages[p, 0] = 0
    for w in range(codemap.shape[0]):
        codemap[w] = 0
    emu[E_UOP_TOP] = 0
    emu[E_TB_FLUSHES] += 1


@njit
def translate_block(pa, gmem, uops, tbs, pages, codemap, emu):
    """Translate the block at guest-physical ``pa`` into ``uops``; return (first row, length).

    Called when the block cache missed.  The cache is direct-mapped on the word address (slot
    ``(pa >> 2) & (slots - 1)``); a slot is valid if its key is ``pa + 1`` and its generation is
    still its page's (no write to the page since the translation).  The new block replaces
    whatever the slot held.
    """
    slot = (pa >> 2) & (tbs.shape[0] - 1)
    ppn = pa >> 12
    old = tbs[slot, TB_KEY] - 1
    if old >= 0 and tbs[slot, TB_GEN] == pages[old >> 12, 1]:
        pages[old >> 12, 0] -= 1            # a live block is evicted from its slot
    start = emu[E_UOP_TOP]
    if start + MAX_BLOCK > uops.shape[0]:
        flush_blocks(tbs, pages, codemap, emu)
        start = 0
    n = 0
    p = pa
    page_end = (pa | 0xFFF) + 1
    while p < page_end and n < MAX_BLOCK:
        word = np.int64(gmem[p >> 2])
        op = word >> 24
        if not translatable(op):
            break
        uops[start + n, UOP_OP] = op
        uops[start + n, UOP_A] = (word >> 20) & 15
        uops[start + n, UOP_B] = (word >> 16) & 15
        uops[start + n, UOP_X] = operand(op, word)
        codemap[p >> 2] = 1
        n += 1
        p += 4
        if ends_block(op):
            break
    tbs[slot, TB_KEY] = pa + 1
    tbs[slot, TB_GEN] = pages[ppn, 1]
    tbs[slot, TB_START] = start
    tbs[slot, TB_LEN] = n
    pages[ppn, 0] += 1
    emu[E_UOP_TOP] = start + n
    emu[E_TRANSLATIONS] += 1
    emu[E_TRANSLATED_INSNS] += n
    return start, n


# ================================================================================================
# The soft MMU (slow paths; the TLB-hit test is inline in the loop)
# ================================================================================================
@njit
def soft_walk(va, acc, cpl, ptbr, levels, gmem, mem_bytes, tlb, slot, key, counters, pages, codemap,
              emu):
    """Walk the guest's page tables in guest memory; fill soft-TLB entry ``slot`` on success."""
    write = acc == ACC_WRITE
    err = 0
    if write:
        err |= isa.PF_WRITE
    if cpl == 3:
        err |= isa.PF_USER
    if acc == ACC_FETCH:
        err |= isa.PF_FETCH
    top = levels * 10 + 12
    if top < 32 and (va >> top) != 0:
        return -1 - err
    table = ptbr & isa.PTE_FRAME_MASK
    perm = isa.PTE_W | isa.PTE_U
    pte = np.int64(0)
    pte_addr = 0
    for k in range(levels - 1, -1, -1):
        pte_addr = table + 4 * ((va >> (12 + 10 * k)) & 0x3FF)
        if pte_addr >= mem_bytes:
            return BUS_ERROR
        counters[S.EV_WALK_REFS] += 1
        pte = np.int64(gmem[pte_addr >> 2])
        if (pte & isa.PTE_P) == 0:
            return -1 - err
        if (pte & isa.PTE_A) == 0:
            pte |= isa.PTE_A
            write_word(pte_addr, pte, gmem, pages, codemap, emu)
        perm &= pte
        table = pte & isa.PTE_FRAME_MASK
    if write and (perm & isa.PTE_W) == 0:
        return -1 - (err | isa.PF_PRESENT)
    if cpl == 3 and (perm & isa.PTE_U) == 0:
        return -1 - (err | isa.PF_PRESENT)
    if write and (pte & isa.PTE_D) == 0:
        pte |= isa.PTE_D
        write_word(pte_addr, pte, gmem, pages, codemap, emu)
    tlb[2 * slot] = key
    tlb[2 * slot + 1] = table | (perm & (isa.PTE_W | isa.PTE_U)) | (pte & isa.PTE_D)
    pa = table | (va & 0xFFF)
    if pa >= mem_bytes:
        return BUS_ERROR
    return pa


@njit
def soft_tlb_miss(va, acc, cpl, ptbr, levels, gmem, mem_bytes, tlb, tlb_mask, counters, pages,
                  codemap, emu):
    """Count a soft-TLB miss and walk."""
    counters[S.EV_TLB_MISS] += 1
    vpn = va >> 12
    key = (((ptbr & 0xFFF) << 20) | vpn) + 1
    slot = (vpn ^ (vpn >> 7) ^ (vpn >> 14)) & tlb_mask
    return soft_walk(va, acc, cpl, ptbr, levels, gmem, mem_bytes, tlb, slot, key, counters,
                     pages, codemap, emu)


@njit
def soft_translate(va, acc, cpl, vcpu, gmem, tlb, counters, pages, codemap, emu):
    """Guest-virtual -> guest-physical for one access on a slow path (or a fault code < 0)."""
    mem_bytes = vcpu[S.C_MEM_BYTES]
    if (vcpu[S.C_PAGING] & 1) == 0:
        return va if va < mem_bytes else BUS_ERROR
    ptbr = vcpu[S.C_PTBR]
    tlb_mask = (tlb.shape[0] >> 1) - 1
    vpn = va >> 12
    i = 2 * ((vpn ^ (vpn >> 7) ^ (vpn >> 14)) & tlb_mask)
    if tlb[i] == (((ptbr & 0xFFF) << 20) | vpn) + 1:
        need = isa.PTE_W | isa.PTE_D if acc == ACC_WRITE else 0
        if cpl == 3:
            need |= isa.PTE_U
        value = tlb[i + 1]
        if (value & need) == need:
            counters[S.EV_TLB_HIT] += 1
            pa = (value & isa.PTE_FRAME_MASK) | (va & 0xFFF)
            return pa if pa < mem_bytes else BUS_ERROR
    return soft_tlb_miss(va, acc, cpl, ptbr, vcpu[S.C_LEVELS], gmem, mem_bytes, tlb, tlb_mask,
                         counters, pages, codemap, emu)


@njit
def flush_tlb(tlb, counters):
    for i in range(tlb.shape[0]):
        tlb[i] = 0
    counters[S.EV_TLB_FLUSHES] += 1


# ================================================================================================
# Traps (slow paths)
# ================================================================================================
@njit
def fault_vector(code, va, vcpu, counters):
    """A soft-MMU fault code -> (vector, error code); a page fault records its address."""
    if code == BUS_ERROR:
        return isa.VEC_GP, 0
    vcpu[S.C_FAULT_ADDR] = va
    counters[S.EV_PAGE_FAULTS] += 1
    return isa.VEC_PF, -1 - code


@njit
def deliver(vec, err, rp, regs, vcpu, gmem, tlb, counters, pages, codemap, emu):
    """Deliver trap ``vec`` to the guest's handler; return STOP_NONE or why the run stops."""
    counters[S.EV_VECTOR_BASE + vec] += 1
    counters[S.EV_TRAPS] += 1
    vcpu[S.C_PC] = rp
    tvb = vcpu[S.C_TVB]
    if tvb == isa.NO_TVB:
        vcpu[S.C_STOP_VECTOR] = vec
        vcpu[S.C_STOP_ERROR] = err
        return S.STOP_UNHANDLED_TRAP
    p = soft_translate((tvb + 4 * vec) & isa.WORD_MASK, ACC_READ, 0, vcpu, gmem, tlb, counters,
                       pages, codemap, emu)
    if p < 0:
        vcpu[S.C_STOP_VECTOR] = vec
        vcpu[S.C_STOP_ERROR] = err
        return S.STOP_TRIPLE_FAULT
    handler = np.int64(gmem[p >> 2])
    if handler == 0:
        vcpu[S.C_STOP_VECTOR] = vec
        vcpu[S.C_STOP_ERROR] = err
        return S.STOP_UNHANDLED_TRAP
    vcpu[S.C_DELIVERIES] += 1
    if vcpu[S.C_DELIVERIES] > S.MAX_DELIVERIES:
        vcpu[S.C_STOP_VECTOR] = vec
        vcpu[S.C_STOP_ERROR] = err
        return S.STOP_TRIPLE_FAULT
    old_cpl = vcpu[S.C_CPL]
    old_sp = regs[isa.SP]
    sp = vcpu[S.C_KSP] if old_cpl > 0 else old_sp
    where = np.empty(5, np.int64)
    for k in range(5):
        where[k] = soft_translate((sp - 4 * (k + 1)) & isa.WORD_MASK, ACC_WRITE, 0, vcpu, gmem, tlb,
                                  counters, pages, codemap, emu)
        if where[k] < 0:
            vcpu[S.C_STOP_VECTOR] = vec
            vcpu[S.C_STOP_ERROR] = err
            return S.STOP_TRIPLE_FAULT
    write_word(where[0], old_sp, gmem, pages, codemap, emu)
    write_word(where[1], vcpu[S.C_IF] << 9, gmem, pages, codemap, emu)
    write_word(where[2], old_cpl, gmem, pages, codemap, emu)
    write_word(where[3], rp, gmem, pages, codemap, emu)
    write_word(where[4], err, gmem, pages, codemap, emu)
    regs[isa.SP] = (sp - 20) & isa.WORD_MASK
    vcpu[S.C_CPL] = 0
    vcpu[S.C_IF] = 0
    vcpu[S.C_PC] = handler
    return S.STOP_NONE


@njit
def trap_return(op, regs, vcpu, gmem, tlb, counters, pages, codemap, emu):
    """IRET / SYSRET: read the whole five-word frame, then commit; (-1, 0) or a fault."""
    sp = regs[isa.SP]
    frame = np.empty(5, np.int64)
    for k in range(5):
        va = (sp + 4 * k) & isa.WORD_MASK
        p = soft_translate(va, ACC_READ, vcpu[S.C_CPL], vcpu, gmem, tlb, counters, pages, codemap,
                           emu)
        if p < 0:
            return fault_vector(p, va, vcpu, counters)
        frame[k] = gmem[p >> 2]
    vcpu[S.C_PC] = frame[1]
    regs[isa.SP] = frame[4]
    if op == isa.OP_IRET:
        counters[S.EV_IRET] += 1
        vcpu[S.C_CPL] = frame[2] & 3
        vcpu[S.C_IF] = (frame[3] >> 9) & 1
    else:
        counters[S.EV_SYSRET] += 1
        vcpu[S.C_CPL] = 3
        vcpu[S.C_IF] = 1
    return -1, 0


# ================================================================================================
# Device models (slow paths)
# ================================================================================================
@njit
def device_in(port, vcpu, counters, emu):
    counters[S.EV_IO_IN] += 1
    emu[E_DEVICE] += 1
    if port == isa.PORT_CONSOLE:
        return 0
    if port == isa.PORT_TIMER:
        return vcpu[S.C_TIMER_PERIOD]
    if port == isa.PORT_TICKS:
        return vcpu[S.C_TICKS] & isa.WORD_MASK
    if port == isa.PORT_BLK_SECTOR:
        return vcpu[S.C_BLK_SECTOR]
    if port == isa.PORT_BLK_BUFFER:
        return vcpu[S.C_BLK_BUFFER]
    if port == isa.PORT_BLK_COMMAND:
        return vcpu[S.C_BLK_STATUS]
    if port == isa.PORT_BLK_SIZE:
        return vcpu[S.C_DISK_SECTORS]
    return isa.WORD_MASK


@njit
def disk_command(command, vcpu, gmem, disk, counters, pages, codemap, emu):
    """The block device model: a synchronous one-sector DMA between ``disk`` and guest RAM."""
    if command != isa.BLK_READ and command != isa.BLK_WRITE:
        vcpu[S.C_BLK_STATUS] = S.BLK_BAD_COMMAND
        return
    sector = vcpu[S.C_BLK_SECTOR]
    buf = vcpu[S.C_BLK_BUFFER] & 0xFFFFFFFC
    if sector >= vcpu[S.C_DISK_SECTORS] or buf + 4 * S.BLK_SECTOR_WORDS > vcpu[S.C_MEM_BYTES]:
        vcpu[S.C_BLK_STATUS] = S.BLK_BAD_ADDRESS
        return
    first = sector * S.BLK_SECTOR_WORDS
    if command == isa.BLK_READ:
        for k in range(S.BLK_SECTOR_WORDS):
            write_word(buf + 4 * k, disk[first + k], gmem, pages, codemap, emu)
        counters[S.EV_BLK_READS] += 1
    else:
        for k in range(S.BLK_SECTOR_WORDS):
            disk[first + k] = gmem[(buf >> 2) + k]
        counters[S.EV_BLK_WRITES] += 1
    vcpu[S.C_BLK_STATUS] = S.BLK_OK


@njit
def device_out(port, value, vcpu, gmem, disk, counters, console, pages, codemap, emu):
    counters[S.EV_IO_OUT] += 1
    emu[E_DEVICE] += 1
    if port == isa.PORT_CONSOLE:
        n = vcpu[S.C_CONSOLE_LEN]
        if n < console.shape[0]:
            console[n] = value & 0xFF
            vcpu[S.C_CONSOLE_LEN] = n + 1
        else:
            counters[S.EV_CONSOLE_DROPPED] += 1
    elif port == isa.PORT_TIMER:
        vcpu[S.C_TIMER_PERIOD] = value
        vcpu[S.C_TIMER_DEADLINE] = S.NEVER if value == 0 else vcpu[S.C_TICKS] + value
    elif port == isa.PORT_BLK_SECTOR:
        vcpu[S.C_BLK_SECTOR] = value
    elif port == isa.PORT_BLK_BUFFER:
        vcpu[S.C_BLK_BUFFER] = value
    elif port == isa.PORT_BLK_COMMAND:
        disk_command(value, vcpu, gmem, disk, counters, pages, codemap, emu)


@njit
def cr_index(cr):
    """Control-register number (``isa.CR_*``) -> vcpu[] index, or -1 if there is none."""
    if cr < 0 or cr >= len(S.CR_TO_CTRL):
        return -1
    return S.CR_TO_CTRL[cr]


# ================================================================================================
# The emulator loop
# ================================================================================================
@njit
def emulate(regs, vcpu, gmem, disk, tlb, counters, console, emu, uops, tbs, pages,
            codemap, translate_mode, budget):
    """Run the guest for at most ``budget`` instructions; return the stop reason.

    One iteration runs one guest instruction.  Inside a translated block (``blk < blk_end``) the
    next micro-op runs if the timer is not due, the budget not spent and the soft TLB still maps
    the block's page; otherwise the block is left and the *general step* runs: timer, interrupt,
    budget, fetch through the soft MMU, then either a block lookup (translate mode, innocuous
    instruction) or a decode for the interpreter.  Both paths end in the same execute code, so
    the two modes cannot disagree about what an instruction does.
    """
    mem_bytes = vcpu[S.C_MEM_BYTES]
    tlb_mask = (tlb.shape[0] >> 1) - 1
    strict = vcpu[S.C_STRICT]
    levels = vcpu[S.C_LEVELS]
    pc = vcpu[S.C_PC]
    cpl = vcpu[S.C_CPL]
    iflag = vcpu[S.C_IF]
    paging = vcpu[S.C_PAGING] & 1
    ptbr = vcpu[S.C_PTBR]
    asid_key = ((ptbr & 0xFFF) << 20) + 1
    user_need = isa.PTE_U if cpl == 3 else 0
    ticks = vcpu[S.C_TICKS]
    deadline = vcpu[S.C_TIMER_DEADLINE]
    data_limit = vcpu[S.C_DATA_LIMIT]     # the contract's monitor-only limit (0 when booted here)
    retired = 0
    n_interp = 0
    n_tb = 0
    n_enter = 0
    n_hits = 0
    tb_mask = tbs.shape[0] - 1
    smc = False      # a write hit translated code: the running block must end
    blk = 0          # next micro-op of the running block
    blk_end = 0      # blk == blk_end: no block is running
    b_slot = 0       # the running block's soft-TLB entry, key and frame (the fetch check)
    b_key = 0
    b_frame = 0
    emu[E_SMC] = 0
    stop = S.STOP_NONE

    while True:
        vec = -1
        err = 0
        in_tb = False
        op = 0
        a = 0
        b = 0
        x = 0
        if blk < blk_end:
            # ---- the next micro-op of a translated block ------------------------------------
            if ticks < deadline and retired < budget:
                if paging == 0:
                    in_tb = True
                else:
                    value = tlb[b_slot + 1]
                    if (tlb[b_slot] == b_key and (value & user_need) == user_need
                            and (value & isa.PTE_FRAME_MASK) == b_frame):
                        counters[S.EV_TLB_HIT] += 1
                        in_tb = True
            if in_tb:
                op = uops[blk, UOP_OP]
                a = uops[blk, UOP_A]
                b = uops[blk, UOP_B]
                x = uops[blk, UOP_X]
                blk += 1
            else:
                blk = 0
                blk_end = 0
        if not in_tb:
            # ---- the general step: timer, interrupt, budget, fetch ---------------------------
            if ticks >= deadline:
                vcpu[S.C_TIMER_PENDING] = 1
                deadline += vcpu[S.C_TIMER_PERIOD]
            if iflag != 0 and vcpu[S.C_TIMER_PENDING] != 0:
                vcpu[S.C_TIMER_PENDING] = 0
                vcpu[S.C_CPL] = cpl
                vcpu[S.C_IF] = iflag
                vcpu[S.C_TICKS] = ticks
                stop = deliver(isa.VEC_TIMER, 0, pc, regs, vcpu, gmem, tlb, counters, pages,
                               codemap, emu)
                pc = vcpu[S.C_PC]
                cpl = vcpu[S.C_CPL]
                iflag = vcpu[S.C_IF]
                user_need = isa.PTE_U if cpl == 3 else 0
                if stop != S.STOP_NONE:
                    break
                continue
            if retired >= budget:
                stop = S.STOP_BUDGET
                break
            if paging == 0:
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
                    pa = soft_tlb_miss(pc, ACC_FETCH, cpl, ptbr, levels, gmem, mem_bytes, tlb,
                                       tlb_mask, counters, pages, codemap, emu)
            if pa < 0:
                vec, err = fault_vector(pa, pc, vcpu, counters)
            else:
                word = np.int64(gmem[pa >> 2])
                op = word >> 24
                if translate_mode != 0 and translatable(op):
                    # ---- enter a translated block: the cache's hit test inline -------------
                    slot = (pa >> 2) & tb_mask
                    if tbs[slot, TB_KEY] == pa + 1 and tbs[slot, TB_GEN] == pages[pa >> 12, 1]:
                        n_hits += 1
                        blk = tbs[slot, TB_START]
                        blk_end = blk + tbs[slot, TB_LEN]
                    else:
                        blk, n = translate_block(pa, gmem, uops, tbs, pages, codemap, emu)
                        blk_end = blk + n
                    n_enter += 1
                    vpn = pc >> 12
                    b_slot = 2 * ((vpn ^ (vpn >> 7) ^ (vpn >> 14)) & tlb_mask)
                    b_key = asid_key + vpn
                    b_frame = pa & isa.PTE_FRAME_MASK
                    in_tb = True
                    a = uops[blk, UOP_A]
                    b = uops[blk, UOP_B]
                    x = uops[blk, UOP_X]
                    blk += 1
                else:
                    a = (word >> 20) & 15
                    b = (word >> 16) & 15
                    x = operand(op, word)

        npc = (pc + 4) & isa.WORD_MASK
        if vec < 0:
            acc = NO_ACCESS
            va = 0
            # ---- execute --------------------------------------------------------------------
            if op == isa.OP_ADDI:
                regs[a] = (regs[b] + x) & isa.WORD_MASK
            elif op == isa.OP_ADD:
                regs[a] = (regs[b] + regs[x]) & isa.WORD_MASK
            elif op == isa.OP_LD:
                va = (regs[b] + x) & isa.WORD_MASK
                acc = ACC_READ
            elif op == isa.OP_ST:
                va = (regs[b] + x) & isa.WORD_MASK
                acc = ACC_WRITE
            elif op == isa.OP_BNE:
                if regs[a] != regs[b]:
                    npc = (npc + x) & isa.WORD_MASK
            elif op == isa.OP_BEQ:
                if regs[a] == regs[b]:
                    npc = (npc + x) & isa.WORD_MASK
            elif op == isa.OP_BLT:
                if s32(regs[a]) < s32(regs[b]):
                    npc = (npc + x) & isa.WORD_MASK
            elif op == isa.OP_BGE:
                if s32(regs[a]) >= s32(regs[b]):
                    npc = (npc + x) & isa.WORD_MASK
            elif op == isa.OP_BLTU:
                if regs[a] < regs[b]:
                    npc = (npc + x) & isa.WORD_MASK
            elif op == isa.OP_BGEU:
                if regs[a] >= regs[b]:
                    npc = (npc + x) & isa.WORD_MASK
            elif op == isa.OP_JMP:
                npc = (npc + x) & isa.WORD_MASK
            elif op == isa.OP_MOV:
                regs[a] = regs[b]
            elif op == isa.OP_MOVI:
                regs[a] = x & isa.WORD_MASK
            elif op == isa.OP_LUI:
                regs[a] = x
            elif op == isa.OP_SUB:
                regs[a] = (regs[b] - regs[x]) & isa.WORD_MASK
            elif op == isa.OP_AND:
                regs[a] = regs[b] & regs[x]
            elif op == isa.OP_OR:
                regs[a] = regs[b] | regs[x]
            elif op == isa.OP_XOR:
                regs[a] = regs[b] ^ regs[x]
            elif op == isa.OP_SHL:
                regs[a] = (regs[b] << (regs[x] & 31)) & isa.WORD_MASK
            elif op == isa.OP_SHR:
                regs[a] = regs[b] >> (regs[x] & 31)
            elif op == isa.OP_SAR:
                regs[a] = (s32(regs[b]) >> (regs[x] & 31)) & isa.WORD_MASK
            elif op == isa.OP_MUL:
                p = regs[b]
                q = regs[x]
                regs[a] = ((p & 0xFFFF) * q + ((((p >> 16) * q) & 0xFFFF) << 16)) & isa.WORD_MASK
            elif op == isa.OP_DIV or op == isa.OP_MOD:
                d = regs[x]
                if d == 0:
                    vec = isa.VEC_DE
                elif op == isa.OP_DIV:
                    regs[a] = regs[b] // d
                else:
                    regs[a] = regs[b] % d
            elif op == isa.OP_SLT:
                regs[a] = 1 if s32(regs[b]) < s32(regs[x]) else 0
            elif op == isa.OP_SLTU:
                regs[a] = 1 if regs[b] < regs[x] else 0
            elif op == isa.OP_ANDI:
                regs[a] = regs[b] & x
            elif op == isa.OP_ORI:
                regs[a] = regs[b] | x
            elif op == isa.OP_XORI:
                regs[a] = regs[b] ^ x
            elif op == isa.OP_SHLI:
                regs[a] = (regs[b] << x) & isa.WORD_MASK
            elif op == isa.OP_SHRI:
                regs[a] = regs[b] >> x
            elif op == isa.OP_SARI:
                regs[a] = (s32(regs[b]) >> x) & isa.WORD_MASK
            elif op == isa.OP_NOP:
                pass
            elif op == isa.OP_PUSH or op == isa.OP_CALL or op == isa.OP_CALLR:
                va = (regs[isa.SP] - 4) & isa.WORD_MASK
                acc = ACC_WRITE
            elif op == isa.OP_POP or op == isa.OP_RET:
                va = regs[isa.SP]
                acc = ACC_READ
            elif op == isa.OP_JR:
                npc = regs[a]
            elif op == isa.OP_SYSCALL:
                pass
            elif op >= isa.OP_PUSHF and op <= isa.OP_RDTVB:
                if strict != 0 and cpl != 0:
                    vec = isa.VEC_GP
                    counters[S.EV_PRIV_FAULTS] += 1
                elif op == isa.OP_PUSHF:
                    va = (regs[isa.SP] - 4) & isa.WORD_MASK
                    acc = ACC_WRITE
                elif op == isa.OP_POPF:
                    va = regs[isa.SP]
                    acc = ACC_READ
                elif op == isa.OP_GETCPL:
                    regs[a] = cpl
                else:
                    regs[a] = vcpu[S.C_TVB]
            elif op >= isa.OP_SYSRET and op <= isa.OP_TLBFLUSH:
                if cpl != 0:
                    vec = isa.VEC_GP
                    counters[S.EV_PRIV_FAULTS] += 1
                elif op == isa.OP_CLI:
                    iflag = 0
                elif op == isa.OP_STI:
                    iflag = 1
                elif op == isa.OP_IN:
                    vcpu[S.C_TICKS] = ticks
                    regs[a] = device_in(x, vcpu, counters, emu)
                elif op == isa.OP_OUT:
                    vcpu[S.C_TICKS] = ticks
                    vcpu[S.C_TIMER_DEADLINE] = deadline
                    device_out(x, regs[a], vcpu, gmem, disk, counters, console, pages, codemap, emu)
                    deadline = vcpu[S.C_TIMER_DEADLINE]
                elif op == isa.OP_HLT:
                    counters[S.EV_HLT] += 1
                elif op == isa.OP_WRCR:
                    idx = cr_index(x)
                    if idx < 0:
                        vec = isa.VEC_GP
                    else:
                        counters[S.EV_CR_WRITES] += 1
                        value = regs[a]
                        vcpu[idx] = value
                        if idx == S.C_PAGING:
                            counters[S.EV_PAGING_WRITES] += 1
                            paging = value & 1
                            flush_tlb(tlb, counters)
                        elif idx == S.C_PTBR:
                            counters[S.EV_PTBR_WRITES] += 1
                            ptbr = value
                            asid_key = ((ptbr & 0xFFF) << 20) + 1
                            if (value & 0xFFF) == 0:
                                flush_tlb(tlb, counters)
                elif op == isa.OP_RDCR:
                    idx = cr_index(x)
                    if idx < 0:
                        vec = isa.VEC_GP
                    else:
                        counters[S.EV_CR_READS] += 1
                        if idx == S.C_PTBR:
                            counters[S.EV_PTBR_READS] += 1
                        regs[a] = vcpu[idx]
                elif op == isa.OP_INVLPG:
                    counters[S.EV_INVLPG] += 1
                    vpn = regs[a] >> 12
                    i = 2 * ((vpn ^ (vpn >> 7) ^ (vpn >> 14)) & tlb_mask)
                    if tlb[i] == asid_key + vpn:
                        tlb[i] = 0
                        tlb[i + 1] = 0
                elif op == isa.OP_TLBFLUSH:
                    flush_tlb(tlb, counters)
                else:
                    vcpu[S.C_CPL] = cpl
                    vcpu[S.C_IF] = iflag
                    vec, err = trap_return(op, regs, vcpu, gmem, tlb, counters, pages, codemap, emu)
                    if vec < 0:
                        npc = vcpu[S.C_PC]
                        cpl = vcpu[S.C_CPL]
                        iflag = vcpu[S.C_IF]
                        user_need = isa.PTE_U if cpl == 3 else 0
            else:
                vec = isa.VEC_UD

            # ---- the data access, through the soft MMU (TLB-hit test inline) ----------------
            if acc != NO_ACCESS:
                if data_limit != 0 and cpl != 0 and va >= data_limit:
                    pa = BUS_ERROR
                elif paging == 0:
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
                        emu[E_SMC] = 0
                        pa = soft_tlb_miss(va, acc, cpl, ptbr, levels, gmem, mem_bytes, tlb,
                                           tlb_mask, counters, pages, codemap, emu)
                        if emu[E_SMC] != 0:
                            smc = True      # the walk set an A/D bit in a page of code
                if pa < 0:
                    vec, err = fault_vector(pa, va, vcpu, counters)
                elif acc == ACC_WRITE:
                    if op == isa.OP_ST or op == isa.OP_PUSH:
                        gmem[pa >> 2] = regs[a]
                    elif op == isa.OP_PUSHF:
                        gmem[pa >> 2] = iflag << 9
                    else:
                        gmem[pa >> 2] = npc
                        if op == isa.OP_CALL:
                            npc = (npc + x) & isa.WORD_MASK
                        else:
                            npc = regs[a]
                    if op != isa.OP_ST:
                        regs[isa.SP] = va
                    if codemap[pa >> 2] != 0:
                        invalidate_page(pa >> 12, pages, codemap, emu)
                        smc = True
                elif op == isa.OP_LD:
                    regs[a] = gmem[pa >> 2]
                else:
                    value = np.int64(gmem[pa >> 2])
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
            # ---- the instruction faulted: leave any block and deliver -----------------------
            blk = 0
            blk_end = 0
            vcpu[S.C_CPL] = cpl
            vcpu[S.C_IF] = iflag
            vcpu[S.C_TICKS] = ticks
            stop = deliver(vec, err, pc, regs, vcpu, gmem, tlb, counters, pages, codemap, emu)
            pc = vcpu[S.C_PC]
            cpl = vcpu[S.C_CPL]
            iflag = vcpu[S.C_IF]
            user_need = isa.PTE_U if cpl == 3 else 0
            smc = False
            if stop != S.STOP_NONE:
                break
            continue
        # ---- retire -------------------------------------------------------------------------
        ticks += 1
        retired += 1
        if in_tb:
            n_tb += 1
        else:
            n_interp += 1
        counters[S.EV_OP_BASE + op] += 1
        vcpu[S.C_DELIVERIES] = 0
        pc = npc
        if smc:
            smc = False
            blk = 0             # translated code changed under the running block: leave it
            blk_end = 0
        if op == isa.OP_SYSCALL or op == isa.OP_HLT:
            vcpu[S.C_PC] = pc
            vcpu[S.C_CPL] = cpl
            vcpu[S.C_IF] = iflag
            vcpu[S.C_TICKS] = ticks
            if op == isa.OP_SYSCALL:
                stop = deliver(isa.VEC_SYSCALL, 0, pc, regs, vcpu, gmem, tlb, counters, pages,
                               codemap, emu)
                pc = vcpu[S.C_PC]
                cpl = vcpu[S.C_CPL]
                iflag = vcpu[S.C_IF]
                user_need = isa.PTE_U if cpl == 3 else 0
                if stop != S.STOP_NONE:
                    break
            elif iflag != 0 and vcpu[S.C_TIMER_PENDING] != 0:
                pass
            elif iflag != 0 and vcpu[S.C_TIMER_PERIOD] != 0:
                if deadline > ticks:
                    counters[S.EV_IDLE_TICKS] += deadline - ticks
                    ticks = deadline
            else:
                stop = S.STOP_HALT
                break

    vcpu[S.C_PC] = pc
    vcpu[S.C_CPL] = cpl
    vcpu[S.C_IF] = iflag
    vcpu[S.C_TICKS] = ticks
    vcpu[S.C_TIMER_DEADLINE] = deadline
    vcpu[S.C_STOP_REASON] = stop
    counters[S.EV_INSTRUCTIONS] += retired
    emu[E_INTERPRETED] += n_interp
    emu[E_TB_EXECUTED] += n_tb
    emu[E_TB_ENTER] += n_enter
    emu[E_CACHE_HITS] += n_hits
    emu[E_SMC] = 0
    return stop
