"""``paravirt``: a Xen-style hypervisor for a kernel that knows it is virtualized.

Trap-and-emulate and binary translation run an *unmodified* kernel and must catch every
sensitive thing it does.  Paravirtualization (Xen, Barham et al. 2003) changes the kernel
instead: the guest is built with ``PARAVIRT=1`` (:func:`kernel_sim.guest.build_guest`
``(..., paravirt=True)``), it never executes a privileged instruction, and it asks the monitor
for what it cannot do itself with **hypercalls** -- ``vmcall N``, a deliberate trap, with
arguments in r1..r3 and the result in r0 (the ABI is in :mod:`kernel_sim.guest` and
``guests/kernel.s``).

How the monitor runs the guest
------------------------------
* **Rings.**  The PV kernel runs in host ring 1 (as 32-bit Xen guests did), user code in ring 3.
  The guest's RAM sits at machine address ``layout.guest_base`` (``MONITOR_BYTES`` unless the
  monitor was given an allocation; boot info word 4 tells the kernel); the monitor's region
  holds only the boot page tables, at its top.
* **Every trap comes to the monitor** (the host intercepts all 256 vectors):

  ========================  ==================================================================
  host trap                 what the monitor does
  ========================  ==================================================================
  #UD on ``vmcall`` in      a hypercall (``hypercall:<name>``); the VMCALL retires as one guest
  ring 1                    instruction and one tick
  #GP on a privileged       a *named guest fault*: the run stops (``paravirt:privileged_fault``,
  instruction in ring 1     the message is in the result's notes) -- a PV kernel must not have one
  timer                     the guest's virtual timer fired: deliver it, or mark it pending in
                            the shared info page while the guest masks events
                            (``timer:pending``); or the monitor's own time slice ran out
                            (``monitor:preempt``)
  anything else             *reflected* into the guest through the trap table it registered
                            with ``set_trap_table`` (``reflect:<vector>``); a #PF first stores
                            the fault address in shared info word 2 (Xen: ``vcpu_info`` cr2);
                            a ``vmcall`` from ring 3 is a #UD like any other (user programs
                            cannot make hypercalls; natively they get #UD too)
  ========================  ==================================================================

  Reflection builds the same five-word frame as the CPU (error code, return pc, ring, flags,
  old sp) on the kernel stack given with ``stack_switch`` (trap from ring 3) or the current
  stack (trap from ring 1), switches to ring 1 and masks virtual interrupts.  ``iret`` and
  ``sysret`` hypercalls pop it again; a frame cannot return to ring 0 or 2 (the ring is forced
  to 1 unless it is 3, as Xen forces the guest's RPL).
* **Virtual interrupts** are a flag in the shared info page (word 0 ``evtchn_upcall_mask``,
  word 1 ``evtchn_upcall_pending``): masking is a plain store, no trap.  Before every return to
  the guest the monitor delivers a pending timer event if the guest is not masking (Xen checks
  ``upcall_pending`` on each exit to the guest); the kernel's ``event_check`` hypercall asks for
  that right after it unmasks.  The host's own timer keeps running whatever the guest masks, so
  a guest that masks events and spins cannot keep the monitor out (``monitor:preempt``).
* **Direct paging.**  The guest's page tables are the tables the host MMU walks: entries hold
  machine frames and there are no shadow tables.  Safety comes from *validating every update*
  (Xen's page types, simplified):

  - every present entry the guest writes must name a frame of the guest's own RAM;
  - a frame is a *page-table page* once the guest loads it as a root (``new_baseptr``: a
    directory, validated and pinned) or a validated directory entry points at it (a leaf
    table); its entries are checked when it gets that type;
  - a page-table page is never mapped writable: a leaf entry with W that names one is refused
    (the monitor counts the writable mappings of every frame, and a frame that has any cannot
    become a page table) -- unless the table is no longer in use (not the loaded root, no
    directory entry points at it): then it stops being a page table and becomes ordinary memory
    (the kernel's ``free_pt``);
  - the address of an updated entry must lie in a page-table page of this guest: a typed table,
    or a frame the guest prepared for one by removing every writable mapping of it (the kernel
    fills new tables that way before it loads them);
  - the shared info page never becomes a page table (the monitor writes it), and ``block_io``
    never transfers into a page-table page.

  A refused update stops the batch and returns -1 to the guest (``paravirt:refused_update``;
  the updates before it stay applied, as Xen reports the count done).  ``new_baseptr`` of a root
  outside the guest or one that does not validate returns -1 (``paravirt:refused_baseptr``).
  The monitor keeps the TLB honest where the guest could not: when a frame becomes a page table
  the whole TLB is flushed, so no stale writable translation of it survives.
* **Devices.**  ``console_write`` appends to a monitor-owned console; ``block_io`` copies
  between the virtual disk and guest memory (a buffer inside the guest and outside its page
  tables); ``set_timer``/``get_ticks``/``block`` drive the virtual timer in host ticks
  (``block`` skips the idle ticks to the next deadline, counted as ``idle_ticks`` as HLT does).

The batch size
--------------
The PV kernel queues page-table writes and hands them over in one ``mmu_update`` per batch; the
batch size is the *image's* (boot info word 7, ``build_guest(..., batch=N)``), shown in the
result's notes.  Each ``mmu_update`` costs one entry/exit plus ``hypercall_pte`` per entry, so a
bigger batch saves transitions only where the kernel writes several entries before it needs
them applied (building the boot identity map, tearing down an address space); a single PTE
write followed by INVLPG or a return to user mode is flushed alone whatever the batch.

Events and costs
----------------
=============================  ===============================================================
``hypercall:<name>``           one hypercall: ``monitor_entry`` + ``monitor_return``
                               (``transitions``) + ``hypercall`` (``emulation``; ``devices`` for
                               ``console_write`` and ``block_io``, which also pay ``blk_sector``
                               per sector); ``mmu_update`` adds ``hypercall_pte`` per entry it
                               validates (``memory``), so its average cost grows with the batch
``reflect:<vector>``           a trap or interrupt bounced into the guest: entry + return +
                               ``reflect`` (a pending event delivered on the way back from
                               another exit pays only ``reflect``)
``paravirt:pte_updates``       page-table entries validated by ``mmu_update`` (no extra cycles:
                               they are in ``hypercall:mmu_update``)
``paravirt:validate_table``    frames that became page tables; ``hypercall_pte`` per present
                               entry checked (``memory``)
``paravirt:release_table``     page tables that became ordinary memory again
``paravirt:refused_update``,   requests refused (the guest gets -1; the first reason is in the
``paravirt:refused_baseptr``   notes)
``paravirt:pt_write_fault``    the guest kernel stored to one of its page tables (reflected #PF)
``paravirt:privileged_fault``  a privileged instruction in the PV kernel (the run stops)
``timer:pending``              the virtual timer fired while the guest masked events
``monitor:preempt``            the monitor's own time slice ended (entry + return)
=============================  ===============================================================

The host CPU's own cycles -- the guest's instructions, TLB misses, walks, idle ticks -- are
``guest``.  The result's ``traps`` are the traps delivered to the guest (reflected), not the
host's exits.  A run stops with ``halt`` (``shutdown`` hypercall, or ``block`` with no timer
armed), ``budget``, ``unhandled_trap`` (a named guest fault, or a trap the guest has no handler
for), ``triple_fault`` (the monitor cannot build the guest's trap frame) or ``until`` (a host
breakpoint, ``host.ctrl[C_UNTIL]``, set after ``_boot()`` by a debugger or a test).
"""
from __future__ import annotations

import numpy as np

from .. import isa
from .. import state as S
from .base import GuestView, Monitor, MonitorError, Needs, check_settings
from .vcpu import PRIVILEGED_OPS, SENSITIVE_OPS, Stop, TrapDelivery

#: host ticks the guest may run before the monitor takes the CPU back (a scheduling quantum;
#: an assumption of the model, as in trap_emulate)
DEFAULT_TIME_SLICE = 50_000
#: most (entry, value) pairs one mmu_update may carry (the kernel's queue holds 64)
MAX_MMU_BATCH = 1024

#: Hypercall numbers: the guest ABI's (:data:`kernel_sim.abi.HYPERCALLS`).
from ..abi import HYPERCALLS  # noqa: E402
HYPERCALL_NAMES = {n: name for name, n in HYPERCALLS.items()}
_DEVICE_HYPERCALLS = frozenset(("console_write", "block_io"))

# boot information page and shared info page (word indices), from the guest ABI
from ..abi import (BI_BATCH, BI_MAGIC, BI_MOFF, BI_SHINFO, BOOT_MAGIC,  # noqa: E402
                   DEFAULT_BATCH, SI_CR2, SI_MASK, SI_PENDING)
from ..abi import MAX_BATCH as KERNEL_MAX_BATCH  # noqa: E402

# Xen-like error numbers returned in r0
EPERM, EFAULT, EINVAL, ENOSYS = -1, -14, -22, -38

FRAME = isa.PTE_FRAME_MASK
PAGE = isa.PAGE_SIZE
P, W = isa.PTE_P, isa.PTE_W
NONE, LEAF, DIRECTORY = -1, 0, 1         # page types of a guest frame
_REFLECT = {v: "reflect:" + isa.VECTOR_KEYS.get(v, f"vector_{v}") for v in range(256)}


class _Refused(Exception):
    """An update or a root the monitor does not accept (the message says why)."""


class _ReflectToRing1(TrapDelivery):
    """Reflecting a trap into the PV kernel: the bare CPU's delivery rules
    (:class:`~kernel_sim.monitors.vcpu.TrapDelivery`) with Xen's differences -- the handler
    comes from the trap table the guest registered (``set_trap_table``), the kernel runs in
    ring 1, a trap from ring 3 switches to the stack given with ``stack_switch``, the interrupt
    flag is the event mask in the shared info page, and the frame is written through the
    guest's own (direct-paging) tables.  The state is the host CPU's ``ctrl`` and ``regs``,
    which the guest runs on directly."""

    handler_ring = 1

    def __init__(self, mon: "Paravirt"):
        self.mon = mon
        self.ctrl, self.regs = mon.host.ctrl, mon.host.regs
        #: traps reflected into the guest, per vector (the result's ``traps``)
        self.reflected = np.zeros(256, dtype=np.int64)
        self.in_a_row, self.last_retired = 0, -1

    def count_trap(self, vec: int) -> None:
        self.reflected[vec] += 1
        self.mon.host.counters[S.EV_TRAPS] += 1

    def trap_handler(self, vec: int, err: int, rp: int) -> int:
        table = self.mon.trap_table
        if table is None or table[vec] == 0:
            raise Stop(S.STOP_UNHANDLED_TRAP, vec, err,
                       f"{isa.VECTOR_KEYS.get(vec, f'vector {vec}')} at 0x{rp:08x} in ring "
                       f"{int(self.ctrl[S.C_CPL])}: the guest registered no handler for vector "
                       f"{vec}")
        return table[vec]

    def deliveries_in_a_row(self) -> int:
        """The host CPU retires the guest's instructions: a delivery with none retired since
        the last one is one more in a row."""
        retired = int(self.mon.host.counters[S.EV_INSTRUCTIONS])
        self.in_a_row = self.in_a_row + 1 if retired == self.last_retired else 1
        self.last_retired = retired
        return self.in_a_row

    def kernel_stack(self, vec: int, err: int) -> int:
        if self.mon.ksp is None:
            raise Stop(S.STOP_TRIPLE_FAULT, vec, err,
                       f"{isa.VECTOR_KEYS.get(vec, f'vector {vec}')} from user mode but the "
                       f"guest gave no kernel stack (stack_switch)")
        return self.mon.ksp

    def interrupt_flag(self) -> int:
        return 0 if self.mon._shared(SI_MASK) else 1

    def mask_interrupts(self) -> None:
        self.mon._shared(SI_MASK, 1)

    def frame_slot(self, va: int) -> int:
        return self.mon._walk(va, True)

    def write_frame(self, slot: int, value: int) -> None:
        self.mon.mem[slot >> 2] = value & 0xFFFFFFFF


class Paravirt(Monitor):
    """Xen-style paravirtualization with direct paging (see the module docstring).

    Extra settings: ``time_slice`` (host ticks between forced returns to the monitor),
    ``guard_bytes`` (host memory after the guest's RAM that belongs to nobody; the
    containment tests watch it).  The ``mmu_update`` batch size belongs to the image.
    """

    name = "paravirt"
    needs = Needs(guest_build="paravirt", guest_knobs=("batch",), same_kernel_as_native=False,
                  page_table_levels=(2,),
                  why_levels="the PARAVIRT kernel is built for 2-level page tables")
    description = ("modified (PARAVIRT=1) kernel in ring 1: hypercalls instead of privileged "
                   "instructions, validated page-table updates (direct paging)")
    #: the kernel asks with hypercalls; a write to one of its (read-only) page tables traps;
    #: validating tables and a timer left pending in the shared-info page are the
    #: hypervisor's own work, and a reflected trap is the guest's own
    event_kinds = {"hypercall:": "hypercall", "paravirt:pt_write_fault": "trap",
                   "paravirt:": None, "reflect:": None, "timer:": None}

    def __init__(self, image, *, time_slice: int = DEFAULT_TIME_SLICE,
                 guard_bytes: int = PAGE, batch=None, **settings):
        if batch is not None:
            raise ValueError("the mmu_update batch size is a property of the guest image "
                             "(boot info word 7): build it with build_guest(..., paravirt=True, "
                             f"batch=N), not Paravirt(batch={batch!r})")
        super().__init__(image, **settings)
        check_settings(("time_slice", time_slice, 1, 10 ** 9),
                       ("guard_bytes", guard_bytes, 0, 1 << 24))
        if guard_bytes % PAGE:
            raise ValueError(f"guard_bytes must be a multiple of {PAGE}")
        ram = np.asarray(image.ram)
        size = int(image.ram_size)
        if size % PAGE or size < 2 * PAGE or len(ram) * 4 < size:
            raise MonitorError(f"the image's RAM ({size} bytes) must be whole pages")
        if int(ram[BI_MAGIC]) != BOOT_MAGIC:
            raise MonitorError("the image has no boot information page (word 0 must be the "
                               "magic 0x4B53494D 'KSIM'): a PARAVIRT guest needs one to learn "
                               "its machine offset and shared info page")
        shinfo = int(ram[BI_SHINFO])
        if shinfo % PAGE or not 0 < shinfo < size:
            raise MonitorError(f"boot info word 5 (shared info page) must be a page-aligned "
                               f"guest-physical address inside the RAM, got 0x{shinfo:x}")
        self.time_slice = int(time_slice)
        self.guard_bytes = int(guard_bytes)
        raw_batch = int(ram[BI_BATCH])
        #: the PV kernel's queue length, as the kernel reads boot info word 7
        self.batch = min(raw_batch or DEFAULT_BATCH, KERNEL_MAX_BATCH)

    # ==== boot ====================================================================================
    def _boot(self) -> None:
        image = self.image
        h = self._place_guest(ring=1, guard_bytes=self.guard_bytes, costs={"trap": 0},
                              trace_size=self.trace_size)
        moff, size = self.layout.guest_base, self.layout.guest_size
        self.moff, self.size, self.nframes = moff, size, size // PAGE
        self.mem = h.mem
        h.mem[(moff >> 2) + BI_MOFF] = moff          # where the guest's RAM really is
        self.shinfo = moff + int(image.ram[BI_SHINFO])
        self.shinfo_frame = int(image.ram[BI_SHINFO]) // PAGE
        # boot page tables at the top of the monitor's region (Xen's domain builder makes them
        # too): guest virtual va -> machine moff + va for the whole RAM, supervisor, writable
        ntables = -(-size // (PAGE * 1024))
        top = self.layout.monitor_top
        if (ntables + 1) * PAGE > self.layout.monitor_size:
            raise MonitorError(f"the monitor's region is too small for the {ntables + 1} pages "
                               f"of boot page tables")
        self.boot_tables = (top - (ntables + 1) * PAGE, top)     #: host range, monitor-owned
        root = self.boot_tables[0]
        for t in range(ntables):
            table = root + (t + 1) * PAGE
            h.mem[(root >> 2) + t] = table | P | W
            for i in range(min(1024, self.nframes - 1024 * t)):
                h.mem[(table >> 2) + i] = (moff + (1024 * t + i) * PAGE) | P | W
        self.boot_root = root
        hc = h.ctrl
        hc[S.C_PAGING] = 1                 # a PV guest always runs on page tables
        hc[S.C_PTBR] = root
        hc[S.C_IF] = 1                     # the host's IF stays on: the guest's is virtual
        hc[S.C_PC] = image.entry
        h.intercept[:] = 1               # every trap comes to the monitor
        self._shared(SI_MASK, 1)         # events masked until the guest unmasks them
        # page types (Xen's type_info, simplified): per guest frame
        self.ptype = np.full(self.nframes, NONE, dtype=np.int8)
        self.tref = np.zeros(self.nframes, dtype=np.int64)   # directory entries -> leaf table
        self.wref = np.zeros(self.nframes, dtype=np.int64)   # writable leaf entries -> frame
        # virtual CPU state the monitor keeps
        self.trap_table = None           # copy of the guest's 256 handlers (Xen copies it too)
        self.tvb = isa.NO_TVB
        self.ksp = None
        self.paging_enabled = False
        self.timer_period, self.timer_deadline = 0, S.NEVER
        self.blk = [0, 0, S.BLK_OK]
        self.console = bytearray()
        self.traps = _ReflectToRing1(self)
        self.refusals: list = []
        self.stop_notes: list = []
        self.exit_status = None

    # ==== memory helpers ==========================================================================
    def _shared(self, k: int, value: int | None = None) -> int:
        if value is not None:
            self.mem[(self.shinfo >> 2) + k] = value
        return int(self.mem[(self.shinfo >> 2) + k])

    def _frame(self, maddr: int) -> int:
        """Guest frame number of machine address ``maddr``, or -1 if it is not the guest's."""
        g = maddr - self.moff
        return g // PAGE if 0 <= g < self.size else -1

    def _walk(self, va: int, write: bool) -> int:
        """Machine address of guest virtual ``va`` in the loaded tables (supervisor access, as
        ring 1), setting accessed/dirty bits like the MMU; -1 if it does not translate."""
        mem, limit = self.mem, self.host.memory_size
        va &= 0xFFFFFFFF
        table = int(self.host.ctrl[S.C_PTBR]) & FRAME
        perm = P | W
        for shift in (22, 12):
            addr = table + 4 * ((va >> shift) & 0x3FF)
            if addr + 4 > limit:
                return -1
            entry = int(mem[addr >> 2])
            if not entry & P:
                return -1
            mem[addr >> 2] = entry | isa.PTE_A
            perm &= entry
            table = entry & FRAME
        if write:
            if not perm & W:
                return -1
            mem[addr >> 2] = int(mem[addr >> 2]) | isa.PTE_D
        pa = table | (va & 0xFFF)
        return pa if pa + 4 <= limit else -1

    def _read_va(self, va: int) -> int:
        pa = self._walk(va, False)
        if pa < 0:
            raise _Refused(f"guest address 0x{va & 0xFFFFFFFF:08x} is not mapped")
        return int(self.mem[pa >> 2])

    def _fetch(self, pc: int) -> int:
        pa = self._walk(pc, False)
        return int(self.mem[pa >> 2]) if pa >= 0 else -1

    # ==== TLB (the host's: with direct paging it caches the guest's own translations) ============
    def _flush_tlb(self) -> None:
        self.host.tlb[:] = 0
        self.host.counters[S.EV_TLB_FLUSHES] += 1

    def _invlpg(self, va: int) -> None:
        """INVLPG semantics of :mod:`kernel_sim.state` on the host TLB."""
        tlb = self.host.tlb
        vpn = (va & 0xFFFFFFFF) >> 12
        i = 2 * ((vpn ^ (vpn >> 7) ^ (vpn >> 14)) & ((len(tlb) >> 1) - 1))
        key = (((int(self.host.ctrl[S.C_PTBR]) & isa.ASID_MASK) << 20) | vpn) + 1
        if tlb[i] == key:
            tlb[i] = tlb[i + 1] = 0
        self.host.counters[S.EV_INVLPG] += 1

    # ==== page types: validation of the guest's page tables ======================================
    def _entries(self, frame: int) -> np.ndarray:
        base = (self.moff >> 2) + frame * 1024
        return self.mem[base:base + 1024].astype(np.int64)

    def _check_target(self, value: int) -> int:
        """Frame number of a present entry's target; refused if outside the guest."""
        f = self._frame(value & FRAME)
        if f < 0:
            raise _Refused(f"frame 0x{value & FRAME:08x} is not in the guest's memory "
                           f"(machine 0x{self.moff:x}..0x{self.moff + self.size - 1:x})")
        return f

    def _acquire(self, frame: int, level: int) -> int:
        """Give ``frame`` page-table type ``level`` (validating what that needs); returns the
        number of present entries checked.  Nothing changes if it is refused."""
        current = int(self.ptype[frame])
        if current == level:
            return 0
        if current != NONE:                 # the other level: only if nothing uses it any more
            if self._in_use(frame):
                raise _Refused(f"frame 0x{self.moff + frame * PAGE:08x} is in use as a page "
                               f"{'directory' if current == DIRECTORY else 'table'}")
            self._release(frame)
        new = {frame: level}
        checked = 0
        if level == DIRECTORY:
            ents = self._entries(frame)
            for idx in np.nonzero(ents & P)[0]:
                checked += 1
                t = self._check_target(int(ents[idx]))
                if self.ptype[t] == DIRECTORY or t in new and new[t] == DIRECTORY:
                    raise _Refused(f"directory entry {int(idx)} points at a page directory")
                if self.ptype[t] == NONE:
                    new[t] = LEAF
        grant = []
        for f, lvl in new.items():
            if self.ptype[f] == DIRECTORY and lvl == LEAF:
                raise _Refused("a page directory cannot be used as a page table")
            if f == self.shinfo_frame:
                raise _Refused("the shared info page cannot become a page table")
            if self.wref[f]:
                raise _Refused(f"frame 0x{self.moff + f * PAGE:08x} is mapped writable "
                               f"({int(self.wref[f])} mapping(s)): it cannot become a page "
                               f"table")
            if lvl == LEAF:
                ents = self._entries(f)
                for idx in np.nonzero(ents & P)[0]:
                    checked += 1
                    x = self._check_target(int(ents[idx]))
                    if ents[idx] & W:
                        if self.ptype[x] != NONE or x in new:
                            raise _Refused(f"entry {int(idx)} maps a page-table page writable")
                        grant.append(x)
        # commit
        for f, lvl in new.items():
            self.ptype[f] = lvl
        for x in grant:
            self.wref[x] += 1
        if level == DIRECTORY:
            ents = self._entries(frame)
            for idx in np.nonzero(ents & P)[0]:
                self.tref[self._frame(int(ents[idx]) & FRAME)] += 1
        self.count("paravirt:validate_table", n=len(new), cycles=checked *
                   self.cost["hypercall_pte"], category="memory")
        self._flush_tlb()                # no stale writable translation of a new table survives
        return checked

    def _release(self, frame: int) -> None:
        """``frame`` stops being a page table (nothing uses it): drop what its entries held."""
        level = int(self.ptype[frame])
        ents = self._entries(frame)
        for idx in np.nonzero(ents & P)[0]:
            t = self._frame(int(ents[idx]) & FRAME)
            if level == DIRECTORY:
                self.tref[t] -= 1
            elif ents[idx] & W:
                self.wref[t] -= 1
        self.ptype[frame] = NONE
        self.count("paravirt:release_table", category="memory")

    def _in_use(self, frame: int) -> bool:
        if self.ptype[frame] == DIRECTORY:
            return self._frame(int(self.host.ctrl[S.C_PTBR]) & FRAME) == frame
        return self.tref[frame] > 0

    def _update(self, ptr: int, value: int) -> None:
        """One validated page-table write: entry at machine address ``ptr`` = ``value``."""
        if ptr & 3:
            raise _Refused(f"entry address 0x{ptr:08x} is not word-aligned")
        table = self._frame(ptr)
        if table < 0:
            raise _Refused(f"entry address 0x{ptr:08x} is not in the guest's memory")
        level = int(self.ptype[table])
        if level == NONE and self.wref[table]:
            raise _Refused(f"entry address 0x{ptr:08x} is not in a page-table page (its frame "
                           f"is mapped writable)")
        if table == self.shinfo_frame:
            raise _Refused("entry address is in the shared info page")
        old = int(self.mem[ptr >> 2])
        target = self._check_target(value) if value & P else -1
        if level == DIRECTORY:
            if target >= 0:
                if target == table:
                    raise _Refused("a directory entry cannot point at its own directory")
                self._acquire(target, LEAF)
                self.tref[target] += 1
            if old & P:
                self.tref[self._frame(old & FRAME)] -= 1
        elif level == LEAF:
            if target >= 0 and value & W:
                if target == table:
                    raise _Refused("a page table cannot map itself writable")
                if self.ptype[target] != NONE:
                    if self._in_use(target):
                        raise _Refused(f"frame 0x{value & FRAME:08x} is a page-table page in "
                                       f"use: it cannot be mapped writable")
                    self._release(target)
                self.wref[target] += 1
            if old & P and old & W:
                self.wref[self._frame(old & FRAME)] -= 1
        self.mem[ptr >> 2] = value & 0xFFFFFFFF

    def check_invariants(self) -> list:
        """Recompute what direct paging promises from the tables themselves; return the
        violations (an empty list when the guest is contained).

        * every present entry of a page-table page names a frame of the guest;
        * directory entries point at leaf tables, never at a directory;
        * no page-table page (nor the shared info page) is mapped writable by a leaf table;
        * the monitor's writable-mapping counts match the tables;
        * the loaded root (once the guest left the boot tables) is a validated directory.
        """
        problems = []
        wref = np.zeros(self.nframes, dtype=np.int64)
        for f in np.nonzero(self.ptype != NONE)[0]:
            ents = self._entries(int(f))
            for idx in np.nonzero(ents & P)[0]:
                t = self._frame(int(ents[idx]) & FRAME)
                where = f"entry {int(idx)} of frame 0x{int(f) * PAGE:x}"
                if t < 0:
                    problems.append(f"{where} names machine 0x{int(ents[idx]) & FRAME:x}, "
                                    f"outside the guest")
                elif self.ptype[f] == DIRECTORY and self.ptype[t] != LEAF:
                    problems.append(f"{where} points at a frame that is not a leaf table")
                elif self.ptype[f] == LEAF and ents[idx] & W:
                    wref[t] += 1
        if not np.array_equal(wref, self.wref):
            problems.append("writable-mapping counts differ from the tables")
        for f in np.nonzero((self.ptype != NONE) & (wref > 0))[0]:
            problems.append(f"page-table page 0x{int(f) * PAGE:x} is mapped writable")
        if wref[self.shinfo_frame] and self.ptype[self.shinfo_frame] != NONE:
            problems.append("the shared info page is a page table")
        root = int(self.host.ctrl[S.C_PTBR]) & FRAME
        if root != self.boot_root and (self._frame(root) < 0 or
                                       self.ptype[self._frame(root)] != DIRECTORY):
            problems.append(f"the loaded root 0x{root:x} is not a validated directory")
        return problems

    # ==== hypercalls ==============================================================================
    def _charge(self, reason: str, cost_name: str | None, category: str,
                transition: bool = True) -> None:
        if transition:
            self.count(reason, cycles=self.cost["monitor_entry"] + self.cost["monitor_return"],
                       category="transitions")
            if cost_name:
                self.count(reason, n=0, cycles=self.cost[cost_name], category=category)
        else:
            self.count(reason, cycles=self.cost[cost_name] if cost_name else 0,
                       category=category)

    def _refuse(self, reason: str, message: str) -> None:
        self.count(reason, category="emulation")
        self.refusals.append(message)

    def _hypercall(self, number: int) -> None:
        h = self.host
        hc, regs = h.ctrl, h.regs
        name = HYPERCALL_NAMES.get(number)
        label = f"hypercall:{name or f'unknown_{number}'}"
        self._charge(label, "hypercall", "devices" if name in _DEVICE_HYPERCALLS else "emulation")
        # the VMCALL retires: one guest instruction, one tick (its cycles are the hypercall's)
        h.counters[S.EV_INSTRUCTIONS] += 1
        h.counters[S.EV_OP_BASE + isa.OP_VMCALL] += 1
        hc[S.C_TICKS] += 1
        pc = int(hc[S.C_PC])
        hc[S.C_PC] = (pc + 4) & 0xFFFFFFFF
        r1, r2, r3 = (int(regs[k]) for k in (1, 2, 3))
        result = 0
        if name is None:
            result = ENOSYS
        elif name == "console_write":
            self.console.append(r1 & 0xFF)
        elif name == "set_trap_table":
            try:
                self.trap_table = [self._read_va(r1 + 4 * v) for v in range(256)]
                # the host never delivers through it (every vector is intercepted), but a
                # non-strict RDTVB in user mode reads it, and should see the guest's table
                self.tvb = hc[S.C_TVB] = r1
            except _Refused:
                result = EFAULT
        elif name == "stack_switch":
            self.ksp = r1
        elif name == "mmu_update":
            result = self._mmu_update(r1, r2)
        elif name == "new_baseptr":
            result = self._new_baseptr(r1)
        elif name == "invlpg":
            self._invlpg(r1)
        elif name == "tlb_flush":
            self._flush_tlb()
        elif name in ("iret", "sysret"):
            self._return_from_trap(name == "sysret")
            return
        elif name == "set_timer":
            self.timer_period = r1
            self.timer_deadline = int(hc[S.C_TICKS]) + r1 if r1 else S.NEVER
        elif name == "get_ticks":
            result = int(hc[S.C_TICKS]) & 0xFFFFFFFF
        elif name == "block_io":
            result = self._block_io(label, r1, r2, r3)
        elif name == "block":
            self._block()
        elif name == "event_check":
            pass                             # delivered on the way back to the guest
        elif name == "enable_paging":
            self.paging_enabled = True
        elif name == "shutdown":
            self.exit_status = r1
            raise Stop(S.STOP_HALT, note=f"the guest shut down (shutdown hypercall, status "
                                     f"{r1 - (1 << 32) if r1 & 0x80000000 else r1})")
        regs[0] = result & 0xFFFFFFFF

    def _mmu_update(self, va: int, n: int) -> int:
        if not 0 <= n <= MAX_MMU_BATCH:
            return EINVAL
        done = 0
        try:
            for k in range(n):
                try:
                    ptr = self._read_va(va + 8 * k)
                    value = self._read_va(va + 8 * k + 4)
                except _Refused as why:
                    self._refuse("paravirt:refused_update", f"mmu_update refused: {why}")
                    return EFAULT
                self.count("paravirt:pte_updates", category="memory")
                self.count("hypercall:mmu_update", n=0, cycles=self.cost["hypercall_pte"],
                           category="memory")
                self._update(ptr, value)
                done += 1
        except _Refused as why:
            self._refuse("paravirt:refused_update", f"mmu_update refused: {why}")
            return EPERM
        return done

    def _new_baseptr(self, value: int) -> int:
        root = self._frame(value & FRAME)
        try:
            if root < 0:
                raise _Refused(f"root 0x{value & FRAME:08x} is not in the guest's memory")
            self._acquire(root, DIRECTORY)
        except _Refused as why:
            self._refuse("paravirt:refused_baseptr", f"new_baseptr refused: {why}")
            return EPERM
        hc = self.host.ctrl
        first = (int(hc[S.C_PTBR]) & FRAME) == self.boot_root
        hc[S.C_PTBR] = value & 0xFFFFFFFF
        if first or not value & isa.ASID_MASK:   # ASID 0 is untagged: flush, as WRCR ptbr does
            self._flush_tlb()
        return 0

    def _block_io(self, label: str, command: int, sector: int, maddr: int) -> int:
        h = self.host
        self.blk = [sector, (maddr - self.moff) & 0xFFFFFFFF, S.BLK_OK]
        first, last = self._frame(maddr & ~3), self._frame((maddr & ~3) + 511)
        if command not in (isa.BLK_READ, isa.BLK_WRITE):
            status = S.BLK_BAD_COMMAND
        elif not 0 <= sector < len(self.disk) // S.BLK_SECTOR_WORDS or first < 0 or last < 0:
            status = S.BLK_BAD_ADDRESS
        elif command == isa.BLK_READ and (self.ptype[first] != NONE or
                                          self.ptype[last] != NONE):
            status = S.BLK_BAD_ADDRESS         # DMA into a page table would bypass validation
        else:
            word = (maddr & ~3) >> 2
            disk = self.disk[sector * S.BLK_SECTOR_WORDS:(sector + 1) * S.BLK_SECTOR_WORDS]
            if command == isa.BLK_READ:
                self.mem[word:word + S.BLK_SECTOR_WORDS] = disk
                h.counters[S.EV_BLK_READS] += 1
            else:
                disk[:] = self.mem[word:word + S.BLK_SECTOR_WORDS]
                h.counters[S.EV_BLK_WRITES] += 1
            self.count(label, n=0, cycles=self.cost["blk_sector"], category="devices")
            status = S.BLK_OK
        self.blk[2] = status
        return status

    def _block(self) -> None:
        """Sleep until the next event: skip the idle ticks to the virtual timer's deadline."""
        if self._shared(SI_PENDING):
            return
        hc = self.host.ctrl
        if self.timer_deadline == S.NEVER:
            raise Stop(S.STOP_HALT, note="the guest blocked with no timer armed: nothing can ever "
                                     "wake it")
        ticks = int(hc[S.C_TICKS])
        if self.timer_deadline > ticks:
            idle = self.timer_deadline - ticks
            hc[S.C_TICKS] = self.timer_deadline
            self.host.counters[S.EV_IDLE_TICKS] += idle
            hc[S.C_CYCLES] += idle * self.cost["idle_tick"]

    def _return_from_trap(self, sysret: bool) -> None:
        """``iret``/``sysret``: pop the five-word frame at sp (as IRET/SYSRET would)."""
        h = self.host
        sp = int(h.regs[isa.SP])
        try:
            _, pc, cpl, flags, old_sp = (self._read_va(sp + 4 * k) for k in range(5))
        except _Refused as why:
            raise Stop(S.STOP_TRIPLE_FAULT, isa.VEC_GP,
                       note=f"iret/sysret with an unreadable frame at sp 0x{sp:08x}: "
                            f"{why}") from None
        if sysret:
            cpl, flags = 3, isa.FLAG_IF
            h.counters[S.EV_SYSRET] += 1
        else:
            h.counters[S.EV_IRET] += 1
        h.ctrl[S.C_PC] = pc
        h.ctrl[S.C_CPL] = 3 if cpl & 3 == 3 else 1     # never ring 0: Xen forces the guest's RPL
        h.regs[isa.SP] = old_sp
        self._shared(SI_MASK, 0 if flags & isa.FLAG_IF else 1)

    # ==== reflecting traps into the guest =========================================================
    def _deliver(self, vec: int, err: int, rp: int, transition: bool = True) -> None:
        """Bounce a trap to the guest's handler through its trap table (see the docstring):
        charged as ``reflect:<vector>``, delivered by the rules of
        :class:`~kernel_sim.monitors.vcpu.TrapDelivery` (:class:`_ReflectToRing1`)."""
        self._charge(_REFLECT[vec], "reflect", "emulation", transition)
        self.traps.deliver(vec, err, rp)

    def _deliver_pending(self) -> None:
        """Before returning to the guest: an unmasked pending event is delivered now."""
        if self._shared(SI_PENDING) and not self._shared(SI_MASK):
            self._shared(SI_PENDING, 0)
            self._deliver(isa.VEC_TIMER, 0, int(self.host.ctrl[S.C_PC]), transition=False)

    def _timer_due(self) -> bool:
        ticks = int(self.host.ctrl[S.C_TICKS])
        if ticks < self.timer_deadline:
            return False
        if self.timer_period:
            periods = (ticks - self.timer_deadline) // self.timer_period + 1
            self.timer_deadline += periods * self.timer_period
        else:
            self.timer_deadline = S.NEVER
        return True

    # ==== the run loop ============================================================================
    def _run(self, budget: int) -> None:
        from ..cpu import run_native

        h = self.host
        hc, cnt = h.ctrl, h.counters
        args = (h.regs, hc, h.mem, h.tlb, h.costs, cnt, h.console_buffer, h.trace, h.intercept)
        start = int(cnt[S.EV_INSTRUCTIONS])
        try:
            while True:
                if self._timer_due():                 # e.g. after `block` skipped idle ticks
                    self._shared(SI_PENDING, 1)
                self._deliver_pending()
                retired = int(cnt[S.EV_INSTRUCTIONS]) - start
                if retired >= budget:
                    self.stop = S.STOP_NAMES[S.STOP_BUDGET]
                    return
                ticks = int(hc[S.C_TICKS])
                hc[S.C_TIMER_DEADLINE] = min(self.timer_deadline, ticks + self.time_slice)
                hc[S.C_TIMER_PERIOD] = self.time_slice
                hc[S.C_TIMER_PENDING] = 0
                reason = run_native(*args, budget - retired)
                if reason == S.STOP_TRAP_EXIT:
                    self._exit(int(hc[S.C_STOP_VECTOR]), int(hc[S.C_STOP_ERROR]))
                elif reason in (S.STOP_BUDGET, S.STOP_UNTIL):
                    # STOP_UNTIL: a breakpoint on the host (host.ctrl[C_UNTIL] = a guest pc, as
                    # Machine.run(until=...)), set by a debugger or a test after _boot()
                    self.stop = S.STOP_NAMES[reason]
                    return
                else:
                    raise MonitorError(f"unexpected host stop {S.STOP_NAMES.get(reason, reason)}")
        except Stop as s:
            self.stop = S.STOP_NAMES[s.reason]
            self.stop_vector, self.stop_error = s.vector, s.error
            self.stop_notes.append(s.note)

    def _exit(self, vec: int, err: int) -> None:
        h = self.host
        hc = h.ctrl
        pc, cpl = int(hc[S.C_PC]), int(hc[S.C_CPL])
        if vec == isa.VEC_TIMER:
            if self._timer_due():
                if self._shared(SI_MASK):
                    self._shared(SI_PENDING, 1)
                    self._charge("timer:pending", None, "transitions")
                else:
                    self._shared(SI_PENDING, 0)
                    self._deliver(vec, 0, pc)
            else:
                self._charge("monitor:preempt", None, "transitions")
            return
        word = self._fetch(pc) if vec in (isa.VEC_UD, isa.VEC_GP) else -1
        op = word >> 24 if word >= 0 else -1
        if vec == isa.VEC_UD and cpl == 1 and op == isa.OP_VMCALL:
            self._hypercall(word & 0xFFFF)
            return
        if vec == isa.VEC_GP and cpl == 1 and (op in PRIVILEGED_OPS or op in SENSITIVE_OPS):
            mnemonic = isa.BY_OPCODE[op].mnemonic
            kind = "privileged" if op in PRIVILEGED_OPS else "sensitive"
            self._charge("paravirt:privileged_fault", None, "transitions")
            raise Stop(S.STOP_UNHANDLED_TRAP, vec, err, f"{kind} instruction {mnemonic} at "
                       f"0x{pc:08x}: a paravirtual kernel must use hypercalls")
        if vec == isa.VEC_PF:
            va = int(hc[S.C_FAULT_ADDR])
            self._shared(SI_CR2, va)
            if err & isa.PF_WRITE and err & isa.PF_PRESENT and cpl == 1:
                pa = self._walk(va, False)
                if pa >= 0 and self._frame(pa) >= 0 and self.ptype[self._frame(pa)] != NONE:
                    self.count("paravirt:pt_write_fault", category="emulation")
                    self.stop_notes.append(f"the guest kernel wrote its page table at "
                                           f"0x{va:08x} directly (pc 0x{pc:08x}): page tables "
                                           f"are read-only, updates go through mmu_update")
        self._deliver(vec, err, pc)

    # ==== results =================================================================================
    def _frame_to_gpa(self, maddr: int) -> int:
        g = maddr - self.moff
        return g if 0 <= g < self.size else -1

    def view(self) -> GuestView:
        h = self.host
        hc = h.ctrl
        v = np.zeros(S.NUM_CTRL, dtype=np.int64)
        v[S.C_PC], v[S.C_CPL] = hc[S.C_PC], hc[S.C_CPL]
        v[S.C_IF] = 0 if self._shared(SI_MASK) else 1
        v[S.C_PAGING] = int(self.paging_enabled)
        v[S.C_PTBR] = hc[S.C_PTBR]
        v[S.C_FAULT_ADDR] = self._shared(SI_CR2)
        v[S.C_TVB] = self.tvb
        v[S.C_KSP] = self.ksp if self.ksp is not None else 0
        v[S.C_TICKS] = hc[S.C_TICKS]
        v[S.C_TIMER_PERIOD], v[S.C_TIMER_DEADLINE] = self.timer_period, self.timer_deadline
        v[S.C_TIMER_PENDING] = self._shared(SI_PENDING)
        v[S.C_BLK_SECTOR], v[S.C_BLK_BUFFER], v[S.C_BLK_STATUS] = self.blk
        v[S.C_LEVELS], v[S.C_MEM_BYTES], v[S.C_STRICT] = 2, self.size, int(self.strict)
        v[S.C_DISK_SECTORS] = len(self.disk) // S.BLK_SECTOR_WORDS
        ram = h.mem[self.moff >> 2:(self.moff + self.size) >> 2]
        return GuestView(h.regs, v, ram, self.disk, bytes(self.console), 2,
                         frame_to_gpa=self._frame_to_gpa)

    def notes(self) -> list:
        out = [f"PARAVIRT kernel in ring 1, guest RAM at machine 0x{self.moff:x}; mmu_update "
               f"batch size {self.batch} (boot info word 7: build_guest(..., batch=N))"]
        out += self.stop_notes
        if self.refusals:
            out.append(f"{len(self.refusals)} refused request(s); first: {self.refusals[0]}")
        return out

    def guest_counters(self) -> np.ndarray:
        """The host CPU's counts (it runs the guest directly), except the traps: the guest
        sees only those the monitor reflected into it, not the host's exits."""
        counters = self.host.counters.copy()
        counters[S.EV_VECTOR_BASE:S.EV_VECTOR_BASE + 256] = self.traps.reflected
        counters[S.EV_TRAPS] = self.traps.reflected.sum()
        return counters

    def cpu_cycles(self) -> dict:
        return {"guest": int(self.host.ctrl[S.C_CYCLES])}


__all__ = ["Paravirt", "DEFAULT_TIME_SLICE", "HYPERCALLS"]
