"""The MMU: a tagged, direct-mapped TLB in front of an n-level page-table walker.

How a virtual address becomes a physical one (paging on)
-------------------------------------------------------
1. **TLB lookup.**  The TLB caches recent translations.  Entry ``i = hash(vpn) & (S-1)`` (S entries,
   direct-mapped; the hash XOR-folds high page-number bits into the index so that code at address 0
   and data at 2 MiB do not fight over one entry) holds a *key* -- ``(asid << 20 | vpn) + 1`` -- and
   a *value* -- the physical frame plus the permission bits W, U and D.  Tagging keys with the
   address-space id (ASID) lets translations of several processes live in the TLB at once, so a
   context switch need not flush it (x86 calls this PCID; VT-x's VPID does the same for virtual
   machines).
2. **Page walk** on a miss.  Starting at the root table (``PTBR``), the walker reads one entry per
   level -- each read is a real memory reference, counted in ``EV_WALK_REFS`` -- sets its
   *accessed* bit, and follows it down.  Permissions are the AND of every level's W and U bits.
   The leaf gives the frame; a write sets the leaf's *dirty* bit.  An n-level walk costs n
   memory references: with nested paging (later in the course) a guest walk over a host walk
   costs (n+1)(m+1)-1.
3. **Faults.**  A missing entry or a permission violation is a page fault with an x86-style
   error code (present / write / user / fetch bits).  The caller raises it.

Every function here is jitted.  The TLB-hit test of :func:`translate` is repeated inline in the CPU
loop (it is the hot path of every paged load, store and fetch); :func:`tlb_miss` and :func:`walk`
run only on a miss.

Return convention: a physical address ``>= 0``, or a negative *fault code*: ``-1 - error_code``
for a page fault (so -1..-32), or ``BUS_ERROR`` for an access beyond physical memory (#GP).
"""
from __future__ import annotations

from numba import njit

from .state import EV_TLB_HIT, EV_TLB_MISS, EV_TLB_FLUSHES, EV_WALK_REFS

# Local copies of the ISA constants (Numba freezes globals at compile time, and the on-disk cache
# only notices changes to *this* file, so kernel constants live beside the kernels).
PTE_P = 1
PTE_W = 2
PTE_U = 4
PTE_A = 32
PTE_D = 64
FRAME_MASK = 0xFFFFF000
ACC_WRITE = 1   # access kinds passed to translate()
ACC_FETCH = 2
PF_PRESENT = 1
PF_WRITE = 2
PF_USER = 4
PF_FETCH = 16
BUS_ERROR = -1000


@njit(cache=True)
def tlb_index(vpn, tlb_mask):
    """Which TLB entry may hold page ``vpn``: low bits XOR-folded with higher ones."""
    return (vpn ^ (vpn >> 7) ^ (vpn >> 14)) & tlb_mask


@njit(cache=True)
def walk(va, acc, cpl, ptbr, levels, mem, mem_bytes, tlb, tlb_i, key, counters):
    """Walk the page tables for ``va``; fill TLB entry ``tlb_i`` with ``key`` on success."""
    write = (acc & ACC_WRITE) != 0
    user = cpl == 3
    err = 0
    if write:
        err |= PF_WRITE
    if user:
        err |= PF_USER
    if acc & ACC_FETCH:
        err |= PF_FETCH
    top_bits = levels * 10 + 12
    if top_bits < 32 and (va >> top_bits) != 0:
        return -1 - err                      # beyond the virtual address space: not present
    table = ptbr & FRAME_MASK
    perm = PTE_W | PTE_U
    pte = 0
    pte_word = 0
    for k in range(levels - 1, -1, -1):
        idx = (va >> (12 + 10 * k)) & 0x3FF
        pte_addr = table + 4 * idx
        if pte_addr >= mem_bytes:
            return BUS_ERROR
        counters[EV_WALK_REFS] += 1
        pte_word = pte_addr >> 2
        pte = mem[pte_word]
        if (pte & PTE_P) == 0:
            return -1 - err
        if (pte & PTE_A) == 0:
            pte |= PTE_A
            mem[pte_word] = pte
        perm &= pte
        table = pte & FRAME_MASK
    if write and (perm & PTE_W) == 0:
        return -1 - (err | PF_PRESENT)
    if user and (perm & PTE_U) == 0:
        return -1 - (err | PF_PRESENT)
    if write and (pte & PTE_D) == 0:
        pte |= PTE_D
        mem[pte_word] = pte
    value = table | (perm & (PTE_W | PTE_U))
    if pte & PTE_D:
        value |= PTE_D
    tlb[2 * tlb_i] = key
    tlb[2 * tlb_i + 1] = value
    return table | (va & 0xFFF)


@njit(cache=True)
def tlb_miss(va, acc, cpl, ptbr, levels, mem, mem_bytes, tlb, tlb_mask, counters):
    """The slow path of a paged access: count the miss, walk, check the bus.

    The CPU loop does the TLB-hit test inline (a call with array arguments in the hot loop would
    cost Numba two atomic reference-count updates per call) and calls this only when the TLB
    cannot answer.
    """
    counters[EV_TLB_MISS] += 1
    vpn = va >> 12
    key = (((ptbr & 0xFFF) << 20) | vpn) + 1
    pa = walk(va, acc, cpl, ptbr, levels, mem, mem_bytes, tlb, tlb_index(vpn, tlb_mask), key,
              counters)
    if pa >= mem_bytes:
        return BUS_ERROR
    return pa


@njit(cache=True)
def translate(va, acc, cpl, paging, ptbr, levels, mem, mem_bytes, tlb, tlb_mask, counters):
    """Virtual -> physical address for one access (``acc``: 0 read, ACC_WRITE, ACC_FETCH).

    Returns the physical address or a negative fault code (see the module docstring).  This is
    the readable version used on slow paths (trap delivery, IRET); the CPU loop inlines the same
    TLB-hit test by hand.
    """
    if paging == 0:
        if va >= mem_bytes:
            return BUS_ERROR
        return va
    vpn = va >> 12
    key = (((ptbr & 0xFFF) << 20) | vpn) + 1
    i = tlb_index(vpn, tlb_mask)
    if tlb[2 * i] == key:
        need = 0
        if acc & ACC_WRITE:
            need = PTE_W | PTE_D
        if cpl == 3:
            need |= PTE_U
        value = tlb[2 * i + 1]
        if (value & need) == need:
            counters[EV_TLB_HIT] += 1
            pa = (value & FRAME_MASK) | (va & 0xFFF)
            if pa >= mem_bytes:
                return BUS_ERROR
            return pa
    return tlb_miss(va, acc, cpl, ptbr, levels, mem, mem_bytes, tlb, tlb_mask, counters)


@njit(cache=True)
def flush_all(tlb, counters):
    """Drop every TLB entry (TLBFLUSH, an untagged PTBR load, toggling paging)."""
    for i in range(tlb.shape[0]):
        tlb[i] = 0
    counters[EV_TLB_FLUSHES] += 1


@njit(cache=True)
def invalidate_page(va, ptbr, tlb, tlb_mask):
    """INVLPG: drop the entry that would translate ``va`` in the current address space."""
    vpn = va >> 12
    key = (((ptbr & 0xFFF) << 20) | vpn) + 1
    i = tlb_index(vpn, tlb_mask)
    if tlb[2 * i] == key:
        tlb[2 * i] = 0
        tlb[2 * i + 1] = 0
