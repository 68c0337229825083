"""Machine state layout: the NumPy arrays every kernel reads and writes, and what they mean.

No Python objects cross into jitted code.  A machine is these arrays:

========== ============ =========================================================================
array      dtype/shape  contents
========== ============ =========================================================================
regs       int64[16]    general registers r0..r15, each 0 <= value < 2**32 (r15 is sp)
ctrl       int64[64]    program counter, ring, flags, control registers, timer, cycle counter ...
                        (indices ``C_*`` below)
mem        uint32[N]    physical memory, one element per 32-bit word (byte address >> 2)
tlb        int64[2*S]   a direct-mapped TLB of S entries: tlb[2i] = key, tlb[2i+1] = value
costs      int64[288]   cycles: 256 per-opcode base costs, then extras at ``K_*``
counters   int64[544]   event counters ``EV_*``; counters[EV_VECTOR_BASE + v] counts deliveries
                        of trap vector v
console    uint8[M]     console output bytes; ctrl[C_CONSOLE_LEN] of them are valid
trace      int64[T, 4]  ring buffer of events (tick, pc, kind, detail); ctrl[C_TRACE_POS] = total
intercept  uint8[256]   intercept[v] == 1: a trap on vector v stops the run (STOP_TRAP_EXIT) for a
                        monitor instead of being delivered to the guest's handler
========== ============ =========================================================================

Execution semantics (the contract the jitted CPU and the reference interpreter both follow)
=========================================================================================

One *step*:

1. **Timer.**  If ``ticks >= timer_deadline``: set ``timer_pending = 1`` and advance
   ``timer_deadline += timer_period`` (while the timer is off the deadline is ``NEVER``).
2. **Interrupt.**  If ``timer_pending`` and the interrupt flag IF is 1: clear ``timer_pending`` and
   deliver vector 32 (``VEC_TIMER``) with error code 0 and *return pc = pc*; the step ends.
3. **Stop checks.**  If ``pc == until``: stop (``STOP_UNTIL``).  If the run has retired ``budget``
   instructions: stop (``STOP_BUDGET``).  (Checked in this order, before the fetch.)
4. **Fetch** the word at ``pc`` through the MMU (an instruction fetch).  A fault is delivered
   (return pc = pc) and the step ends.
5. **Execute.**  A faulting instruction changes nothing but the fault state and is delivered with
   *return pc = pc of the faulting instruction* (restartable).  Otherwise the instruction
   *retires*: ``ticks += 1``, ``instructions += 1``, ``cycles += costs[opcode]``,
   ``op_counts[opcode] += 1`` (kept in counters at ``EV_OP_BASE + opcode``), and pc moves on.
   ``SYSCALL`` retires and then delivers vector 0x80 with return pc = pc + 4.

Arithmetic is on 32-bit words (results masked with 0xFFFFFFFF).  Signed comparisons and ``SAR``
read words as two's complement.  ``DIV``/``MOD`` are unsigned; a zero divisor raises #DE (0).

**Memory access** (fetch, LD, ST, PUSH, POP, CALL's push, RET's pop, trap frames).  The low two
address bits are ignored.  With paging off the physical address is the virtual address.  A
physical address ``>= memory size`` raises #GP with error code 0 (a "bus error").  Each access is
translated on its own; an instruction that faults on its second access (POP: the read succeeds,
then nothing is written) has changed nothing: the CPU computes all results, then commits.
``PUSH a``: the word at sp - 4 is written with a (its value before the push), then sp -= 4.
``POP a``: read [sp]; then sp += 4; then a = value (so ``POP sp`` sets sp to the popped value).
``CALL``/``CALLR`` push pc + 4 then jump (``CALLR`` reads its target before the push);
``RET`` pops pc.  Device and timer effects see ``ticks`` as it was before the instruction
retires (``OUT PORT_TIMER`` sets ``deadline = ticks + a``).

**Data limit** (a monitor-only setting, not a guest control register: like the x86 segment
limits VMware's monitor used to protect itself).  If ``C_DATA_LIMIT != 0`` and ``cpl > 0``, a
data access (LD, ST, PUSH, POP, CALL's push, RET's pop, PUSHF, POPF -- not an instruction fetch,
not a trap frame) at a virtual address ``>= C_DATA_LIMIT`` raises #GP(0) before translation.

**Paging** (when ctrl[C_PAGING] & 1).  ``levels`` (1..4) is a machine setting.  ``PTBR`` holds the
root table's physical address (bits 31..12) and the ASID (bits 11..0).

* Lookup: ``vpn = va >> 12``; ``key = (asid << 20 | vpn) + 1``; ``i = (vpn ^ (vpn >> 7) ^ (vpn >>
  14)) & (S - 1)`` (a direct-mapped TLB with an XOR-folded index).  A TLB hit is ``tlb[2i] == key``.
  The value is ``frame | perms`` with perms a subset of PTE_W, PTE_U and PTE_D.  On a hit the access
  *needs* PTE_W and PTE_D for a write and PTE_U when CPL == 3; if the value has all it needs the hit
  is counted (``EV_TLB_HIT``) and ``pa = frame | (va & 0xFFF)``. Otherwise (a miss, or a hit lacking
  a needed bit) ``EV_TLB_MISS`` is counted, ``cycles += K_TLB_MISS``, and the page tables are
  walked.
* Walk: if ``levels * 10 + 12 < 32`` and ``va >> (levels*10 + 12) != 0``: not-present fault.
  ``table = PTBR & 0xFFFFF000``; ``perm = PTE_W | PTE_U``; for ``k = levels-1 .. 0``:
  ``idx = (va >> (12 + 10k)) & 0x3FF``; read the entry at ``table + 4*idx`` (``EV_WALK_REFS``
  += 1, ``cycles += K_WALK_REF``; an entry address beyond memory raises #GP(0)); not present ->
  page fault; else set its A bit in memory, ``perm &= pte``, ``table = pte & 0xFFFFF000``.
  After the last level: a write without PTE_W in ``perm``, or CPL == 3 without PTE_U, is a
  protection fault.  On success a write sets D in the leaf entry; the TLB entry ``i`` is filled
  with ``key`` and ``frame | (perm & (W|U)) | (PTE_D if the leaf's D is now set)``.  Faults do
  not fill the TLB.  Writes require PTE_W in every ring (x86 CR0.WP = 1).
* Page fault: ``FAULT_ADDR = va``; error code = PF_PRESENT (protection fault) | PF_WRITE (write)
  | PF_USER (CPL == 3) | PF_FETCH (instruction fetch); vector 14; ``EV_PAGE_FAULTS`` += 1.
* ``WRCR ptbr``: ASID 0 means *untagged*: the whole TLB is flushed.  A non-zero ASID flushes
  nothing: entries of other address spaces stay valid (x86 PCID).  ``WRCR paging`` flushes
  all.  ``INVLPG a`` clears entry ``i`` of ``va = a`` if its key matches (current ASID).
  ``TLBFLUSH`` clears all.  Every flush of the whole TLB counts ``EV_TLB_FLUSHES``.

**Trap delivery** of vector v with error code e and return pc rp (counted in
``counters[EV_VECTOR_BASE + v]`` and ``EV_TRAPS``, ``cycles += K_TRAP``, traced):

1. If ``intercept[v]``: stop with ``STOP_TRAP_EXIT`` (``C_STOP_VECTOR``, ``C_STOP_ERROR`` set;
   pc = rp; nothing else changes).  If ``TVB == NO_TVB`` or the handler address read from the
   vector table is 0: stop with ``STOP_UNHANDLED_TRAP`` the same way.
2. ``old_sp = sp``, ``old_cpl = cpl``, ``old_flags = IF << 9``.  The CPU switches to ring 0; if
   ``old_cpl > 0``, ``sp = KSP``.  Then it pushes, as supervisor writes: old_sp, old_flags,
   old_cpl, rp, e (so at the new sp: ``[sp]=e, [sp+4]=rp, [sp+8]=old_cpl, [sp+12]=old_flags,
   [sp+16]=old_sp``); IF = 0; pc = handler.  The handler address is the word at
   ``TVB + 4*v``, read as a supervisor access *before* the pushes.
3. A fault while reading the vector or pushing the frame, or more than 16 deliveries to guest
   handlers in a row without a retired instruction between them (counted after the checks of
   step 1, so intercepted and unhandled traps do not count), stops the run with
   ``STOP_TRIPLE_FAULT``
   (a real x86 would try a double-fault handler, then reset).

``IRET`` (ring 0 only) pops e (discarded), pc, cpl (& 3), flags (IF = bit 9), sp -- reading all
five words before changing anything.  ``SYSRET`` pops the same frame but always returns to ring 3
with IF = 1 (used to enter user programs).

**Sensitive unprivileged instructions.**  ``PUSHF`` pushes ``IF << 9``.  ``POPF`` pops a word; in
ring 0 IF = bit 9 of it; in rings 1..3 the IF bit is silently ignored (``EV_POPF_IGNORED`` += 1
when it differed from IF).  ``GETCPL a``: a = cpl.  ``RDTVB a``: a = TVB.  With ``strict`` set
(ctrl[C_STRICT] == 1) all four raise #GP(0) when cpl > 0.

**Ports.**  ``OUT PORT_CONSOLE``: append ``a & 0xFF`` to the console (if full:
``EV_CONSOLE_DROPPED`` += 1).  ``OUT PORT_TIMER``: period = a; if a == 0 the deadline is NEVER, else
``deadline = ticks + a``.  ``IN PORT_TIMER`` = period; ``IN PORT_TICKS`` = ticks & 0xFFFFFFFF; other
ports read 0xFFFFFFFF and ignore writes.  Each access counts ``EV_IO_IN``/``EV_IO_OUT``.

**Block device** (a disk of ``C_DISK_SECTORS`` sectors of 512 bytes = 128 words; its words are
stored in ``mem`` *after* physical memory, at word index ``C_MEM_BYTES/4 + 128*sector``, where no
load, store or fetch can reach them).  ``OUT PORT_BLK_SECTOR`` / ``OUT PORT_BLK_BUFFER`` set the
sector and the physical buffer address (low two bits ignored); ``IN`` of either reads it back.
``OUT PORT_BLK_COMMAND``: 1 copies the sector into memory at the buffer (``EV_BLK_READS`` += 1),
2 copies the buffer to the sector (``EV_BLK_WRITES`` += 1), synchronously (DMA: physical
addresses, no MMU, no TLB); status = ``BLK_OK``.  A sector ``>= C_DISK_SECTORS`` or a buffer
that does not fit in memory sets ``BLK_BAD_ADDRESS`` and copies nothing; another command sets
``BLK_BAD_COMMAND``.  ``IN PORT_BLK_COMMAND`` reads the status, ``IN PORT_BLK_SIZE`` the number of
sectors.  Each completed transfer costs ``K_BLK_SECTOR`` cycles.

**HLT** (ring 0 only) retires, then: if IF == 1 and the timer is on, the idle ticks until the
deadline are skipped (``ticks = deadline``, ``EV_IDLE_TICKS`` += the skipped ticks, ``cycles +=
K_IDLE_TICK * skipped``) so the interrupt is taken at the next step; otherwise the run stops
with ``STOP_HALT`` (pc after the HLT).  If an interrupt is already pending and IF == 1, nothing is
skipped.

**Invalid opcodes** (any opcode not in the table, including 0x00 and the reserved 0xF0..0xFF)
raise #UD with error code 0.  Privileged instructions with cpl > 0 raise #GP(0).
``WRCR``/``RDCR`` with an unknown register number raise #GP(0).  ``WRCR fault_addr`` is allowed.
"""
from __future__ import annotations

# ---- ctrl[] indices ------------------------------------------------------------------------
C_PC = 0
C_CPL = 1
C_IF = 2
C_PAGING = 3
C_PTBR = 4
C_FAULT_ADDR = 5
C_TVB = 6
C_KSP = 7
C_SCRATCH = 8
C_TICKS = 9            # retired instructions + idle ticks, since power-on
C_TIMER_PERIOD = 10
C_TIMER_DEADLINE = 11
C_TIMER_PENDING = 12
C_STRICT = 13          # 1: sensitive unprivileged instructions trap outside ring 0
C_LEVELS = 14          # page-table levels, 1..4
C_CYCLES = 15          # simulated cycles since power-on
C_STOP_REASON = 16
C_STOP_VECTOR = 17
C_STOP_ERROR = 18
C_CONSOLE_LEN = 19
C_TRACE_POS = 20       # number of trace records ever written (index = pos % T)
C_UNTIL = 21           # stop when pc == until (-1: never)
C_DELIVERIES = 22      # deliveries since the last retired instruction
C_MEM_BYTES = 23       # physical memory size in bytes
C_DISK_SECTORS = 24    # block device: number of 512-byte sectors (the disk follows memory in mem[])
C_BLK_SECTOR = 25      # block device register: sector number
C_BLK_BUFFER = 26      # block device register: physical address of the DMA buffer
C_BLK_STATUS = 27      # block device register: status of the last command (BLK_* below)
C_DATA_LIMIT = 28      # monitor-only segment limit for data accesses from rings 1..3 (0 = none)
NUM_CTRL = 64

#: Control-register number -> ctrl index (the order of isa.CR_*).
CR_TO_CTRL = (C_PAGING, C_PTBR, C_FAULT_ADDR, C_TVB, C_KSP, C_SCRATCH)

NEVER = (1 << 62)      # a timer deadline that never comes

# ---- stop reasons (unicorn-style named constants) ------------------------------------------
STOP_NONE = 0
STOP_BUDGET = 1         # the instruction budget ran out
STOP_HALT = 2           # HLT with nothing that could wake the CPU
STOP_UNHANDLED_TRAP = 3 # a trap with no vector table or no handler for that vector
STOP_TRAP_EXIT = 4      # a trap the monitor asked to intercept (intercept[v] == 1)
STOP_TRIPLE_FAULT = 5   # a fault while delivering a fault, or a fault storm
STOP_UNTIL = 6          # pc reached the `until` address
STOP_NAMES = {STOP_NONE: "none", STOP_BUDGET: "budget", STOP_HALT: "halt",
              STOP_UNHANDLED_TRAP: "unhandled_trap", STOP_TRAP_EXIT: "trap_exit",
              STOP_TRIPLE_FAULT: "triple_fault", STOP_UNTIL: "until"}

# ---- counters[] indices ---------------------------------------------------------------------
EV_INSTRUCTIONS = 0
EV_TRAPS = 1            # all deliveries (exceptions, interrupts, system calls)
EV_TLB_HIT = 2
EV_TLB_MISS = 3
EV_WALK_REFS = 4        # page-table entries read by walks
EV_PAGE_FAULTS = 5
EV_TLB_FLUSHES = 6
EV_INVLPG = 7
EV_IO_IN = 8
EV_IO_OUT = 9
EV_HLT = 10
EV_IDLE_TICKS = 11
EV_CR_WRITES = 12
EV_CR_READS = 13
EV_PRIV_FAULTS = 14     # #GP raised because a privileged instruction ran outside ring 0
EV_POPF_IGNORED = 15    # POPF outside ring 0 silently dropped a change of IF
EV_CONSOLE_DROPPED = 16
EV_SYSRET = 17
EV_IRET = 18
EV_BLK_READS = 19       # sectors the block device copied disk -> memory
EV_BLK_WRITES = 20      # sectors the block device copied memory -> disk
NUM_NAMED_EVENTS = 21
EV_VECTOR_BASE = 32     # counters[32 + v]: deliveries of vector v (256 slots)
EV_OP_BASE = 288        # counters[288 + opcode]: retired instructions per opcode (256 slots)
NUM_COUNTERS = 544

EVENT_NAMES = ("instructions", "traps", "tlb_hits", "tlb_misses", "walk_refs", "page_faults",
               "tlb_flushes", "invlpg", "io_in", "io_out", "hlt", "idle_ticks", "cr_writes",
               "cr_reads", "privilege_faults", "popf_ignored", "console_dropped", "sysret",
               "iret", "blk_reads", "blk_writes")
assert len(EVENT_NAMES) == NUM_NAMED_EVENTS

# ---- costs[] extras (after the 256 per-opcode costs) ---------------------------------------
K_TLB_MISS = 256        # fixed cost of a TLB miss (before the walk's references)
K_WALK_REF = 257        # one page-table entry read by a walk
K_TRAP = 258            # delivering a trap/interrupt (frame pushes, vector fetch)
K_IDLE_TICK = 259       # one skipped tick while halted
K_BLK_SECTOR = 260      # the block device's DMA of one sector
NUM_COSTS = 288

# ---- block device status codes ---------------------------------------------------------------
BLK_OK = 0
BLK_BAD_ADDRESS = 1
BLK_BAD_COMMAND = 2
BLK_SECTOR_WORDS = 128  # 512-byte sectors

# ---- trace ----------------------------------------------------------------------------------
TRACE_TRAP = 1          # detail = vector << 32 | error code
TRACE_STOP = 2          # detail = stop reason
TRACE_IO = 3            # detail = port << 32 | value
TRACE_KINDS = {TRACE_TRAP: "trap", TRACE_STOP: "stop", TRACE_IO: "io"}
