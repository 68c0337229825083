"""``binary_translation``: run guest kernel code from a translation cache, user code directly.

VMware's original monitor (Bugnion et al., ACM TOCS 2012) could not rely on trap-and-emulate:
on x86 some sensitive instructions do not trap outside ring 0 (the toy ISA's non-strict
``PUSHF``, ``POPF``, ``GETCPL``, ``RDTVB``).  So it never ran guest *kernel* code as it was.  A
dynamic binary translator rewrote each block of kernel code, the first time it ran, into a
*translation cache* (:mod:`kernel_sim.monitors.translator`): innocuous instructions copied
unchanged, every sensitive or privileged one replaced by a **callout**, a call into the monitor.
Guest *user* code, which cannot tell, runs directly.  This module is that monitor.

The host set-up is trap_emulate's (:mod:`kernel_sim.monitors.trap_emulate`): the guest's RAM at
an offset in host memory, shadow page tables, every trap vector intercepted, a time slice.  What
changes is how virtual ring 0 runs:

==========================  ========================================================================
situation                   what the monitor does (event names in the exit table)
==========================  ========================================================================
the guest is to continue    look up the translation of guest pc X, keyed by (X, the guest-physical
in virtual ring 0 at X      page X is fetched from), translating the block on demand
                            (``bt:translate``); the host runs it in ring 1 at its TC address
``callout n`` in the TC     (opcode 0xF1 raises #UD on the host, which the monitor intercepts)
                            one of the callout kinds below, counted ``callout:<kind>``
emulate                     the instruction is emulated against the virtual CPU -- on any ISA,
                            strict or not (``callout:emulate:<mnemonic>``)
call / ret / jr             the guest's call, return or indirect jump, done against guest memory
                            and registers (the pushed return address is the *guest's*); the
                            target's translation is looked up
exit                        the block ended (or a branch's target had no translation yet): the
                            target is translated if needed and, for a branch stub, the branch is
                            *chained* to it (``bt:chain``) so it never exits again
invalid_opcode              the guest's #UD, reflected with the guest's pc
store                       an adaptively retranslated store: done by the monitor, shadow updated
a fault in translated code  as trap_emulate (hidden shadow fault: retry the same TC word; true
                            fault, #DE, timer: reflected with the *guest's* pc from the cache)
a write to a code page      pages holding translated code are read-only in every shadow; the
                            write is emulated (``bt:code_write``) and, if it hit a word some
                            translation was made from, the page's translations are dropped
                            (``bt:tc_invalidate``); data that merely shares the page with code
                            costs the fault but invalidates nothing
a store that keeps hitting  after ``adaptive_after`` such faults (page-table or code-page writes)
a protected page            from one guest pc, its block is retranslated with that store as a
                            callout (``bt:adaptive_retranslation``): a callout instead of a trap
==========================  ========================================================================

Protecting the cache
--------------------
The cache lives in the monitor's host memory and is mapped at
:data:`~kernel_sim.monitors.translator.TC_VA` in every shadow address space for instruction
fetch only: supervisor, read-only, so user code cannot even fetch it.  Translated code runs in
ring 1 and its loads and stores use the guest's addresses, so a guest kernel that computed an
address inside the cache could read or overwrite translated code.  The host's data limit
(``ctrl[C_DATA_LIMIT] = TC_VA``, the toy version of the segment truncation VMware used) makes
every data access at or above ``TC_VA`` from rings 1..3 raise #GP, which the monitor reflects.
The guest OS of the course never uses those addresses (they are reserved for monitors).

User code
---------
User code runs as itself in ring 3, where the non-strict ISA's sensitive instructions do not
trap either -- but in ring 3 they do the same on the bare machine, provided they see the
*virtual* state: so while user code runs, the host's IF is the virtual IF and the host's vector
table base is the guest's (the host never delivers a trap itself: all are intercepted).  With
the virtual IF off the host timer cannot preempt, so such a run is cut to one time slice.

Chaining and entering
---------------------
Only a branch whose target lies in its own guest page is chained: the translation of another
page depends on the mapping at the time, which the monitor checks (by walking the guest's
tables, setting the accessed bits the bare machine's fetch would set) every time it enters
translated code.  A fall-through exit (end of page, ``MAX_BLOCK``) is never chained: patching it
into a jump would add an instruction the guest did not execute.

Time is exact
-------------
Every translated word that the host retires is one guest instruction, and every callout that
stands for a guest instruction retires it on the virtual CPU; exit callouts and stubs retire
nothing.  So the guest's tick counter -- its notion of time, which drives its timer -- is what
the bare machine gives, and a run with a budget stops at the same guest instruction.

Costs
-----
A callout is a call inside the monitor's address space, not a hardware trap: it charges
``callout`` (category ``transitions``), plus ``emulate`` for an emulated instruction and
``tc_lookup`` for every callout that must find a translation by guest pc (call, ret, jr, exit).
Translating charges ``translate`` per guest instruction, dropping a page's translations
``tc_invalidate``.  Real traps (shadow faults, timer, system calls from user mode, faults)
cost what they cost under trap_emulate.  Resolving the guest-physical page of a guest pc when
entering translated code is part of ``callout`` / ``tc_lookup`` (model assumption).
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from .. import isa
from ..state import (
    C_CPL,
    C_DATA_LIMIT,
    C_FAULT_ADDR,
    C_IF,
    C_PAGING,
    C_PC,
    C_PTBR,
    C_STOP_ERROR,
    C_STOP_VECTOR,
    C_TICKS,
    C_TIMER_DEADLINE,
    C_TVB,
    STOP_BUDGET,
    STOP_NAMES,
    STOP_TRAP_EXIT,
)
from .base import MonitorError, Needs, check_settings
from .shadow import PAGE, A, P, W, emulate_store
from .translator import (
    CO_CALL,
    CO_EMULATE,
    CO_EXIT,
    CO_JR,
    CO_RET,
    CO_STORE,
    CO_UD,
    TC_VA,
    TranslationCache,
    TranslationCacheFull,
)
from .trap_emulate import _REFLECT, TrapEmulate
from .vcpu import (
    ACC_FETCH,
    ACC_READ,
    MASK32,
    MNEMONIC,
    PRIVILEGED_OPS,
    SENSITIVE_OPS,
    SP,
    access_of,
)

#: largest translation cache (every branch inside it must reach with a 16-bit word offset)
MAX_TC_BYTES = 128 * 1024
_ENDS = {isa.OP_IRET, isa.OP_SYSRET, isa.OP_HLT, isa.OP_WRCR}
_CALLOUT_EMULATE = {op: "callout:emulate:" + MNEMONIC[op] for op in PRIVILEGED_OPS | SENSITIVE_OPS}


class _Watched:
    """The guest frames whose writes the virtual CPU must report: page tables and code pages."""

    __slots__ = ("tables", "code")

    def __init__(self, tables, code):
        self.tables, self.code = tables, code

    def __contains__(self, frame) -> bool:
        return frame in self.tables or frame in self.code


class BinaryTranslation(TrapEmulate):
    """Binary translation of guest kernel code, direct execution of user code, shadow paging.

    Extra settings (besides trap_emulate's ``time_slice``, ``max_roots``, ``unshadow_after``,
    ``guard_bytes``): ``tc_bytes`` (size of the translation cache, whole pages, at most
    128 KiB) and ``adaptive_after`` (write-protection faults -- page tables, code pages --
    from one guest store after which it is retranslated as a callout; 0: never).  Only
    2-level page tables are supported (the cache is mapped by one monitor-owned table).
    """

    name = "binary_translation"
    protected_write_event = "bt:code_write"
    needs = Needs(page_table_levels=(2,), why_levels="the translation cache is mapped by one "
                                                     "monitor-owned 2-level page table")
    description = ("guest kernel code translated into a translation cache (sensitive "
                   "instructions become callouts); user code runs directly; shadow page tables")
    #: translated kernel code calls the monitor (a callout) where trap-and-emulate traps; a
    #: write to a protected page (a page table, translated code) and a hidden page fault still
    #: trap; translating, chaining and the monitor's own time slice are its own work
    event_kinds = {"callout:": "callout", "shadow:hidden_fault": "trap",
                   "shadow:pt_write": "trap", "bt:code_write": "trap", "shadow:true_fault": None,
                   "reflect:": None, "shadow:": None, "bt:": None, "monitor:": None}

    def __init__(self, image, *, tc_bytes: int = MAX_TC_BYTES, adaptive_after: int = 3,
                 **settings):
        super().__init__(image, **settings)
        check_settings(("tc_bytes", tc_bytes, PAGE, MAX_TC_BYTES),
                       ("adaptive_after", adaptive_after, 0, 10 ** 9))
        if tc_bytes % PAGE:
            raise ValueError(f"tc_bytes must be a multiple of {PAGE}")
        self.tc_bytes = int(tc_bytes)
        self.adaptive_after = int(adaptive_after)

    # ---- boot --------------------------------------------------------------------------------
    def _boot(self) -> None:
        super()._boot()
        h = self.host
        # the cache and the one page table that maps it: the top of the allocator's range
        self.tc_table = self.monitor_tvb - PAGE
        self.tc_base = self.tc_table - self.tc_bytes
        reserved = set(range(self.tc_base, self.monitor_tvb, PAGE))
        if reserved & self.allocator.ever_used:
            raise MonitorError("the translation cache overlaps the shadow tables")
        self.allocator.free_list = [f for f in self.allocator.free_list if f not in reserved]
        self.tc = TranslationCache(h.mem, self.tc_base, self.tc_bytes)
        t = self.tc_table >> 2
        h.mem[t:t + 1024] = 0
        for k in range(self.tc_bytes // PAGE):      # supervisor, read-only (fetch only)
            h.mem[t + ((TC_VA >> 12) & 0x3FF) + k] = (self.tc_base + k * PAGE) | P | A
        self.pager.pin_root_entry(TC_VA >> 22, self.tc_table | P | W | A)
        h.ctrl[C_DATA_LIMIT] = TC_VA               # rings 1..3 cannot load or store there
        v = self.vcpu
        v.watched = _Watched(self.pager.pt_count, self.pager.protected)
        v.on_watched_write = self._watched_write
        self.tc_gen = 0                  # grows at every flush: older TC addresses mean nothing
        self.resume = None               # (gen, TC address) to re-enter at, if still valid
        self.pending_chain = None        # (gen, exit callout) to chain once its target is known
        self.pt_faults: Counter = Counter()      # guest pc -> page-table-write faults (ring 0)
        self.store_callouts: set = set()         # guest pcs retranslated as store callouts
        self.watched_hit = False                 # the last emulated store hit a watched frame

    # ---- the translation cache ---------------------------------------------------------------
    def _flush(self) -> None:
        self.tc.flush()
        self.tc_gen += 1
        self.count("bt:tc_flush", "tc_invalidate")
        for frame in list(self.pager.protected):
            self.pager.unprotect(frame)

    def _translate(self, gpc: int, page: int, charge: bool = True):
        ram = self.vcpu.ram
        base = page - (gpc & ~0xFFF)

        def fetch(va: int) -> int:
            return int(ram[(base + va) >> 2])

        self._room_check()
        tc = self.tc
        for attempt in (0, 1):
            before = tc.stats["translated_insns"]
            try:
                block = tc.translate(gpc, page, fetch, frozenset(self.store_callouts))
                break
            except TranslationCacheFull as full:
                if attempt:
                    raise MonitorError(f"one block does not fit in a {self.tc_bytes}-byte "
                                       f"translation cache") from full
                self._flush()
        if charge:
            n = tc.stats["translated_insns"] - before
            self.count("bt:translate", cycles=n * self.cost["translate"])
        self.pager.protect(page >> 12)
        return block

    def _room_check(self) -> None:
        """Before translating: keep room for the exit stubs a later invalidation may need (a
        nearly full cache is flushed now, while no translated code is running)."""
        tc = self.tc
        if tc.next + 64 * 4 > TC_VA + tc.size or len(tc.callouts) > 0xFF00:
            self._flush()

    def _kernel_block(self, gpc: int):
        """The translation of guest pc ``gpc`` in virtual ring 0 (None: a fetch fault was
        delivered).  The walk sets the accessed bits the bare machine's fetch would set."""
        v = self.vcpu
        gpa = v.translate(gpc, ACC_FETCH, 0)
        if gpa < 0:
            vec, err = v.raise_fault(gpa, gpc)
            self._charge("shadow:true_fault", "shadow_fill", "memory", transition=False)
            self.count("shadow:true_fault", n=0, cycles=self.cost["reflect"],
                       category="emulation")
            v.deliver(vec, err, gpc)
            return None
        page = gpa & ~0xFFF
        block = self.tc.lookup((gpc, page))
        if block is None:
            block = self._translate(gpc, page)
        return block

    def _guest_pc(self, tc_pc: int) -> int:
        """The guest pc the host is at when it stopped at TC address ``tc_pc``."""
        word = self.tc.word_at(tc_pc)
        if word >> 24 == isa.OP_CALLOUT:
            co = self.tc.callouts[word & 0xFFFF]
            if co.kind == CO_EXIT:
                return co.target           # an exit or stub: the branch (if any) has retired
        return self.tc.guest_pc(tc_pc)

    def _watched_write(self, gpa: int) -> None:
        self.watched_hit = True
        frame = gpa >> 12
        if frame in self.pager.pt_count:
            self.pager.guest_entry_written(gpa)
        if frame in self.pager.protected:
            tc = self.tc
            blocks = [b for b in tc.by_page.get(frame << 12, ()) if b.valid]
            off = gpa & 0xFFC
            if not any(off == (g & 0xFFF) for b in blocks for g in b.guest_pcs):
                return                     # data next to code: no translation read this word
            stubs = sum(len(b.incoming) for b in blocks)
            if tc.next + 4 * (stubs + 64) > TC_VA + tc.size or \
                    len(tc.callouts) + stubs > 0xFF00:
                self._flush()              # no room for the unchaining stubs: start afresh
            else:
                tc.invalidate_page(frame << 12)
                self.pager.unprotect(frame)
            self.count("bt:tc_invalidate", "tc_invalidate")

    # ---- the run loop ------------------------------------------------------------------------
    def _enter_guest(self, allowed: int) -> None:
        """Kernel code (virtual ring 0) runs from the translation cache in host ring 1; user
        code runs as itself.  Then the trap or callout that stopped the host is handled."""
        hc, vc = self.host.ctrl, self.vcpu.ctrl
        hget, vget = hc.item, vc.item
        tc = self.tc
        kernel = vget(C_CPL) == 0
        limit = allowed
        if kernel:
            pc = self._resume_pc()
            if pc < 0:
                return                  # the fetch faulted: delivered, look again
            hc[C_IF] = 1
        else:
            pc = vget(C_PC)
            self.resume = self.pending_chain = None
            # user code runs as itself: what its PUSHF, POPF and RDTVB see must be the
            # virtual state.  The host never delivers a trap (all are intercepted), so
            # its TVB can be the guest's; with the virtual IF off the host timer cannot
            # preempt, so the run is cut to one time slice instead.
            hc[C_IF] = vget(C_IF)
            hc[C_TVB] = vget(C_TVB)
            if not hc[C_IF]:
                limit = min(allowed, self.time_slice)
        reason = self._enter_host(pc, 1 if kernel else vget(C_CPL), limit)
        hpc = hget(C_PC)
        if kernel:
            if not tc.contains(hpc):
                raise MonitorError(f"translated code left the cache at 0x{hpc:08x}")
            vc[C_PC] = self._guest_pc(hpc)
        else:
            vc[C_PC] = hpc
        if reason == STOP_TRAP_EXIT:
            self.exits += 1
            vec, err = hget(C_STOP_VECTOR), hget(C_STOP_ERROR)
            if kernel:
                self._kernel_exit(vec, err, hpc)
            else:
                self._exit(vec, err)
        elif reason != STOP_BUDGET:
            raise MonitorError(f"unexpected host stop {STOP_NAMES.get(reason, reason)}")
        elif kernel:
            self.resume = (self.tc_gen, hpc)
        elif limit < allowed:
            self._charge("monitor:preempt", None, "transitions")

    def _resume_pc(self) -> int:
        """Where the host enters translated code for the virtual pc (-1: a fetch fault)."""
        tc = self.tc
        gpc = int(self.vcpu.ctrl[C_PC])
        hint, self.resume = self.resume, None
        if hint is not None and hint[0] == self.tc_gen:
            owner = tc.word_owner.get(hint[1])
            if owner is not None and owner.valid and self._guest_pc(hint[1]) == gpc:
                self.pending_chain = None
                return hint[1]
        block = self._kernel_block(gpc)
        if block is None:
            self.pending_chain = None
            return -1
        chain, self.pending_chain = self.pending_chain, None
        if chain is not None and chain[0] == self.tc_gen and chain[1].branch_at >= 0:
            co = chain[1]
            owner = tc.word_owner.get(co.branch_at)
            if owner is not None and owner.valid and owner.guest_page == block.guest_page \
                    and (co.guest_pc ^ co.target) & ~0xFFF == 0 and tc.chain(co, block):
                self.count("bt:chain")
        return block.tc_start

    # ---- exits from translated code ----------------------------------------------------------
    def _kernel_exit(self, vec: int, err: int, tc_pc: int) -> None:
        """A host trap while translated code (virtual ring 0) ran at TC address ``tc_pc``."""
        v = self.vcpu
        if vec == isa.VEC_UD:
            word = self.tc.word_at(tc_pc)
            if word >> 24 != isa.OP_CALLOUT or (word & 0xFFFF) >= len(self.tc.callouts):
                raise MonitorError(f"#UD at 0x{tc_pc:08x} on 0x{word:08x}: not a callout")
            self._callout(self.tc.callouts[word & 0xFFFF], tc_pc)
        elif vec == isa.VEC_PF:
            self._tc_page_fault(int(self.host.ctrl[C_FAULT_ADDR]), err, tc_pc)
        elif vec == isa.VEC_GP:
            # privileged instructions never run as themselves in the cache: this is the data
            # limit (a load or store at or above TC_VA); the bare machine has no such limit
            self._charge(_REFLECT[vec], "reflect", "emulation")
            v.deliver(isa.VEC_GP, 0, int(v.ctrl[C_PC]))
        else:
            if vec == isa.VEC_TIMER and v.ctrl[C_TICKS] < v.ctrl[C_TIMER_DEADLINE]:
                self.resume = (self.tc_gen, tc_pc)       # monitor:preempt: same TC word
            elif vec == isa.VEC_TIMER and not v.ctrl[C_IF]:
                self.resume = (self.tc_gen, tc_pc)       # timer:pending
            self._exit(vec, err)                         # timer, #DE, syscall: trap_emulate's
        if self.pager.events:
            self._drain_pager_events()

    def _exit(self, vec: int, err: int) -> None:
        """A host trap in user mode (direct execution): trap_emulate's handling, except that a
        data access at or above ``TC_VA`` (the data limit) is the guest's #GP."""
        if vec == isa.VEC_GP:
            v = self.vcpu
            pc = int(v.ctrl[C_PC])
            op = self._fetch(pc) >> 24
            if op not in PRIVILEGED_OPS and not (self.strict and op in SENSITIVE_OPS):
                self._charge(_REFLECT[vec], "reflect", "emulation")
                v.deliver(isa.VEC_GP, 0, pc)
                return
        super()._exit(vec, err)

    def _page_fault(self, va: int, err: int, pc: int) -> None:
        """A host page fault in user mode: trap_emulate's handling, plus the cache's window
        and writes to pages holding translated code."""
        if (va >> 22) == (TC_VA >> 22):
            self._reserved_fault(va, err)
        else:
            super()._page_fault(va, err, pc)

    def _reserved_fault(self, va: int, err: int) -> None:
        """User code touched the cache's window (only a fetch can get that far): the host
        refused because the mapping is supervisor-only; the guest sees its own fault."""
        v = self.vcpu
        pc = int(v.ctrl[C_PC])
        acc = access_of(err)
        res = v.walk(va, acc, 3)[0]
        if res >= 0:
            raise MonitorError(f"the guest maps 0x{va:08x}, in the window the monitor reserves "
                               f"for its translation cache")
        vec, code = v.raise_fault(res, va)
        self._charge("shadow:true_fault", "shadow_fill", "memory")
        self.count("shadow:true_fault", n=0, cycles=self.cost["reflect"], category="emulation")
        v.deliver(vec, code, pc)

    def _tc_page_fault(self, va: int, err: int, tc_pc: int) -> None:
        if err & isa.PF_FETCH:
            raise MonitorError(f"fetching translated code at 0x{va:08x} faulted: the cache's "
                               f"mapping is missing from the active shadow")
        v = self.vcpu
        pc = int(v.ctrl[C_PC])
        acc = access_of(err)
        refs = v.walk_refs
        kind, gpa, ferr = self.pager.page_fault(va, acc, 0)
        refs = v.walk_refs - refs
        if kind == "hidden_fault":
            self._charge("shadow:hidden_fault", "shadow_fill", "memory", walk_refs=refs)
            self.resume = (self.tc_gen, tc_pc)
        elif kind in ("pt_write", "protected_write"):
            name = "shadow:pt_write" if kind == "pt_write" else "bt:code_write"
            self._charge(name, "shadow_pt_write", "memory", walk_refs=refs)
            word = self.tc.word_at(tc_pc)
            gen = self.tc_gen
            fault = emulate_store(v, word, known_va=va, known_gpa=gpa)
            if fault is not None:
                v.deliver(fault[0], fault[1], pc)
                return
            self.resume = (gen, tc_pc + 4)
            if self.adaptive_after and word >> 24 == isa.OP_ST:
                self.pt_faults[pc] += 1
                if self.pt_faults[pc] >= self.adaptive_after and pc not in self.store_callouts:
                    self._retranslate_store(pc, tc_pc)
        else:
            self._charge("shadow:true_fault", "shadow_fill", "memory", walk_refs=refs)
            self.count("shadow:true_fault", n=0, cycles=self.cost["reflect"],
                       category="emulation")
            v.deliver(gpa, ferr, pc)           # (vector, error) of the guest's own fault

    def _retranslate_store(self, gpc: int, tc_pc: int) -> None:
        """Adaptive retranslation: the block holding the store is translated again with the
        store as a callout, so it stops trapping on the write-protected page table."""
        self.store_callouts.add(gpc)
        block = self.tc.word_owner.get(tc_pc)
        self.count("bt:adaptive_retranslation")
        if block is None or not block.valid:
            return
        stubs = len(block.incoming)
        tc = self.tc
        if tc.next + 4 * (stubs + 2 * 32 + 64) > TC_VA + tc.size:
            self._flush()                       # translated again on demand
            return
        self._translate(block.guest_pc, block.guest_page)

    # ---- callouts ----------------------------------------------------------------------------
    def _callout_cost(self, reason: str, extra: str | None = None,
                      category: str = "emulation") -> None:
        self.count(reason, cycles=self.cost["callout"], category="transitions")
        if extra is not None:
            self.count(reason, n=0, cycles=self.cost[extra], category=category)

    def _callout(self, co, tc_pc: int) -> None:
        v = self.vcpu
        vc = v.ctrl
        kind = co.kind
        if kind == CO_EXIT:
            self._callout_cost("callout:exit", "tc_lookup")
            vc[C_PC] = co.target
            if co.branch_at >= 0:
                self.pending_chain = (self.tc_gen, co)
            return
        pc = co.guest_pc
        vc[C_PC] = pc
        word = co.word
        op = word >> 24
        if kind == CO_EMULATE:
            name = _CALLOUT_EMULATE[op]
            self._callout_cost(name, "emulate")
            gen = self.tc_gen
            fault = self.emulate_charged(v, name, word)
            if fault is not None:
                v.deliver(fault[0], fault[1], pc)
            elif op not in _ENDS and vc[C_CPL] == 0 and vc[C_PC] == (pc + 4) & MASK32:
                self.resume = (gen, tc_pc + 4)
        elif kind in (CO_CALL, CO_RET, CO_JR):
            self._callout_cost("callout:" + kind, "tc_lookup")
            if kind == CO_CALL:
                fault = emulate_store(v, word)          # pushes the guest's return address
            elif kind == CO_RET:
                sp = int(v.regs[SP])
                gpa = v.translate(sp, ACC_READ, 0)
                if gpa < 0:
                    fault = v.raise_fault(gpa, sp)
                else:
                    target = v.read_phys(gpa)
                    v.regs[SP] = (sp + 4) & MASK32
                    v.retire(op, target)
                    fault = None
            else:
                v.retire(op, int(v.regs[(word >> 20) & 15]))
                fault = None
            if fault is not None:
                v.deliver(fault[0], fault[1], pc)
        elif kind == CO_UD:
            self._callout_cost("callout:" + kind, "reflect")
            v.deliver(isa.VEC_UD, 0, pc)
        elif kind == CO_STORE:
            refs = v.walk_refs
            gen = self.tc_gen
            self.watched_hit = False
            fault = emulate_store(v, word)
            # the shadow update is paid only when the store did hit a protected page
            self._callout_cost("callout:store", "shadow_pt_write" if self.watched_hit else None,
                               "memory")
            self.count("callout:store", n=0, cycles=(v.walk_refs - refs) * self.cost["walk_ref"],
                       category="memory")
            if fault is not None:
                v.deliver(fault[0], fault[1], pc)
            else:
                self.resume = (gen, tc_pc + 4)
        else:
            raise MonitorError(f"unknown callout kind {kind!r}")

    # ---- for notebooks -----------------------------------------------------------------------
    def show_block(self, guest_pc: int):
        """Rows ``(guest instruction, its translation)`` of the block at ``guest_pc`` (in virtual
        ring 0's current address space), translating it if needed (not charged)."""
        if isinstance(guest_pc, bool) or not isinstance(guest_pc, (int, np.integer)) \
                or not 0 <= guest_pc <= MASK32 or guest_pc % 4:
            raise ValueError(f"guest_pc must be a word-aligned 32-bit address, got {guest_pc!r}")
        if not hasattr(self, "tc"):
            self._boot()
        gpa = self._fetch_gpa(int(guest_pc))
        if gpa < 0:
            raise ValueError(f"0x{guest_pc:08x} is not mapped for the guest kernel")
        page = gpa & ~0xFFF
        block = self.tc.lookup((int(guest_pc), page))
        if block is None:
            block = self._translate(int(guest_pc), page, charge=False)
        return self.tc.show(block)

    def _fetch_gpa(self, va: int) -> int:
        """Guest-physical address of a ring-0 fetch at ``va`` (-1: none), read without side
        effects (no accessed bits set: showing a block must not change the guest)."""
        v = self.vcpu
        if not v.ctrl[C_PAGING] & 1:
            return va if va < v.ram_size else -1
        table = int(v.ctrl[C_PTBR]) & isa.PTE_FRAME_MASK
        for k in range(self.levels - 1, -1, -1):
            addr = table + 4 * ((va >> (12 + 10 * k)) & 0x3FF)
            if addr >= v.ram_size:
                return -1
            pte = int(v.ram[addr >> 2])
            if not pte & P:
                return -1
            table = pte & isa.PTE_FRAME_MASK
        gpa = table | (va & 0xFFF)
        return gpa if gpa < v.ram_size else -1

    def translation_blocks(self):
        """``(guest pc, TC address, guest instructions)`` of every valid translated block."""
        if not hasattr(self, "tc"):
            return []
        out = []
        tc = self.tc
        for block in tc.blocks.values():
            if not block.valid:
                continue
            n = 0
            for addr in range(block.tc_start, block.tc_end, 4):
                word = tc.word_at(addr)
                if word >> 24 == isa.OP_CALLOUT and tc.callouts[word & 0xFFFF].kind == CO_EXIT:
                    continue
                n += 1
            out.append((block.guest_pc, block.tc_start, n))
        return sorted(out, key=lambda row: row[1])

    # ---- results -----------------------------------------------------------------------------
    def notes(self) -> list[str]:
        """Nothing escapes the monitor: guest kernel code never runs as itself, and sensitive
        instructions in user code run in ring 3 exactly as on the bare machine."""
        return []


__all__ = ["BinaryTranslation", "MAX_TC_BYTES"]
