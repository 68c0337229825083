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
Constants are repeated here because Numba freezes module globals and its cache only notices
edits to this file.
"""
from __future__ import annotations

import numpy as np
from numba import njit

# ---- ctrl[] indices (kernel_sim.state) ----------------------------------------------------------
C_PC, C_CPL, C_IF, C_PAGING, C_PTBR, C_FAULT_ADDR, C_TVB, C_KSP, C_SCRATCH = range(9)
C_TICKS, C_TIMER_PERIOD, C_TIMER_DEADLINE, C_TIMER_PENDING, C_STRICT, C_LEVELS = range(9, 15)
C_STOP_REASON, C_STOP_VECTOR, C_STOP_ERROR, C_CONSOLE_LEN = 16, 17, 18, 19
C_DELIVERIES, C_MEM_BYTES, C_DISK_SECTORS = 22, 23, 24
C_BLK_SECTOR, C_BLK_BUFFER, C_BLK_STATUS, C_DATA_LIMIT = 25, 26, 27, 28

# ---- guest event counters (kernel_sim.state's EV_* layout) -----------------------------------
EV_INSTRUCTIONS, EV_TRAPS, EV_TLB_HIT, EV_TLB_MISS, EV_WALK_REFS, EV_PAGE_FAULTS = range(6)
EV_TLB_FLUSHES, EV_INVLPG, EV_IO_IN, EV_IO_OUT, EV_HLT, EV_IDLE_TICKS = range(6, 12)
EV_CR_WRITES, EV_CR_READS, EV_PRIV_FAULTS, EV_POPF_IGNORED, EV_CONSOLE_DROPPED = range(12, 17)
EV_SYSRET, EV_IRET, EV_BLK_READS, EV_BLK_WRITES = range(17, 21)
EV_PTBR_WRITES, EV_PTBR_READS, EV_PAGING_WRITES = range(21, 24)
EV_VECTOR_BASE = 32
EV_OP_BASE = 288

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

# ---- stop reasons, vectors, ports ---------------------------------------------------------------
STOP_NONE, STOP_BUDGET, STOP_HALT, STOP_UNHANDLED_TRAP = 0, 1, 2, 3
STOP_TRIPLE_FAULT = 5
NEVER = 1 << 62
MASK32 = 0xFFFFFFFF
NO_TVB = 0xFFFFFFFF
SP = 15
VEC_DE, VEC_UD, VEC_GP, VEC_PF, VEC_TIMER, VEC_SYSCALL = 0, 6, 13, 14, 32, 0x80
MAX_DELIVERIES = 16
PORT_CONSOLE, PORT_TIMER, PORT_TICKS = 0x10, 0x20, 0x21
PORT_BLK_SECTOR, PORT_BLK_BUFFER, PORT_BLK_COMMAND, PORT_BLK_SIZE = 0x30, 0x31, 0x32, 0x33
BLK_READ, BLK_WRITE = 1, 2
BLK_OK, BLK_BAD_ADDRESS, BLK_BAD_COMMAND = 0, 1, 2
SECTOR_WORDS = 128

# ---- MMU constants --------------------------------------------------------------------------
PTE_P, PTE_W, PTE_U, PTE_A, PTE_D = 1, 2, 4, 32, 64
FRAME_MASK = 0xFFFFF000
ACC_READ, ACC_WRITE, ACC_FETCH = 0, 1, 2
PF_PRESENT, PF_WRITE, PF_USER, PF_FETCH = 1, 2, 4, 16
BUS_ERROR = -1000
MISS = -5000
NO_ACCESS = -1

# ---- opcodes (tests/test_emulation.py checks them against kernel_sim.isa) ----------------------
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

#: the longest block the translator builds (instructions)
MAX_BLOCK = 64
#: columns of a micro-op row and of a block-cache slot
UOP_OP, UOP_A, UOP_B, UOP_X = 0, 1, 2, 3
TB_KEY, TB_GEN, TB_START, TB_LEN = 0, 1, 2, 3


# ================================================================================================
# Decoding (shared by the interpreter and the translator: scalar arguments only)
# ================================================================================================
@njit(cache=True, inline="always")
def s32(x):
    """A 32-bit word read as a signed integer."""
    return x - ((x & 0x80000000) << 1)


@njit(cache=True, inline="always")
def operand(op, word):
    """The operand ``x`` of an instruction word, in the form its execution uses.

    Three-register ALU: the register number c; ADDI/MOVI/LD/ST: the sign-extended imm16;
    LUI: imm16 << 16; shifts by a constant: the amount (0..31); branches: the byte offset
    4 * imm16; JMP/CALL: the byte offset 4 * imm24; everything else: imm16 (port, CR number).
    """
    imm = word & 0xFFFF
    if op >= OP_ADD and op <= OP_SLTU:
        return imm & 15
    if op == OP_ADDI or op == OP_MOVI or op == OP_LD or op == OP_ST:
        return imm - ((imm & 0x8000) << 1)
    if op == OP_LUI:
        return imm << 16
    if op >= OP_SHLI and op <= OP_SARI:
        return imm & 31
    if op >= OP_BEQ and op <= OP_BGEU:
        return 4 * (imm - ((imm & 0x8000) << 1))
    if op == OP_JMP or op == OP_CALL:
        off = word & 0xFFFFFF
        return 4 * (off - ((off & 0x800000) << 1))
    return imm


@njit(cache=True, inline="always")
def translatable(op):
    """Innocuous instructions go into blocks; the rest are interpreted one by one."""
    return ((op >= OP_NOP and op <= OP_LUI) or (op >= OP_ADD and op <= OP_SLTU)
            or (op >= OP_ADDI and op <= OP_SARI) or (op >= OP_LD and op <= OP_POP)
            or (op >= OP_BEQ and op <= OP_RET))


@njit(cache=True, inline="always")
def ends_block(op):
    """Control transfers end a block (after themselves)."""
    return op >= OP_BEQ and op <= OP_RET


# ================================================================================================
# Self-modifying code: invalidating translated blocks
# ================================================================================================
@njit(cache=True)
def invalidate_page(ppn, pages, codemap, emu):
    """The guest wrote translated code in page ``ppn``: drop all the page's blocks."""
    emu[E_INVALIDATIONS] += pages[ppn, 0]
    pages[ppn, 0] = 0
    pages[ppn, 1] += 1
    for w in range(ppn << 10, (ppn + 1) << 10):
        codemap[w] = 0
    emu[E_SMC] = 1


@njit(cache=True)
def write_word(pa, value, gmem, pages, codemap, emu):
    """A slow-path write of guest-physical ``pa`` (trap frames, page-table bits, DMA)."""
    gmem[pa >> 2] = value
    if codemap[pa >> 2] != 0:
        invalidate_page(pa >> 12, pages, codemap, emu)


@njit(cache=True)
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


@njit(cache=True)
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
@njit(cache=True)
def soft_walk(va, acc, cpl, ptbr, levels, gmem, mem_bytes, tlb, slot, key, counters, pages, codemap,
              emu):
    """Walk the guest's page tables in guest memory; fill soft-TLB entry ``slot`` on success."""
    write = acc == ACC_WRITE
    err = 0
    if write:
        err |= PF_WRITE
    if cpl == 3:
        err |= PF_USER
    if acc == ACC_FETCH:
        err |= PF_FETCH
    top = levels * 10 + 12
    if top < 32 and (va >> top) != 0:
        return -1 - err
    table = ptbr & FRAME_MASK
    perm = PTE_W | PTE_U
    pte = np.int64(0)
    pte_addr = 0
    for k in range(levels - 1, -1, -1):
        pte_addr = table + 4 * ((va >> (12 + 10 * k)) & 0x3FF)
        if pte_addr >= mem_bytes:
            return BUS_ERROR
        counters[EV_WALK_REFS] += 1
        pte = np.int64(gmem[pte_addr >> 2])
        if (pte & PTE_P) == 0:
            return -1 - err
        if (pte & PTE_A) == 0:
            pte |= PTE_A
            write_word(pte_addr, pte, gmem, pages, codemap, emu)
        perm &= pte
        table = pte & FRAME_MASK
    if write and (perm & PTE_W) == 0:
        return -1 - (err | PF_PRESENT)
    if cpl == 3 and (perm & PTE_U) == 0:
        return -1 - (err | PF_PRESENT)
    if write and (pte & PTE_D) == 0:
        pte |= PTE_D
        write_word(pte_addr, pte, gmem, pages, codemap, emu)
    tlb[2 * slot] = key
    tlb[2 * slot + 1] = table | (perm & (PTE_W | PTE_U)) | (pte & PTE_D)
    pa = table | (va & 0xFFF)
    if pa >= mem_bytes:
        return BUS_ERROR
    return pa


@njit(cache=True)
def soft_tlb_miss(va, acc, cpl, ptbr, levels, gmem, mem_bytes, tlb, tlb_mask, counters, pages,
                  codemap, emu):
    """Count a soft-TLB miss and walk."""
    counters[EV_TLB_MISS] += 1
    vpn = va >> 12
    key = (((ptbr & 0xFFF) << 20) | vpn) + 1
    slot = (vpn ^ (vpn >> 7) ^ (vpn >> 14)) & tlb_mask
    return soft_walk(va, acc, cpl, ptbr, levels, gmem, mem_bytes, tlb, slot, key, counters,
                     pages, codemap, emu)


@njit(cache=True)
def soft_translate(va, acc, cpl, vcpu, gmem, tlb, counters, pages, codemap, emu):
    """Guest-virtual -> guest-physical for one access on a slow path (or a fault code < 0)."""
    mem_bytes = vcpu[C_MEM_BYTES]
    if (vcpu[C_PAGING] & 1) == 0:
        return va if va < mem_bytes else BUS_ERROR
    ptbr = vcpu[C_PTBR]
    tlb_mask = (tlb.shape[0] >> 1) - 1
    vpn = va >> 12
    i = 2 * ((vpn ^ (vpn >> 7) ^ (vpn >> 14)) & tlb_mask)
    if tlb[i] == (((ptbr & 0xFFF) << 20) | vpn) + 1:
        need = PTE_W | PTE_D if acc == ACC_WRITE else 0
        if cpl == 3:
            need |= PTE_U
        value = tlb[i + 1]
        if (value & need) == need:
            counters[EV_TLB_HIT] += 1
            pa = (value & FRAME_MASK) | (va & 0xFFF)
            return pa if pa < mem_bytes else BUS_ERROR
    return soft_tlb_miss(va, acc, cpl, ptbr, vcpu[C_LEVELS], gmem, mem_bytes, tlb, tlb_mask,
                         counters, pages, codemap, emu)


@njit(cache=True)
def flush_tlb(tlb, counters):
    for i in range(tlb.shape[0]):
        tlb[i] = 0
    counters[EV_TLB_FLUSHES] += 1


# ================================================================================================
# Traps (slow paths)
# ================================================================================================
@njit(cache=True)
def fault_vector(code, va, vcpu, counters):
    """A soft-MMU fault code -> (vector, error code); a page fault records its address."""
    if code == BUS_ERROR:
        return VEC_GP, 0
    vcpu[C_FAULT_ADDR] = va
    counters[EV_PAGE_FAULTS] += 1
    return VEC_PF, -1 - code


@njit(cache=True)
def deliver(vec, err, rp, regs, vcpu, gmem, tlb, counters, pages, codemap, emu):
    """Deliver trap ``vec`` to the guest's handler; return STOP_NONE or why the run stops."""
    counters[EV_VECTOR_BASE + vec] += 1
    counters[EV_TRAPS] += 1
    vcpu[C_PC] = rp
    tvb = vcpu[C_TVB]
    if tvb == NO_TVB:
        vcpu[C_STOP_VECTOR] = vec
        vcpu[C_STOP_ERROR] = err
        return STOP_UNHANDLED_TRAP
    p = soft_translate((tvb + 4 * vec) & MASK32, ACC_READ, 0, vcpu, gmem, tlb, counters, pages,
                       codemap, emu)
    if p < 0:
        vcpu[C_STOP_VECTOR] = vec
        vcpu[C_STOP_ERROR] = err
        return STOP_TRIPLE_FAULT
    handler = np.int64(gmem[p >> 2])
    if handler == 0:
        vcpu[C_STOP_VECTOR] = vec
        vcpu[C_STOP_ERROR] = err
        return STOP_UNHANDLED_TRAP
    vcpu[C_DELIVERIES] += 1
    if vcpu[C_DELIVERIES] > MAX_DELIVERIES:
        vcpu[C_STOP_VECTOR] = vec
        vcpu[C_STOP_ERROR] = err
        return STOP_TRIPLE_FAULT
    old_cpl = vcpu[C_CPL]
    old_sp = regs[SP]
    sp = vcpu[C_KSP] if old_cpl > 0 else old_sp
    where = np.empty(5, np.int64)
    for k in range(5):
        where[k] = soft_translate((sp - 4 * (k + 1)) & MASK32, ACC_WRITE, 0, vcpu, gmem, tlb,
                                  counters, pages, codemap, emu)
        if where[k] < 0:
            vcpu[C_STOP_VECTOR] = vec
            vcpu[C_STOP_ERROR] = err
            return STOP_TRIPLE_FAULT
    write_word(where[0], old_sp, gmem, pages, codemap, emu)
    write_word(where[1], vcpu[C_IF] << 9, gmem, pages, codemap, emu)
    write_word(where[2], old_cpl, gmem, pages, codemap, emu)
    write_word(where[3], rp, gmem, pages, codemap, emu)
    write_word(where[4], err, gmem, pages, codemap, emu)
    regs[SP] = (sp - 20) & MASK32
    vcpu[C_CPL] = 0
    vcpu[C_IF] = 0
    vcpu[C_PC] = handler
    return STOP_NONE


@njit(cache=True)
def trap_return(op, regs, vcpu, gmem, tlb, counters, pages, codemap, emu):
    """IRET / SYSRET: read the whole five-word frame, then commit; (-1, 0) or a fault."""
    sp = regs[SP]
    frame = np.empty(5, np.int64)
    for k in range(5):
        va = (sp + 4 * k) & MASK32
        p = soft_translate(va, ACC_READ, vcpu[C_CPL], vcpu, gmem, tlb, counters, pages, codemap,
                           emu)
        if p < 0:
            return fault_vector(p, va, vcpu, counters)
        frame[k] = gmem[p >> 2]
    vcpu[C_PC] = frame[1]
    regs[SP] = frame[4]
    if op == OP_IRET:
        counters[EV_IRET] += 1
        vcpu[C_CPL] = frame[2] & 3
        vcpu[C_IF] = (frame[3] >> 9) & 1
    else:
        counters[EV_SYSRET] += 1
        vcpu[C_CPL] = 3
        vcpu[C_IF] = 1
    return -1, 0


# ================================================================================================
# Device models (slow paths)
# ================================================================================================
@njit(cache=True)
def device_in(port, vcpu, counters, emu):
    counters[EV_IO_IN] += 1
    emu[E_DEVICE] += 1
    if port == PORT_CONSOLE:
        return 0
    if port == PORT_TIMER:
        return vcpu[C_TIMER_PERIOD]
    if port == PORT_TICKS:
        return vcpu[C_TICKS] & MASK32
    if port == PORT_BLK_SECTOR:
        return vcpu[C_BLK_SECTOR]
    if port == PORT_BLK_BUFFER:
        return vcpu[C_BLK_BUFFER]
    if port == PORT_BLK_COMMAND:
        return vcpu[C_BLK_STATUS]
    if port == PORT_BLK_SIZE:
        return vcpu[C_DISK_SECTORS]
    return MASK32


@njit(cache=True)
def disk_command(command, vcpu, gmem, disk, counters, pages, codemap, emu):
    """The block device model: a synchronous one-sector DMA between ``disk`` and guest RAM."""
    if command != BLK_READ and command != BLK_WRITE:
        vcpu[C_BLK_STATUS] = BLK_BAD_COMMAND
        return
    sector = vcpu[C_BLK_SECTOR]
    buf = vcpu[C_BLK_BUFFER] & 0xFFFFFFFC
    if sector >= vcpu[C_DISK_SECTORS] or buf + 4 * SECTOR_WORDS > vcpu[C_MEM_BYTES]:
        vcpu[C_BLK_STATUS] = BLK_BAD_ADDRESS
        return
    first = sector * SECTOR_WORDS
    if command == BLK_READ:
        for k in range(SECTOR_WORDS):
            write_word(buf + 4 * k, disk[first + k], gmem, pages, codemap, emu)
        counters[EV_BLK_READS] += 1
    else:
        for k in range(SECTOR_WORDS):
            disk[first + k] = gmem[(buf >> 2) + k]
        counters[EV_BLK_WRITES] += 1
    vcpu[C_BLK_STATUS] = BLK_OK


@njit(cache=True)
def device_out(port, value, vcpu, gmem, disk, counters, console, pages, codemap, emu):
    counters[EV_IO_OUT] += 1
    emu[E_DEVICE] += 1
    if port == PORT_CONSOLE:
        n = vcpu[C_CONSOLE_LEN]
        if n < console.shape[0]:
            console[n] = value & 0xFF
            vcpu[C_CONSOLE_LEN] = n + 1
        else:
            counters[EV_CONSOLE_DROPPED] += 1
    elif port == PORT_TIMER:
        vcpu[C_TIMER_PERIOD] = value
        vcpu[C_TIMER_DEADLINE] = NEVER if value == 0 else vcpu[C_TICKS] + value
    elif port == PORT_BLK_SECTOR:
        vcpu[C_BLK_SECTOR] = value
    elif port == PORT_BLK_BUFFER:
        vcpu[C_BLK_BUFFER] = value
    elif port == PORT_BLK_COMMAND:
        disk_command(value, vcpu, gmem, disk, counters, pages, codemap, emu)


@njit(cache=True)
def cr_index(cr):
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


# ================================================================================================
# The emulator loop
# ================================================================================================
@njit(cache=True)
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
    mem_bytes = vcpu[C_MEM_BYTES]
    tlb_mask = (tlb.shape[0] >> 1) - 1
    strict = vcpu[C_STRICT]
    levels = vcpu[C_LEVELS]
    pc = vcpu[C_PC]
    cpl = vcpu[C_CPL]
    iflag = vcpu[C_IF]
    paging = vcpu[C_PAGING] & 1
    ptbr = vcpu[C_PTBR]
    asid_key = ((ptbr & 0xFFF) << 20) + 1
    user_need = PTE_U if cpl == 3 else 0
    ticks = vcpu[C_TICKS]
    deadline = vcpu[C_TIMER_DEADLINE]
    data_limit = vcpu[C_DATA_LIMIT]     # the contract's monitor-only limit (0 when booted here)
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
    stop = STOP_NONE

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
                            and (value & FRAME_MASK) == b_frame):
                        counters[EV_TLB_HIT] += 1
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
                vcpu[C_TIMER_PENDING] = 1
                deadline += vcpu[C_TIMER_PERIOD]
            if iflag != 0 and vcpu[C_TIMER_PENDING] != 0:
                vcpu[C_TIMER_PENDING] = 0
                vcpu[C_CPL] = cpl
                vcpu[C_IF] = iflag
                vcpu[C_TICKS] = ticks
                stop = deliver(VEC_TIMER, 0, pc, regs, vcpu, gmem, tlb, counters, pages, codemap,
                               emu)
                pc = vcpu[C_PC]
                cpl = vcpu[C_CPL]
                iflag = vcpu[C_IF]
                user_need = PTE_U if cpl == 3 else 0
                if stop != STOP_NONE:
                    break
                continue
            if retired >= budget:
                stop = STOP_BUDGET
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
                        counters[EV_TLB_HIT] += 1
                        pa = (value & FRAME_MASK) | (pc & 0xFFF)
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
                    b_frame = pa & FRAME_MASK
                    in_tb = True
                    a = uops[blk, UOP_A]
                    b = uops[blk, UOP_B]
                    x = uops[blk, UOP_X]
                    blk += 1
                else:
                    a = (word >> 20) & 15
                    b = (word >> 16) & 15
                    x = operand(op, word)

        npc = (pc + 4) & MASK32
        if vec < 0:
            acc = NO_ACCESS
            va = 0
            # ---- execute --------------------------------------------------------------------
            if op == OP_ADDI:
                regs[a] = (regs[b] + x) & MASK32
            elif op == OP_ADD:
                regs[a] = (regs[b] + regs[x]) & MASK32
            elif op == OP_LD:
                va = (regs[b] + x) & MASK32
                acc = ACC_READ
            elif op == OP_ST:
                va = (regs[b] + x) & MASK32
                acc = ACC_WRITE
            elif op == OP_BNE:
                if regs[a] != regs[b]:
                    npc = (npc + x) & MASK32
            elif op == OP_BEQ:
                if regs[a] == regs[b]:
                    npc = (npc + x) & MASK32
            elif op == OP_BLT:
                if s32(regs[a]) < s32(regs[b]):
                    npc = (npc + x) & MASK32
            elif op == OP_BGE:
                if s32(regs[a]) >= s32(regs[b]):
                    npc = (npc + x) & MASK32
            elif op == OP_BLTU:
                if regs[a] < regs[b]:
                    npc = (npc + x) & MASK32
            elif op == OP_BGEU:
                if regs[a] >= regs[b]:
                    npc = (npc + x) & MASK32
            elif op == OP_JMP:
                npc = (npc + x) & MASK32
            elif op == OP_MOV:
                regs[a] = regs[b]
            elif op == OP_MOVI:
                regs[a] = x & MASK32
            elif op == OP_LUI:
                regs[a] = x
            elif op == OP_SUB:
                regs[a] = (regs[b] - regs[x]) & MASK32
            elif op == OP_AND:
                regs[a] = regs[b] & regs[x]
            elif op == OP_OR:
                regs[a] = regs[b] | regs[x]
            elif op == OP_XOR:
                regs[a] = regs[b] ^ regs[x]
            elif op == OP_SHL:
                regs[a] = (regs[b] << (regs[x] & 31)) & MASK32
            elif op == OP_SHR:
                regs[a] = regs[b] >> (regs[x] & 31)
            elif op == OP_SAR:
                regs[a] = (s32(regs[b]) >> (regs[x] & 31)) & MASK32
            elif op == OP_MUL:
                p = regs[b]
                q = regs[x]
                regs[a] = ((p & 0xFFFF) * q + ((((p >> 16) * q) & 0xFFFF) << 16)) & MASK32
            elif op == OP_DIV or op == OP_MOD:
                d = regs[x]
                if d == 0:
                    vec = VEC_DE
                elif op == OP_DIV:
                    regs[a] = regs[b] // d
                else:
                    regs[a] = regs[b] % d
            elif op == OP_SLT:
                regs[a] = 1 if s32(regs[b]) < s32(regs[x]) else 0
            elif op == OP_SLTU:
                regs[a] = 1 if regs[b] < regs[x] else 0
            elif op == OP_ANDI:
                regs[a] = regs[b] & x
            elif op == OP_ORI:
                regs[a] = regs[b] | x
            elif op == OP_XORI:
                regs[a] = regs[b] ^ x
            elif op == OP_SHLI:
                regs[a] = (regs[b] << x) & MASK32
            elif op == OP_SHRI:
                regs[a] = regs[b] >> x
            elif op == OP_SARI:
                regs[a] = (s32(regs[b]) >> x) & MASK32
            elif op == OP_NOP:
                pass
            elif op == OP_PUSH or op == OP_CALL or op == OP_CALLR:
                va = (regs[SP] - 4) & MASK32
                acc = ACC_WRITE
            elif op == OP_POP or op == OP_RET:
                va = regs[SP]
                acc = ACC_READ
            elif op == OP_JR:
                npc = regs[a]
            elif op == OP_SYSCALL:
                pass
            elif op >= OP_PUSHF and op <= OP_RDTVB:
                if strict != 0 and cpl != 0:
                    vec = VEC_GP
                    counters[EV_PRIV_FAULTS] += 1
                elif op == OP_PUSHF:
                    va = (regs[SP] - 4) & MASK32
                    acc = ACC_WRITE
                elif op == OP_POPF:
                    va = regs[SP]
                    acc = ACC_READ
                elif op == OP_GETCPL:
                    regs[a] = cpl
                else:
                    regs[a] = vcpu[C_TVB]
            elif op >= OP_SYSRET and op <= OP_TLBFLUSH:
                if cpl != 0:
                    vec = VEC_GP
                    counters[EV_PRIV_FAULTS] += 1
                elif op == OP_CLI:
                    iflag = 0
                elif op == OP_STI:
                    iflag = 1
                elif op == OP_IN:
                    vcpu[C_TICKS] = ticks
                    regs[a] = device_in(x, vcpu, counters, emu)
                elif op == OP_OUT:
                    vcpu[C_TICKS] = ticks
                    vcpu[C_TIMER_DEADLINE] = deadline
                    device_out(x, regs[a], vcpu, gmem, disk, counters, console, pages, codemap, emu)
                    deadline = vcpu[C_TIMER_DEADLINE]
                elif op == OP_HLT:
                    counters[EV_HLT] += 1
                elif op == OP_WRCR:
                    idx = cr_index(x)
                    if idx < 0:
                        vec = VEC_GP
                    else:
                        counters[EV_CR_WRITES] += 1
                        value = regs[a]
                        vcpu[idx] = value
                        if idx == C_PAGING:
                            counters[EV_PAGING_WRITES] += 1
                            paging = value & 1
                            flush_tlb(tlb, counters)
                        elif idx == C_PTBR:
                            counters[EV_PTBR_WRITES] += 1
                            ptbr = value
                            asid_key = ((ptbr & 0xFFF) << 20) + 1
                            if (value & 0xFFF) == 0:
                                flush_tlb(tlb, counters)
                elif op == OP_RDCR:
                    idx = cr_index(x)
                    if idx < 0:
                        vec = VEC_GP
                    else:
                        counters[EV_CR_READS] += 1
                        if idx == C_PTBR:
                            counters[EV_PTBR_READS] += 1
                        regs[a] = vcpu[idx]
                elif op == OP_INVLPG:
                    counters[EV_INVLPG] += 1
                    vpn = regs[a] >> 12
                    i = 2 * ((vpn ^ (vpn >> 7) ^ (vpn >> 14)) & tlb_mask)
                    if tlb[i] == asid_key + vpn:
                        tlb[i] = 0
                        tlb[i + 1] = 0
                elif op == OP_TLBFLUSH:
                    flush_tlb(tlb, counters)
                else:
                    vcpu[C_CPL] = cpl
                    vcpu[C_IF] = iflag
                    vec, err = trap_return(op, regs, vcpu, gmem, tlb, counters, pages, codemap, emu)
                    if vec < 0:
                        npc = vcpu[C_PC]
                        cpl = vcpu[C_CPL]
                        iflag = vcpu[C_IF]
                        user_need = PTE_U if cpl == 3 else 0
            else:
                vec = VEC_UD

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
                        need = user_need | (PTE_W | PTE_D if acc == ACC_WRITE else 0)
                        if (value & need) == need:
                            counters[EV_TLB_HIT] += 1
                            pa = (value & FRAME_MASK) | (va & 0xFFF)
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
                    if op == OP_ST or op == OP_PUSH:
                        gmem[pa >> 2] = regs[a]
                    elif op == OP_PUSHF:
                        gmem[pa >> 2] = iflag << 9
                    else:
                        gmem[pa >> 2] = npc
                        if op == OP_CALL:
                            npc = (npc + x) & MASK32
                        else:
                            npc = regs[a]
                    if op != OP_ST:
                        regs[SP] = va
                    if codemap[pa >> 2] != 0:
                        invalidate_page(pa >> 12, pages, codemap, emu)
                        smc = True
                elif op == OP_LD:
                    regs[a] = gmem[pa >> 2]
                else:
                    value = np.int64(gmem[pa >> 2])
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
            # ---- the instruction faulted: leave any block and deliver -----------------------
            blk = 0
            blk_end = 0
            vcpu[C_CPL] = cpl
            vcpu[C_IF] = iflag
            vcpu[C_TICKS] = ticks
            stop = deliver(vec, err, pc, regs, vcpu, gmem, tlb, counters, pages, codemap, emu)
            pc = vcpu[C_PC]
            cpl = vcpu[C_CPL]
            iflag = vcpu[C_IF]
            user_need = PTE_U if cpl == 3 else 0
            smc = False
            if stop != STOP_NONE:
                break
            continue
        # ---- retire -------------------------------------------------------------------------
        ticks += 1
        retired += 1
        if in_tb:
            n_tb += 1
        else:
            n_interp += 1
        counters[EV_OP_BASE + op] += 1
        vcpu[C_DELIVERIES] = 0
        pc = npc
        if smc:
            smc = False
            blk = 0             # translated code changed under the running block: leave it
            blk_end = 0
        if op == OP_SYSCALL or op == OP_HLT:
            vcpu[C_PC] = pc
            vcpu[C_CPL] = cpl
            vcpu[C_IF] = iflag
            vcpu[C_TICKS] = ticks
            if op == OP_SYSCALL:
                stop = deliver(VEC_SYSCALL, 0, pc, regs, vcpu, gmem, tlb, counters, pages,
                               codemap, emu)
                pc = vcpu[C_PC]
                cpl = vcpu[C_CPL]
                iflag = vcpu[C_IF]
                user_need = PTE_U if cpl == 3 else 0
                if stop != STOP_NONE:
                    break
            elif iflag != 0 and vcpu[C_TIMER_PENDING] != 0:
                pass
            elif iflag != 0 and vcpu[C_TIMER_PERIOD] != 0:
                if deadline > ticks:
                    counters[EV_IDLE_TICKS] += deadline - ticks
                    ticks = deadline
            else:
                stop = STOP_HALT
                break

    vcpu[C_PC] = pc
    vcpu[C_CPL] = cpl
    vcpu[C_IF] = iflag
    vcpu[C_TICKS] = ticks
    vcpu[C_TIMER_DEADLINE] = deadline
    vcpu[C_STOP_REASON] = stop
    counters[EV_INSTRUCTIONS] += retired
    emu[E_INTERPRETED] += n_interp
    emu[E_TB_EXECUTED] += n_tb
    emu[E_TB_ENTER] += n_enter
    emu[E_CACHE_HITS] += n_hits
    emu[E_SMC] = 0
    return stop
