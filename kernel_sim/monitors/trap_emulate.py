"""``trap_emulate``: run the guest kernel deprivileged; every sensitive act traps to the monitor.

The classic recipe (Popek & Goldberg 1974; IBM VM/370) on the toy machine:

* **Ring compression.**  The guest kernel (virtual ring 0) runs in host ring 1, user code in
  ring 3.  Every instruction runs directly on the host CPU until one needs the monitor.
* **Every trap comes to the monitor.**  The host intercepts all 256 vectors, so any trap stops
  the host CPU and the monitor decides what it means:

  ========================  ======================================================================
  host trap                 what the monitor does (event names in the exit table)
  ========================  ======================================================================
  #GP at virtual ring 0     a privileged instruction (or, strict ISA, a sensitive one): emulate it
                            against the virtual CPU (``emulate:<mnemonic>``)
  #GP at virtual ring 1..3  the guest's own #GP: reflect it (``reflect:general_protection``)
  #PF                       shadow paging (:mod:`kernel_sim.monitors.shadow`): fill the shadow
                            (``shadow:hidden_fault``), reflect the guest's own page fault or bus
                            error (``shadow:true_fault``), or emulate a store to a guest page
                            table (``shadow:pt_write``)
  timer                     the virtual timer fired: inject it (``reflect:timer_interrupt``) or,
                            while the virtual IF is 0, keep it pending (``timer:pending``); or
                            the monitor's own time slice ran out (``monitor:preempt``)
  anything else             reflect it into the guest (``reflect:syscall``, ``reflect:...``)
  ========================  ======================================================================

  A pending interrupt injected later (right after an emulated STI, POPF, IRET or SYSRET) is
  counted as ``reflect:timer_interrupt`` without a transition of its own; a WRCR of the PTBR
  also counts ``shadow:root_hit`` or ``shadow:root_new``.

* **The interrupt flag is virtual.**  The host IF stays 1 while the guest runs; the guest's CLI
  and STI only change the virtual IF.  A pending virtual interrupt is injected at the first
  instruction boundary where the virtual IF is 1 -- exactly where the bare machine would take it.
  The host timer is programmed from the virtual timer, but never further ahead than the monitor's
  time slice, so a guest that disables interrupts and spins cannot keep the monitor out.

Why it fails on a non-strict ISA
--------------------------------
``PUSHF``, ``POPF``, ``GETCPL`` and ``RDTVB`` are sensitive but not privileged: in ring 1 they
run without trapping and see the *host's* state.  POPF cannot restore the virtual IF (the CPU
silently ignores it outside ring 0), GETCPL reveals ring 1, RDTVB the monitor's vector table.
The monitor never gets a chance to fix them up -- Popek and Goldberg's condition is violated.
The result's ``notes`` say when that happened.  With ``strict=True`` they trap and are emulated.

Costs
-----
Every exit charges ``monitor_entry`` + ``monitor_return`` (category ``transitions``) plus the
handler (``emulate`` / ``reflect`` in ``emulation``; ``shadow_*`` and ``walk_ref`` per guest
entry read in ``memory``; ``device_io`` and the disk's ``blk_sector`` in ``devices``).  The host
CPU's own cycles -- the guest's instructions, shadow TLB misses and walks -- are ``guest``.
"""
from __future__ import annotations

import numpy as np

from .. import isa
from .. import state as S
from .base import MONITOR_BYTES, GuestView, Monitor, MonitorError, Needs, check_settings
from .shadow import FrameAllocator, ShadowPager, emulate_store
from .vcpu import ACC_FETCH, MNEMONIC, PRIVILEGED_OPS, SENSITIVE_OPS, Stop, VirtualCPU, access_of

#: host ticks the guest may run before the monitor takes the CPU back (when the virtual timer is
#: off or further away); an assumption of the model, like a hypervisor's scheduling quantum
DEFAULT_TIME_SLICE = 50_000
#: the monitor's own trap-vector table (what a non-strict RDTVB leaks): the last page of the
#: monitor's region -- here in the default placement; ``monitor.monitor_tvb`` in any placement
MONITOR_TVB = MONITOR_BYTES - isa.PAGE_SIZE
_REFLECT = {v: "reflect:" + isa.VECTOR_KEYS.get(v, f"vector_{v}") for v in range(256)}
_EMULATE = {op: "emulate:" + MNEMONIC[op] for op in PRIVILEGED_OPS | SENSITIVE_OPS}
#: cost names of the shadow events that happen inside another exit (no transition of their own);
#: dropping everything or unshadowing a page is charged like building a root / filling an entry
#: (model assumptions)
_PAGER_COSTS = {"shadow:root_hit": "shadow_root_hit", "shadow:root_new": "shadow_root_new",
                "shadow:flush_all": "shadow_root_new", "shadow:unshadow": "shadow_fill"}
_SENSITIVE_NAMES = ", ".join(MNEMONIC[op].upper() for op in sorted(SENSITIVE_OPS))


class TrapEmulate(Monitor):
    """Trap-and-emulate with shadow page tables (see the module docstring).

    Extra settings: ``time_slice`` (host ticks between forced returns to the monitor),
    ``max_roots`` (cached shadow address spaces), ``unshadow_after`` (emulated writes in a row
    after which a guest page table is no longer shadowed, 0: never; see
    :class:`~kernel_sim.monitors.shadow.ShadowPager`), ``guard_bytes`` (host memory after the
    guest's RAM that belongs to nobody; the containment tests watch it).
    """

    name = "trap_emulate"
    needs = Needs(strict_isa="choice")
    #: a privileged instruction and a page fault the guest never sees trap into the monitor;
    #: a reflected trap is the guest's own (counted as it sees it); the shadow pager's root
    #: switches happen inside an emulated ``wrcr``
    event_kinds = {"emulate:": "trap", "shadow:hidden_fault": "trap", "shadow:pt_write": "trap",
                   "shadow:protected_write": "trap", "shadow:true_fault": None,
                   "reflect:": None, "shadow:": None}
    #: the event a store to a page the shadow pager write-protects (not a page table) counts
    #: under; trap_emulate protects none, binary translation its code pages
    protected_write_event = "shadow:protected_write"
    description = ("guest kernel deprivileged to ring 1; privileged instructions trap and are "
                   "emulated; shadow page tables")

    def __init__(self, image, *, time_slice: int = DEFAULT_TIME_SLICE, max_roots: int = 32,
                 unshadow_after: int = 16, guard_bytes: int = isa.PAGE_SIZE, **settings):
        super().__init__(image, **settings)
        check_settings(("time_slice", time_slice, 1, 10 ** 9), ("max_roots", max_roots, 1, 4000),
                       ("unshadow_after", unshadow_after, 0, 10 ** 9),
                       ("guard_bytes", guard_bytes, 0, 1 << 24))
        if guard_bytes % isa.PAGE_SIZE:
            raise ValueError(f"guard_bytes must be a multiple of {isa.PAGE_SIZE}")
        self.time_slice = int(time_slice)
        self.max_roots = int(max_roots)
        self.unshadow_after = int(unshadow_after)
        self.guard_bytes = int(guard_bytes)

    # ---- boot --------------------------------------------------------------------------------
    def _boot(self) -> None:
        image = self.image
        # the host's own trap deliveries are monitor entries, charged as transitions
        h = self._place_guest(ring=1, guard_bytes=self.guard_bytes, costs={"trap": 0})
        layout = self.layout
        self.vcpu = VirtualCPU(h.regs, h.mem, layout.guest_base, layout.guest_size, self.disk,
                               levels=self.levels, strict=self.strict)
        self.vcpu.reset(image.entry)
        #: the monitor's own trap-vector table (what a non-strict RDTVB leaks): its last page
        self.monitor_tvb = layout.monitor_top - isa.PAGE_SIZE
        self.allocator = FrameAllocator(h.mem, layout.monitor_base, self.monitor_tvb)
        self.pager = ShadowPager(self.vcpu, h.ctrl, h.tlb, self.allocator, self.levels,
                                 max_roots=self.max_roots,
                                 unshadow_after=self.unshadow_after)
        hc = h.ctrl
        hc[S.C_PAGING] = 1                       # the host always walks shadow tables
        hc[S.C_IF] = 1                           # the host's IF stays on: the guest's is virtual
        hc[S.C_TVB] = self.monitor_tvb
        hc[S.C_TIMER_PERIOD] = self.time_slice   # any non-zero period: reprogrammed every entry
        h.intercept[:] = 1                     # every trap comes to the monitor
        self.exits = 0

    # ---- bookkeeping -------------------------------------------------------------------------
    def _charge(self, reason: str, handler: str | None, category: str, transition: bool = True,
                walk_refs: int = 0) -> None:
        """One event: entry + return (if it was a real exit), the handler, guest walk refs."""
        cost = self.cost
        if transition:
            self.count(reason, cycles=cost["monitor_entry"] + cost["monitor_return"],
                       category="transitions")
            if handler is not None:
                self.count(reason, n=0, cycles=cost[handler], category=category)
        else:
            self.count(reason, cycles=cost[handler], category=category)
        if walk_refs:
            self.count(reason, n=0, cycles=walk_refs * cost["walk_ref"], category="memory")

    def _drain_pager_events(self) -> None:
        for name in self.pager.events:
            self._charge(name, _PAGER_COSTS[name], "memory", transition=False)
        self.pager.events.clear()

    def _fetch(self, pc: int) -> int:
        """The guest instruction at ``pc`` (it was just fetched by the host through a shadow)."""
        hpa = self.pager.host_translate(pc)
        if hpa < 0:
            gpa = self.vcpu.translate(pc, ACC_FETCH)
            if gpa < 0:
                raise MonitorError(f"cannot read the guest instruction at 0x{pc:08x}")
            hpa = self.layout.hpa(gpa)
        return int(self.host.mem[hpa >> 2])

    # ---- the run loop ------------------------------------------------------------------------
    def _run(self, budget: int) -> None:
        """Inject due virtual interrupts and enter the guest until the budget is spent or the
        guest stops; each entry is :meth:`_enter_guest` (binary translation overrides it)."""
        h0 = self.host.counters.item(S.EV_INSTRUCTIONS)
        v0 = self.vcpu.counters.item(S.EV_INSTRUCTIONS)
        try:
            while True:
                if self._inject_due_interrupt():
                    continue
                retired = self._retired_since(h0, v0)
                if retired >= budget:
                    self.stop = S.STOP_NAMES[S.STOP_BUDGET]
                    return
                self._enter_guest(budget - retired)
        except Stop as s:
            self.stop = S.STOP_NAMES[s.reason]
            self.stop_vector, self.stop_error = s.vector, s.error

    def _enter_guest(self, allowed: int) -> None:
        """Run the guest directly for at most ``allowed`` instructions and handle the trap that
        stopped it.  Ring compression: virtual ring 0 runs in host ring 1."""
        hc, vc = self.host.ctrl, self.vcpu.ctrl
        reason = self._enter_host(vc.item(S.C_PC), vc.item(S.C_CPL) or 1, allowed)
        vc[S.C_PC] = hc.item(S.C_PC)
        if reason == S.STOP_TRAP_EXIT:
            self.exits += 1
            self._exit(hc.item(S.C_STOP_VECTOR), hc.item(S.C_STOP_ERROR))
        elif reason != S.STOP_BUDGET:
            raise MonitorError(f"unexpected host stop {S.STOP_NAMES.get(reason, reason)}")

    def _inject_due_interrupt(self) -> bool:
        """Steps 1-2 of a native step, on the virtual CPU: when the virtual timer is due and the
        virtual IF is on, deliver the interrupt to the guest.  True if one was delivered."""
        v = self.vcpu
        v.timer_check()
        vget = v.ctrl.item
        if vget(S.C_IF) and vget(S.C_TIMER_PENDING):
            v.ctrl[S.C_TIMER_PENDING] = 0
            self._charge(_REFLECT[isa.VEC_TIMER], "reflect", "emulation", transition=False)
            v.deliver(isa.VEC_TIMER, 0, vget(S.C_PC))
            return True
        return False

    def _retired_since(self, h0: int, v0: int) -> int:
        """Guest instructions retired in this run: run directly on the host plus emulated."""
        return (self.host.counters.item(S.EV_INSTRUCTIONS) - h0
                + self.vcpu.counters.item(S.EV_INSTRUCTIONS) - v0)

    def _enter_host(self, pc: int, cpl: int, allowed: int) -> int:
        """Run the guest on the host CPU from ``pc`` in host ring ``cpl`` for at most ``allowed``
        instructions; the host timer fires at the virtual deadline or after one time slice.
        Brings the virtual tick count up to date and returns the host's stop reason."""
        from ..cpu import run_native
        h, vc = self.host, self.vcpu.ctrl
        hc = h.ctrl
        ticks = vc.item(S.C_TICKS)
        before = h.counters.item(S.EV_INSTRUCTIONS)
        hc[S.C_PC] = pc
        hc[S.C_CPL] = cpl
        hc[S.C_TICKS] = ticks
        hc[S.C_TIMER_DEADLINE] = min(vc.item(S.C_TIMER_DEADLINE), ticks + self.time_slice)
        hc[S.C_TIMER_PENDING] = 0
        reason = run_native(h.regs, hc, h.mem, h.tlb, h.costs, h.counters, h.console_buffer,
                            h.trace, h.intercept, allowed)
        vc[S.C_TICKS] = hc.item(S.C_TICKS)
        if h.counters.item(S.EV_INSTRUCTIONS) != before:
            vc[S.C_DELIVERIES] = 0
        return reason

    def _exit(self, vec: int, err: int) -> None:
        """One host trap: decide what it means for the guest and act on the virtual CPU."""
        v = self.vcpu
        vc = v.ctrl
        pc = int(vc[S.C_PC])
        if vec == isa.VEC_PF:
            self._page_fault(int(self.host.ctrl[S.C_FAULT_ADDR]), err, pc)
        elif vec == isa.VEC_GP:
            word = self._fetch(pc)
            op = word >> 24
            if op not in PRIVILEGED_OPS and not (self.strict and op in SENSITIVE_OPS):
                raise MonitorError(f"host #GP at 0x{pc:08x} on 0x{word:08x}, which should not "
                                   f"trap")
            if vc[S.C_CPL] != 0:
                self._charge(_REFLECT[vec], "reflect", "emulation")
                v.deliver(*v.privilege_fault(), pc)
                return
            name = _EMULATE[op]
            self._charge(name, "emulate", "emulation")
            fault = self.emulate_charged(v, name, word)
            if fault is not None:
                v.deliver(fault[0], fault[1], pc)
        elif vec == isa.VEC_TIMER:
            if vc[S.C_TICKS] < vc[S.C_TIMER_DEADLINE]:
                self._charge("monitor:preempt", None, "transitions")
                return
            v.timer_check()
            if vc[S.C_IF]:
                vc[S.C_TIMER_PENDING] = 0
                self._charge(_REFLECT[vec], "reflect", "emulation")
                v.deliver(vec, 0, pc)
            else:
                self._charge("timer:pending", None, "transitions")
        else:
            self._charge(_REFLECT[vec], "reflect", "emulation")
            v.deliver(vec, err, pc)
        if self.pager.events:
            self._drain_pager_events()

    def _page_fault(self, va: int, err: int, pc: int) -> None:
        v = self.vcpu
        acc = access_of(err)
        refs = v.walk_refs
        kind, fvec, ferr = self.pager.page_fault(va, acc, int(v.ctrl[S.C_CPL]))
        refs = v.walk_refs - refs
        if kind == "hidden_fault":
            self._charge("shadow:hidden_fault", "shadow_fill", "memory", walk_refs=refs)
        elif kind in ("pt_write", "protected_write"):    # a store the monitor must do
            name = "shadow:pt_write" if kind == "pt_write" else self.protected_write_event
            self._charge(name, "shadow_pt_write", "memory", walk_refs=refs)
            fault = emulate_store(v, self._fetch(pc), known_va=va, known_gpa=fvec)
            if fault is not None:
                v.deliver(fault[0], fault[1], pc)
        else:
            self._charge("shadow:true_fault", "shadow_fill", "memory", walk_refs=refs)
            self.count("shadow:true_fault", n=0, cycles=self.cost["reflect"],
                       category="emulation")
            v.deliver(fvec, ferr, pc)

    # ---- results -----------------------------------------------------------------------------
    def view(self) -> GuestView:
        v = self.vcpu
        return GuestView(self.host.regs, v.ctrl, v.ram, v.disk, bytes(v.console), self.levels)

    def notes(self) -> list[str]:
        """What went wrong that the monitor could not see (the non-strict ISA's blind spots)."""
        if self.strict:
            return []
        hcnt = self.host.counters
        ran = {isa.BY_OPCODE[op].mnemonic: int(hcnt[S.EV_OP_BASE + op]) for op in SENSITIVE_OPS
               if hcnt[S.EV_OP_BASE + op]}
        out = []
        if ran:
            listing = ", ".join(f"{k} x{n}" for k, n in sorted(ran.items()))
            out.append(f"sensitive instructions ran unemulated in rings 1-3 ({listing}): they saw "
                       f"the host's state, not the virtual CPU's (non-strict ISA: "
                       f"{_SENSITIVE_NAMES} do not trap)")
        ignored = int(hcnt[S.EV_POPF_IGNORED])
        if ignored:
            out.append(f"popf_ignored: {ignored} POPF(s) tried to change the interrupt flag and "
                       f"were silently ignored; the virtual IF was not restored")
        return out

    def _settle(self) -> None:
        if self.pager.events:                  # a run that stopped inside an exit
            self._drain_pager_events()

    def guest_counters(self) -> np.ndarray:
        """The virtual CPU's counts (what the monitor did for the guest) plus what the host CPU
        counted running the guest directly: its instructions and opcodes, and the TLB, walk and
        ignored-POPF counts (the host's TLB and walks stand for the guest's)."""
        hcnt = self.host.counters
        counters = self.vcpu.counters.copy()
        counters[S.EV_INSTRUCTIONS] += hcnt[S.EV_INSTRUCTIONS]
        for idx in (S.EV_TLB_HIT, S.EV_TLB_MISS, S.EV_WALK_REFS, S.EV_POPF_IGNORED):
            counters[idx] = hcnt[idx]
        counters[S.EV_OP_BASE:S.EV_OP_BASE + 256] += hcnt[S.EV_OP_BASE:S.EV_OP_BASE + 256]
        return counters

    def cpu_cycles(self) -> dict[str, int]:
        """The host CPU's cycles running the guest, and the idle ticks the guest slept."""
        return {"guest": int(self.host.ctrl[S.C_CYCLES]) +
                int(self.vcpu.counters[S.EV_IDLE_TICKS]) * self.cost["idle_tick"]}


__all__ = ["TrapEmulate", "DEFAULT_TIME_SLICE", "MONITOR_TVB"]
