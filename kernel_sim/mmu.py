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

Nested paging (EPT): the two-dimensional walk
--------------------------------------------
Under hardware-assisted memory virtualization the guest's page tables map guest-virtual
addresses to *guest-physical* ones, and a second table owned by the monitor -- the *nested* or
EPT table, rooted at the host-physical address ``eptp`` -- maps guest-physical addresses to
*host-physical* ones.  :func:`nested_walk` does what the hardware does on a TLB miss: every
guest-physical address the guest walk needs (the address of each guest entry, then the final
data page) is first translated through the nested table.  With an n-level guest table over an
m-level nested table that is ``n`` guest reads plus ``m`` nested reads for each of the ``n + 1``
guest-physical addresses: ``n*m + n + m = (n+1)(m+1) - 1`` references (24 for 4 over 4), all
counted in ``EV_WALK_REFS``.  ``elevels == 0`` means no nesting (guest-physical = host-physical):
the walk is then the native one, step for step.

Nested (EPT) entries are 32-bit words: ``EPT_R`` (bit 0, read), ``EPT_W`` (bit 1, write),
``EPT_X`` (bit 2, execute) and the next table's or the page's host-physical frame in bits
31..12 (``FRAME_MASK``).  An entry with none of R/W/X set is *not present*.  Permissions are the
AND over the levels; a read needs R, a write W, a fetch X.  The walker's own reads of guest
entries are reads; setting a guest A or D bit that was clear is a write to the guest table and
needs W (a model choice of this simulator).  Nested entries
have no A/D bits here.  The TLB caches a combined translation with the W, U and D bits only:
EPT read and execute permissions are checked when the walk fills an entry, not on later hits
(the monitors here map every guest page R, W and X, so this never matters to them).

A guest page fault is reported as natively (``-1 - error_code``); a missing or too weak nested
mapping is an *EPT violation*: the code ``EPT_VIOLATION``, with the faulting guest-physical
address in ``info[WI_FAULT_GPA]`` and a qualification in ``info[WI_QUAL]`` (``EPTQ_*`` bits:
the access tried, the permissions the nested entries granted, and whether the access was to a
guest page-table entry or to the final page -- the kind of information VT-x reports in an
EPT violation's exit qualification; the bit layout here is this simulator's own).  The
monitor, not the guest, handles it (typically by mapping the page on first touch) and restarts
the access.
"""
from __future__ import annotations

import numpy as np

from . import state as S
# page-table entry bits and page-fault error-code bits are the ISA's (defined in kernel_sim.isa)
from .isa import PF_FETCH, PF_PRESENT, PF_USER, PF_WRITE, PTE_A, PTE_D, PTE_P, PTE_U, PTE_W
from .isa import PTE_FRAME_MASK as FRAME_MASK
from .jit import njit

# The MMU's own conventions: the callers' side of :func:`translate`
ACC_WRITE = 1   # access kinds passed to translate() (0: read)
ACC_FETCH = 2
BUS_ERROR = -1000

# ---- nested paging (EPT) -------------------------------------------------------------------
EPT_R = 1               # nested entry bits: read ...
EPT_W = 2               # ... write ...
EPT_X = 4               # ... execute; none of the three set = not present
EPT_RWX = 7
EPT_VIOLATION = -2000   # nested_walk's fault code: the nested table refused a guest-physical access
# EPT-violation qualification bits (info[WI_QUAL])
EPTQ_READ = 1           # the access was a read (the walker's reads of guest entries included)
EPTQ_WRITE = 2          # ... a write (a guest A/D update included)
EPTQ_FETCH = 4          # ... an instruction fetch
EPTQ_PERM_SHIFT = 3     # bits 3..5: the AND of EPT_R/W/X over the nested entries read (0: absent)
EPTQ_GVA_VALID = 128    # the access came from translating a guest-virtual address (always here)
EPTQ_FINAL = 256        # set: the access was to the final page; clear: to a guest table entry
# info[] slots written by nested_walk (an int64 array of at least WI_SIZE elements)
WI_STEPS = 0            # references made by this walk (= rows of ``steps`` filled, if big enough)
WI_FAULT_GPA = 1        # EPT violation: the guest-physical address refused (else -1)
WI_QUAL = 2             # EPT violation: its qualification (EPTQ_* bits)
WI_GPA = 3              # success: the guest-physical address gva maps to (else -1)
WI_VALUE = 4            # success: a TLB-style value: host frame | PTE_W (guest W and EPT W) |
                        # PTE_U | PTE_D (as the native walk's TLB value)
WI_EPT_PERM = 5         # success: EPT_R/W/X granted for the final page
WI_SIZE = 8
# steps[i] columns (an int64 array of shape (K, STEP_COLS); K = 0 records nothing)
STEP_DIM = 0            # STEP_NESTED or STEP_GUEST
STEP_LEVEL = 1          # the table's level: levels (the root) down to 1 (the leaf)
STEP_ADDR = 2           # the host-physical address read
STEP_VALUE = 3          # the entry as read (before the walk set any A/D bit in it)
STEP_GPA = 4            # nested step: the guest-physical address being translated;
                        # guest step: the guest-physical address of the entry
STEP_FOR = 5            # nested step: the guest level whose entry it translates (0: final page);
                        # guest step: its own level
STEP_COLS = 6
STEP_NESTED = 0
STEP_GUEST = 1


@njit
def tlb_index(vpn, tlb_mask):
    """Which TLB entry may hold page ``vpn``: low bits XOR-folded with higher ones."""
    return (vpn ^ (vpn >> 7) ^ (vpn >> 14)) & tlb_mask


@njit
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
        counters[S.EV_WALK_REFS] += 1
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


@njit
def tlb_tag(ptbr, ctrl):
    """The TLB tag of the running address space: the guest's VPID above the PTBR's ASID."""
    return (ctrl[S.C_VPID] << 12) | (ptbr & 0xFFF)


@njit
def tlb_miss(va, acc, cpl, ptbr, levels, mem, mem_bytes, tlb, tlb_mask, counters, ctrl):
    """The slow path of a paged access: count the miss, walk, check the bus.

    The CPU loop does the TLB-hit test inline (a call with array arguments in the hot loop would
    cost Numba two atomic reference-count updates per call) and calls this only when the TLB
    cannot answer.  Under EPT (``ctrl[C_EPTP] != 0``, VMX non-root only) the walk is the
    two-dimensional one (guest paging off: the nested table alone) and the TLB caches the
    combined guest-virtual -> host-physical translation; an EPT violation records the
    guest-physical address and qualification in ``ctrl[C_EXIT_GPA]``/``ctrl[C_EXIT_QUAL]``.
    """
    counters[S.EV_TLB_MISS] += 1
    vpn = va >> 12
    key = ((tlb_tag(ptbr, ctrl) << 20) | vpn) + 1
    eptp = ctrl[S.C_EPTP]
    if eptp == 0:
        pa = walk(va, acc, cpl, ptbr, levels, mem, mem_bytes, tlb, tlb_index(vpn, tlb_mask), key,
                  counters)
        if pa >= mem_bytes:
            return BUS_ERROR
        return pa
    return ept_tlb_miss(va, acc, cpl, ptbr, levels, mem, mem_bytes, tlb, tlb_mask, counters, ctrl,
                        key, eptp, vpn)


@njit
def ept_tlb_miss(va, acc, cpl, ptbr, levels, mem, mem_bytes, tlb, tlb_mask, counters, ctrl, key,
                 eptp, vpn):
    """The EPT half of :func:`tlb_miss`: the two-dimensional walk (kept in its own function so
    that the native miss path stays small)."""
    info = np.zeros(WI_SIZE, np.int64)
    steps = np.zeros((0, STEP_COLS), np.int64)
    if ctrl[S.C_PAGING] & 1:
        r = nested_walk(va, acc, cpl, ptbr, levels, eptp, ctrl[S.C_EPT_LEVELS], mem, mem_bytes,
                        counters, info, steps)
        value = info[WI_VALUE]
    else:
        need = EPT_R
        if acc & ACC_WRITE:
            need = EPT_W
        elif acc & ACC_FETCH:
            need = EPT_X
        r = ept_translate(va, need, True, 0, eptp, ctrl[S.C_EPT_LEVELS], mem, mem_bytes, counters,
                          info, steps)
        if r >= 0:
            eperm = r >> 32
            r = r & 0xFFFFFFFF
            value = (r & FRAME_MASK) | PTE_U     # guest paging off: no guest permissions
            if eperm & EPT_W:
                value |= PTE_W | PTE_D
    if r == EPT_VIOLATION:
        ctrl[S.C_EXIT_GPA] = info[WI_FAULT_GPA]
        ctrl[S.C_EXIT_QUAL] = info[WI_QUAL]
        return EPT_VIOLATION
    if r < 0:
        return r
    if r >= mem_bytes:
        return BUS_ERROR
    i = tlb_index(vpn, tlb_mask)
    tlb[2 * i] = key
    tlb[2 * i + 1] = value
    return r


@njit
def translate(va, acc, cpl, paging, ptbr, levels, mem, mem_bytes, tlb, tlb_mask, counters, ctrl):
    """Virtual -> physical address for one access (``acc``: 0 read, ACC_WRITE, ACC_FETCH).

    Returns the physical address or a negative fault code (see the module docstring).  This is
    the readable version used on slow paths (trap delivery, IRET); the CPU loop inlines the same
    TLB-hit test by hand.  Under EPT every access is translated, even with guest paging off.
    """
    if paging == 0 and ctrl[S.C_EPTP] == 0:
        if va >= mem_bytes:
            return BUS_ERROR
        return va
    vpn = va >> 12
    key = ((tlb_tag(ptbr, ctrl) << 20) | vpn) + 1
    i = tlb_index(vpn, tlb_mask)
    if tlb[2 * i] == key:
        need = 0
        if acc & ACC_WRITE:
            need = PTE_W | PTE_D
        if cpl == 3:
            need |= PTE_U
        value = tlb[2 * i + 1]
        if (value & need) == need:
            counters[S.EV_TLB_HIT] += 1
            pa = (value & FRAME_MASK) | (va & 0xFFF)
            if pa >= mem_bytes:
                return BUS_ERROR
            return pa
    return tlb_miss(va, acc, cpl, ptbr, levels, mem, mem_bytes, tlb, tlb_mask, counters, ctrl)


@njit
def flush_all(tlb, counters):
    """Drop every TLB entry (TLBFLUSH, an untagged PTBR load, toggling paging)."""
    for i in range(tlb.shape[0]):
        tlb[i] = 0
    counters[S.EV_TLB_FLUSHES] += 1


@njit
def invalidate_page(va, tag, tlb, tlb_mask):
    """INVLPG: drop the entry that would translate ``va`` in the address space ``tag``
    (:func:`tlb_tag`: the ASID, with the VPID above it in VMX non-root operation)."""
    vpn = va >> 12
    key = ((tag << 20) | vpn) + 1
    i = tlb_index(vpn, tlb_mask)
    if tlb[2 * i] == key:
        tlb[2 * i] = 0
        tlb[2 * i + 1] = 0


@njit
def _record_step(steps, info, dim, level, addr, value, gpa, target):
    """Count one reference of a nested walk and, if ``steps`` has room, record it."""
    n = info[WI_STEPS]
    if n < steps.shape[0]:
        steps[n, STEP_DIM] = dim
        steps[n, STEP_LEVEL] = level
        steps[n, STEP_ADDR] = addr
        steps[n, STEP_VALUE] = value
        steps[n, STEP_GPA] = gpa
        steps[n, STEP_FOR] = target
    info[WI_STEPS] = n + 1


@njit
def _ept_violation(gpa, need, perm, final, info):
    """Record an EPT violation on ``gpa`` in ``info`` and return its fault code."""
    info[WI_FAULT_GPA] = gpa
    qual = need | ((perm & EPT_RWX) << EPTQ_PERM_SHIFT) | EPTQ_GVA_VALID
    if final:
        qual |= EPTQ_FINAL
    info[WI_QUAL] = qual
    return EPT_VIOLATION


@njit
def ept_translate(gpa, need, final, target, eptp, elevels, mem, mem_bytes, counters, info, steps):
    """Guest-physical -> host-physical through the ``elevels``-level nested table at ``eptp``.

    ``need`` is the EPT permission the access requires (EPT_R, EPT_W or EPT_X; it doubles as the
    qualification's access bit).  Each nested entry read is one reference (``EV_WALK_REFS``) and
    one recorded step.  Returns ``(granted << 32) | host_physical`` -- the host address in the
    low 32 bits, the EPT_R/W/X bits the nested entries granted above them -- or a negative fault
    code (``EPT_VIOLATION``, ``BUS_ERROR``).  ``final`` and ``target`` only label the access.
    With ``elevels == 0`` there is no nested table: the address is returned as it is, all
    permissions granted, without any reference.
    """
    if elevels == 0:
        return (EPT_RWX << 32) | gpa
    top_bits = elevels * 10 + 12
    if top_bits < 32 and (gpa >> top_bits) != 0:
        return _ept_violation(gpa, need, 0, final, info)   # beyond the guest-physical space
    table = eptp & FRAME_MASK
    perm = EPT_RWX
    for k in range(elevels - 1, -1, -1):
        idx = (gpa >> (12 + 10 * k)) & 0x3FF
        addr = table + 4 * idx
        if addr >= mem_bytes:
            return BUS_ERROR
        counters[S.EV_WALK_REFS] += 1
        counters[S.EV_NESTED_REFS] += 1
        entry = mem[addr >> 2]
        _record_step(steps, info, STEP_NESTED, k + 1, addr, entry, gpa, target)
        perm &= entry
        if (entry & EPT_RWX) == 0:
            return _ept_violation(gpa, need, 0, final, info)
        table = entry & FRAME_MASK
    if (perm & need) != need:
        return _ept_violation(gpa, need, perm, final, info)
    return (perm << 32) | table | (gpa & 0xFFF)


@njit
def nested_walk(gva, acc, cpl, gptbr, glevels, eptp, elevels, mem, mem_bytes, counters, info,
                steps):
    """The two-dimensional walk: guest-virtual -> host-physical on a TLB miss under nested paging.

    ``gptbr`` is the guest's page-table base register: the guest-physical address of its root
    table in bits 31..12 (the ASID bits are ignored).  ``glevels`` (1..4) guest levels are walked
    exactly as :func:`walk` walks native tables -- same indices, permission AND, A bits, D bit
    on a write, guest page faults with the native error codes -- except that every guest
    entry's guest-physical address, and at the end the guest-physical address of the data, is
    first translated through the ``elevels``-level (0..4) nested table at host-physical
    ``eptp`` (see :func:`ept_translate`).  Every guest and nested entry read counts in
    ``counters[EV_WALK_REFS]``; the final data access does not.

    ``info`` (int64, at least ``WI_SIZE`` elements) receives the ``WI_*`` results; ``steps``
    (int64, shape ``(K, STEP_COLS)``) receives the first K references in order (pass K = 0 to
    record nothing).  Returns the host-physical address, ``-1 - error_code`` for a guest page
    fault, ``EPT_VIOLATION`` (fault address in ``info[WI_FAULT_GPA]``) or ``BUS_ERROR`` (a
    table or page beyond host memory).  Nothing is cached: there is no TLB or page-walk cache
    here, so every call is a cold walk.
    """
    info[WI_STEPS] = 0
    info[WI_FAULT_GPA] = -1
    info[WI_QUAL] = 0
    info[WI_GPA] = -1
    info[WI_VALUE] = 0
    info[WI_EPT_PERM] = 0
    write = (acc & ACC_WRITE) != 0
    user = cpl == 3
    err = 0
    need = EPT_R
    if write:
        err |= PF_WRITE
        need = EPT_W
    if user:
        err |= PF_USER
    if acc & ACC_FETCH:
        err |= PF_FETCH
        need = EPT_X
    top_bits = glevels * 10 + 12
    if top_bits < 32 and (gva >> top_bits) != 0:
        return -1 - err                      # beyond the guest-virtual address space
    table = gptbr & FRAME_MASK               # guest-physical
    perm = PTE_W | PTE_U
    pte = 0
    leaf_hpa = 0
    leaf_gpa = 0
    leaf_eperm = 0
    for k in range(glevels - 1, -1, -1):
        idx = (gva >> (12 + 10 * k)) & 0x3FF
        entry_gpa = table + 4 * idx
        r = ept_translate(entry_gpa, EPT_R, False, k + 1, eptp, elevels, mem, mem_bytes, counters,
                          info, steps)
        if r < 0:
            return r
        entry_hpa = r & 0xFFFFFFFF
        eperm = r >> 32
        if entry_hpa >= mem_bytes:
            return BUS_ERROR
        counters[S.EV_WALK_REFS] += 1
        pte = mem[entry_hpa >> 2]
        _record_step(steps, info, STEP_GUEST, k + 1, entry_hpa, pte, entry_gpa, k + 1)
        if (pte & PTE_P) == 0:
            return -1 - err
        if (pte & PTE_A) == 0:
            if (eperm & EPT_W) == 0:         # setting A writes the guest table
                return _ept_violation(entry_gpa, EPTQ_WRITE, eperm, False, info)
            pte |= PTE_A
            mem[entry_hpa >> 2] = pte
        perm &= pte
        table = pte & FRAME_MASK
        leaf_hpa = entry_hpa
        leaf_gpa = entry_gpa
        leaf_eperm = eperm
    if write and (perm & PTE_W) == 0:
        return -1 - (err | PF_PRESENT)
    if user and (perm & PTE_U) == 0:
        return -1 - (err | PF_PRESENT)
    gpa = table | (gva & 0xFFF)
    r = ept_translate(gpa, need, True, 0, eptp, elevels, mem, mem_bytes, counters, info, steps)
    if r < 0:
        return r
    hpa = r & 0xFFFFFFFF
    eperm = r >> 32
    if write and (pte & PTE_D) == 0:
        if (leaf_eperm & EPT_W) == 0:        # setting D writes the guest's leaf table
            return _ept_violation(leaf_gpa, EPTQ_WRITE, leaf_eperm, False, info)
        pte |= PTE_D
        mem[leaf_hpa >> 2] = pte
    if hpa >= mem_bytes:                     # (after D, like walk() followed by tlb_miss())
        return BUS_ERROR
    value = (hpa & FRAME_MASK) | (perm & PTE_U)
    if (perm & PTE_W) and (eperm & EPT_W):
        value |= PTE_W
    if pte & PTE_D:
        value |= PTE_D
    info[WI_GPA] = gpa
    info[WI_VALUE] = value
    info[WI_EPT_PERM] = eperm
    return hpa
