"""Machine state layout: the NumPy arrays every kernel reads and writes, and what they mean.

No Python objects cross into jitted code.  A machine is these arrays:

========== ============== =======================================================================
array      dtype[shape]   contents
========== ============== =======================================================================
regs       int64[16]      general registers r0..r15, each 0 <= value < 2**32 (r15 is sp)
ctrl       int64[128]     program counter, ring, flags, control registers, timer, cycle counter
                          ... (indices ``C_*`` below; ``NUM_CTRL``)
mem        uint32[N]      physical memory, one element per 32-bit word (byte address >> 2)
tlb        int64[2*S]     a direct-mapped TLB of S entries: tlb[2i] = key, tlb[2i+1] = value
costs      int64[288]     cycles: 256 per-opcode base costs, then extras at ``K_*`` (``NUM_COSTS``)
counters   int64[576]     event counters (``NUM_COUNTERS``): named events ``EV_*``, then
                          counters[EV_VECTOR_BASE + v] counts deliveries of trap vector v and
                          counters[EV_OP_BASE + op] retired instructions of opcode op
console    uint8[M]       console output bytes; ctrl[C_CONSOLE_LEN] of them are valid
trace      int64[T, 4]    ring buffer of events (tick, pc, kind, detail); ctrl[C_TRACE_POS] = total
intercept  uint8[256]     intercept[v] == 1: a trap on vector v stops the run (STOP_TRAP_EXIT) for a
                          monitor instead of being delivered to the guest's handler
========== ============== =======================================================================

Free slots (room to grow without renumbering anything)
------------------------------------------------------
Indices are not guest-visible (a guest names control registers by their ``isa.CR_*`` number,
devices by port, traps by vector), but the monitors, the reference interpreter and saved results
use them, so new state goes into free slots instead of moving old ones:

=================== ===================== ======================================================
array               free indices          reserved for
=================== ===================== ======================================================
ctrl                47..127 (81 slots)    IOMMU root, I/O bitmaps, posted-interrupt descriptor,
                                          interrupt-controller state, current-VMCS pointer ...
counters (named)    25..63 (39 slots)     events of the devices and mechanisms above
costs (extras)      261..287 (27 slots)   their costs (``K_*``)
=================== ===================== ======================================================

``tests/test_jit.py`` checks that this table matches the constants below.  Adding a control
register or an event: take the next free index, add it to ``EVENT_NAMES`` (events), move the
table's lower bound.

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
3. A fault while reading the vector or pushing the frame, or more than ``MAX_DELIVERIES`` (16)
   deliveries to guest handlers in a row without a retired instruction between them (counted
   after the checks of step 1, so intercepted and unhandled traps do not count), stops the run
   with ``STOP_TRIPLE_FAULT``
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

**VMX non-root operation** (hardware-assisted virtualization, VT-x style; see
:mod:`kernel_sim.vmx` for the VMCS in memory, VM entry and VM exit).  When ``C_VMX == 1`` the
CPU runs a guest on behalf of a monitor, and the execution controls ``C_VMX_CONTROLS``
(``CTL_*`` bits), the ``C_EXCEPTION_BITMAP``, ``C_EPTP``/``C_EPT_LEVELS`` and ``C_VPID`` --
loaded from the VMCS at VM entry -- decide which events leave the guest.  A *VM exit* stops
the run with ``STOP_VM_EXIT``: ``C_EXIT_REASON`` (Intel's basic exit reason numbers,
``EXIT_*``), ``C_EXIT_QUAL`` (the exit qualification), ``C_EXIT_INSTR`` (the exiting
instruction's word: this simulator's instruction-information field), ``C_EXIT_GPA`` and
``C_EXIT_GLA`` are set, ``pc`` is the exiting instruction (nothing retired, nothing changed)
and the guest's rings and IF are real: ring 0 of non-root mode is the guest kernel's ring 0.

* **VM-entry event injection** (first, before step 1): if ``C_INJECT & INJECT_VALID`` the
  vector ``C_INJECT & 0xFF`` is delivered through the guest's vector table with error code
  ``C_INJECT_ERROR`` and return pc = pc; the exception bitmap and external-interrupt exiting do
  not apply to it, the exits during delivery below do; ``C_INJECT`` is cleared.  An injected #PF does not change ``FAULT_ADDR`` (the
  monitor sets it in the guest state) but counts in ``EV_PAGE_FAULTS``: the count is of page
  faults delivered to the guest, however they arrived.
* **Interrupts.**  With ``CTL_EXTINT_EXITING`` a pending timer interrupt is taken whatever the
  guest's IF: it clears ``timer_pending`` and exits (``EXIT_EXTERNAL_INTERRUPT``).  Then, with
  ``CTL_INTWIN_EXITING`` and IF == 1, the CPU exits at this instruction boundary
  (``EXIT_INTERRUPT_WINDOW``), before the stop checks.
* **Exiting instructions** (ring 0 only: in rings 1..3 they raise #GP(0) as natively):
  ``HLT`` with ``CTL_HLT_EXITING`` (``EXIT_HLT``); ``IN``/``OUT`` with ``CTL_IO_EXITING``
  (``EXIT_IO_INSTRUCTION``, qualification ``port << 16 | 8 if IN | 3``: size 4 bytes);
  ``WRCR ptbr`` with ``CTL_CR3_LOAD_EXITING``, ``RDCR ptbr`` with ``CTL_CR3_STORE_EXITING``,
  ``WRCR paging`` with ``CTL_CR0_PG_EXITING`` (``EXIT_CR_ACCESS``, qualification ``cr | type
  << 4 | register << 8``, type 0 = write, 1 = read); ``INVLPG`` with ``CTL_INVLPG_EXITING``
  (``EXIT_INVLPG``, qualification = the linear address).  ``VMCALL`` always exits
  (``EXIT_VMCALL``, any ring).  With ``CTL_CR0_PG_EXITING``, ``RDCR paging`` does not exit but
  reads the *read shadow* ``C_CR0_SHADOW`` (the paging state the guest believes it has).
* **Exceptions.**  A vector ``v < 32`` whose bit is set in ``C_EXCEPTION_BITMAP`` exits
  (``EXIT_EXCEPTION_NMI``) instead of being delivered: ``C_EXIT_QUAL`` = the faulting linear
  address for #PF (else 0), ``C_EXIT_INTR_INFO = v``, ``C_EXIT_INTR_ERROR`` = the error code.
  Such an exception is not a guest delivery: no ``EV_TRAPS``, no vector count, no trap cycles,
  and ``FAULT_ADDR``/``EV_PAGE_FAULTS`` change only when a #PF really reaches the guest.  A
  triple fault exits (``EXIT_TRIPLE_FAULT``) instead of stopping the machine.
* **Exits during event delivery.**  Before delivering any event in non-root operation the CPU
  translates the addresses the delivery will touch (vector entry, then the five frame words,
  skipping what native delivery would not reach).  If one of them raises an EPT violation, or a
  #PF whose bitmap bit is set, the CPU exits (``EXIT_EPT_VIOLATION`` / ``EXIT_EXCEPTION_NMI``
  with that fault) before counting or changing anything but the walk's A/D bits (and, for a
  #PF not being injected, ``FAULT_ADDR``: CR2 is written as a #PF's delivery begins), with
  ``C_IDT_VECTORING = INJECT_VALID | vector`` and ``C_IDT_VECTORING_ERROR`` naming the event
  and pc = its return pc, so the monitor can fix the mapping and re-inject it.
* ``C_EPTP`` and ``C_VPID`` mean something only in non-root operation: VM exit clears them.
* **EPT** (``C_EPTP != 0``): every guest access, paging on or off, goes through the TLB; a
  miss walks the guest's tables over the nested table (:func:`kernel_sim.mmu.nested_walk`; with
  guest paging off only the nested table) and fills the TLB with the *combined* translation
  (guest-virtual -> host-physical, permissions of both).  A nested refusal exits
  (``EXIT_EPT_VIOLATION``, ``C_EXIT_GPA``, ``C_EXIT_GLA`` = the virtual address, qualification
  ``EPTQ_*``).  Nested references also count ``EV_NESTED_REFS``.
* **VPID.**  TLB keys carry ``C_VPID`` above the ASID: ``key = (((vpid << 12) | asid) << 20 |
  vpn) + 1``.  Without a VPID (0) the monitor must flush the TLB on every VM entry and exit.

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
# ---- VMX (hardware-assisted virtualization; loaded from / saved to the VMCS by kernel_sim.vmx)
C_VMX = 29             # 1: VMX non-root operation (a guest runs under a VMCS)
C_VMX_CONTROLS = 30    # execution controls, CTL_* bits
C_EXCEPTION_BITMAP = 31  # bit v set: exception vector v (< 32) exits instead of being delivered
C_EPTP = 32            # host-physical root of the nested (EPT) table; 0: EPT off
C_EPT_LEVELS = 33      # levels of the nested table (1..4)
C_VPID = 34            # TLB tag of the running guest (0: none)
C_CR0_SHADOW = 35      # read shadow of the paging register (CTL_CR0_PG_EXITING)
C_EXIT_REASON = 36     # basic exit reason of the last VM exit (EXIT_*)
C_EXIT_QUAL = 37       # exit qualification
C_EXIT_GPA = 38        # guest-physical address (EPT violation)
C_EXIT_GLA = 39        # guest-linear (virtual) address (EPT violation, page fault)
C_EXIT_INSTR = 40      # the exiting instruction's word (instruction information)
C_EXIT_INTR_INFO = 41  # exception exits: the vector
C_EXIT_INTR_ERROR = 42  # exception exits: the error code
C_INJECT = 43          # VM-entry interruption information: INJECT_VALID | vector (0: none)
C_INJECT_ERROR = 44    # VM-entry exception error code
C_IDT_VECTORING = 45   # an event whose delivery caused the exit: INJECT_VALID | vector (0: none)
C_IDT_VECTORING_ERROR = 46  # ... and its error code
NUM_CTRL = 128         # 47..127 free (see the table above)

#: Control-register number -> ctrl index (the order of isa.CR_*).
CR_TO_CTRL = (C_PAGING, C_PTBR, C_FAULT_ADDR, C_TVB, C_KSP, C_SCRATCH)

NEVER = (1 << 62)      # a timer deadline that never comes
MAX_DELIVERIES = 16    # deliveries in a row without a retired instruction before a triple fault

# ---- stop reasons (unicorn-style named constants) ------------------------------------------
STOP_NONE = 0
STOP_BUDGET = 1         # the instruction budget ran out
STOP_HALT = 2           # HLT with nothing that could wake the CPU
STOP_UNHANDLED_TRAP = 3 # a trap with no vector table or no handler for that vector
STOP_TRAP_EXIT = 4      # a trap the monitor asked to intercept (intercept[v] == 1)
STOP_TRIPLE_FAULT = 5   # a fault while delivering a fault, or a fault storm
STOP_UNTIL = 6          # pc reached the `until` address
STOP_VM_EXIT = 7        # VMX non-root: an event the VMCS says the monitor handles (C_EXIT_*)
STOP_NAMES = {STOP_NONE: "none", STOP_BUDGET: "budget", STOP_HALT: "halt",
              STOP_UNHANDLED_TRAP: "unhandled_trap", STOP_TRAP_EXIT: "trap_exit",
              STOP_TRIPLE_FAULT: "triple_fault", STOP_UNTIL: "until",
              STOP_VM_EXIT: "vm_exit"}

# ---- VMX execution controls (C_VMX_CONTROLS bits; this simulator packs into one word what
# Intel spreads over the pin-based, primary and secondary processor-based controls and the CR0
# guest/host mask -- the Intel field is named on each line) --------------------------------
CTL_EXTINT_EXITING = 1 << 0     # pin-based bit 0 "external-interrupt exiting"
CTL_INTWIN_EXITING = 1 << 1     # primary bit 2 "interrupt-window exiting"
CTL_HLT_EXITING = 1 << 2        # primary bit 7 "HLT exiting"
CTL_INVLPG_EXITING = 1 << 3     # primary bit 9 "INVLPG exiting"
CTL_CR3_LOAD_EXITING = 1 << 4   # primary bit 15 "CR3-load exiting"
CTL_CR3_STORE_EXITING = 1 << 5  # primary bit 16 "CR3-store exiting"
CTL_IO_EXITING = 1 << 6         # primary bit 24 "unconditional I/O exiting"
CTL_CR0_PG_EXITING = 1 << 7     # CR0 guest/host mask bit 31 (PG) owned by the host
CTL_ENABLE_EPT = 1 << 8         # secondary bit 1 "enable EPT"
CTL_ENABLE_VPID = 1 << 9        # secondary bit 5 "enable VPID"

# ---- Intel basic exit reasons (SDM Vol. 3, Appendix C) ----------------------------------------
EXIT_EXCEPTION_NMI = 0
EXIT_EXTERNAL_INTERRUPT = 1
EXIT_TRIPLE_FAULT = 2
EXIT_INTERRUPT_WINDOW = 7
EXIT_HLT = 12
EXIT_INVLPG = 14
EXIT_VMCALL = 18
EXIT_CR_ACCESS = 28
EXIT_IO_INSTRUCTION = 30
EXIT_EPT_VIOLATION = 48
EXIT_NAMES = {EXIT_EXCEPTION_NMI: "EXCEPTION_NMI", EXIT_EXTERNAL_INTERRUPT: "EXTERNAL_INTERRUPT",
              EXIT_TRIPLE_FAULT: "TRIPLE_FAULT", EXIT_INTERRUPT_WINDOW: "INTERRUPT_WINDOW",
              EXIT_HLT: "HLT", EXIT_INVLPG: "INVLPG", EXIT_VMCALL: "VMCALL",
              EXIT_CR_ACCESS: "CR_ACCESS", EXIT_IO_INSTRUCTION: "IO_INSTRUCTION",
              EXIT_EPT_VIOLATION: "EPT_VIOLATION"}
INJECT_VALID = 1 << 31          # C_INJECT: an event is to be injected at VM entry

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
EV_PTBR_WRITES = 21     # WRCR ptbr that retired (a subset of cr_writes)
EV_PTBR_READS = 22      # RDCR ptbr that retired (a subset of cr_reads)
EV_PAGING_WRITES = 23   # WRCR paging that retired (a subset of cr_writes)
EV_NESTED_REFS = 24     # nested (EPT) entries read by walks (a subset of walk_refs)
NUM_NAMED_EVENTS = 25   # 25..63 free (see the table above)
EV_VECTOR_BASE = 64     # counters[EV_VECTOR_BASE + v]: deliveries of vector v (256 slots)
EV_OP_BASE = EV_VECTOR_BASE + 256   # counters[EV_OP_BASE + opcode]: retired instructions per
#                                     opcode (256 slots)
NUM_COUNTERS = EV_OP_BASE + 256

EVENT_NAMES = ("instructions", "traps", "tlb_hits", "tlb_misses", "walk_refs", "page_faults",
               "tlb_flushes", "invlpg", "io_in", "io_out", "hlt", "idle_ticks", "cr_writes",
               "cr_reads", "privilege_faults", "popf_ignored", "console_dropped", "sysret",
               "iret", "blk_reads", "blk_writes", "ptbr_writes", "ptbr_reads", "paging_writes",
               "nested_refs")
assert len(EVENT_NAMES) == NUM_NAMED_EVENTS

# ---- costs[] extras (after the 256 per-opcode costs) ---------------------------------------
K_TLB_MISS = 256        # fixed cost of a TLB miss (before the walk's references)
K_WALK_REF = 257        # one page-table entry read by a walk
K_TRAP = 258            # delivering a trap/interrupt (frame pushes, vector fetch)
K_IDLE_TICK = 259       # one skipped tick while halted
K_BLK_SECTOR = 260      # the block device's DMA of one sector
NUM_COSTS = 288

# ---- block device status codes ---------------------------------------------------------------
# (part of the guest ABI: defined in kernel_sim/abi.py)
from .abi import BLK_BAD_ADDRESS, BLK_BAD_COMMAND, BLK_OK  # noqa: E402,F401
from .abi import SECTOR_WORDS as BLK_SECTOR_WORDS  # noqa: E402,F401

# ---- trace ----------------------------------------------------------------------------------
TRACE_TRAP = 1          # detail = vector << 32 | error code
TRACE_STOP = 2          # detail = stop reason
TRACE_IO = 3            # detail = port << 32 | value
TRACE_KINDS = {TRACE_TRAP: "trap", TRACE_STOP: "stop", TRACE_IO: "io"}
