"""``hw_shadow`` and ``hw_ept``: hardware-assisted virtualization (Intel VT-x style).

The guest kernel runs **unmodified, in ring 0 of VMX non-root operation** (:mod:`kernel_sim.vmx`).
Nothing is deprivileged and nothing is translated: CLI, STI, PUSHF, POPF, IRET, SYSRET, system
calls and the guest's own exceptions all run on the CPU against the guest's real state.  The
monitor only sees the events its **VMCS** asks to exit on, and each one is a *VM exit* with one
of Intel's basic exit reasons.  For every exit the monitor (this module) does the work and
resumes the guest with VMRESUME, possibly *injecting* an event (the virtual timer interrupt, a
page fault the guest must see) through the VMCS's entry controls.

Two memory modes, two generations of hardware:

``hw_shadow`` -- first-generation VT-x (2005-06): the CPU virtualizes the CPU but not the MMU.
    The monitor keeps **shadow page tables** (:mod:`kernel_sim.monitors.shadow`, the same code
    trap-and-emulate uses) and the CPU walks them, so everything that touches translation must
    exit: page faults (exception bitmap bit 14), WRCR/RDCR of the PTBR (CR3-load and CR3-store
    exiting), WRCR of the paging register (the CR0 guest/host mask; RDCR reads the read
    shadow), INVLPG.  This is why the first hardware generation often lost to binary
    translation (Adams & Agesen, ASPLOS 2006): a process-heavy guest exits constantly.
``hw_ept`` -- nested paging (EPT, Nehalem 2008 and later): the CPU walks the guest's own page
    tables through the monitor's nested table (:mod:`kernel_sim.monitors.ept`).  Page faults,
    PTBR loads and INVLPG stay inside the guest; the monitor sees only EPT violations, once per
    guest page.  The price moves into the TLB miss: a two-dimensional walk.

Controls each mode requires (clearing one is refused) and may add (``controls=``,
``exception_bitmap=``):

==================================  =========================  ===================================
control                             hw_shadow                  hw_ept
==================================  =========================  ===================================
external_interrupt_exiting          required (the monitor's    required
                                    time slice and virtual
                                    timer)
hlt_exiting                         required (the monitor      required
                                    must know the guest idles)
io_exiting                          required (devices are      required
                                    the monitor's)
cr3_load_exiting, cr3_store_exiting required (shadow roots)    optional
cr0_pg_exiting, invlpg_exiting      required (shadows)         optional
exception bitmap                    #PF required, others       all optional
                                    optional
interrupt_window_exiting            managed by the monitor     managed by the monitor
enable_vpid                         ``vpid=`` (CPU preset)     ``vpid=`` (CPU preset)
==================================  =========================  ===================================

An optional control changes nothing the guest can see: the monitor emulates the instruction (or
re-injects the exception) exactly as the CPU would have -- it only adds exits.

How the virtual timer works: the monitor programs the host timer for the guest's next virtual
deadline (or one time slice, whichever is first).  It fires as an external-interrupt exit,
whatever the guest's IF.  If the guest's IF is 1 the monitor injects vector 32 at the next
entry; if not it sets *interrupt-window exiting* and injects at the exit that follows as soon as
the guest executes STI/POPF/IRET -- the instruction boundary where the bare CPU would take it.

Costs: every exit charges ``vm_exit`` (category ``transitions``), plus its handler: ``emulate``
(HLT, CR access, INVLPG), ``device_io`` and ``blk_sector`` (I/O), ``shadow_*`` and ``walk_ref``
(shadow page faults, ``memory``), ``ept_violation`` (``memory``), ``reflect`` (re-injecting an
exception).  The CPU's own cycles for guest instructions, TLB misses and guest walks are
``guest``; the nested dimension of the walks (``nested_refs`` x ``walk_ref``) is ``memory``.
"""
from __future__ import annotations

from collections import Counter
from typing import Dict, Iterable, Optional

import numpy as np

from .. import isa
from ..costs import CPU_PRESETS
from ..mmu import EPTQ_FETCH, EPTQ_FINAL, EPTQ_WRITE, invalidate_page
from .. import state as S
from ..vmx import CONTROLS, Vmcs, run_guest
from .base import MONITOR_BYTES, GuestView, Monitor, MonitorError, Needs, check_settings
from .ept import NestedPager
from .shadow import FrameAllocator, ShadowPager, emulate_store
from .trap_emulate import DEFAULT_TIME_SLICE
from .vcpu import ACC_FETCH, ACC_READ, ACC_WRITE, Stop, VirtualCPU, access_of

#: where the VMCS lives: the last page of the monitor's region (in the default placement;
#: ``monitor.vmcs.address`` in any placement)
VMCS_ADDRESS = MONITOR_BYTES - isa.PAGE_SIZE
#: the guest's VPID when the CPU has VPIDs (0 is the host's)
GUEST_VPID = 1

_BASE_REQUIRED = ("external_interrupt_exiting", "hlt_exiting", "io_exiting")
REQUIRED_CONTROLS: Dict[str, tuple] = {
    "hw_shadow": _BASE_REQUIRED + ("cr3_load_exiting", "cr3_store_exiting", "cr0_pg_exiting",
                                   "invlpg_exiting"),
    "hw_ept": _BASE_REQUIRED,
}
OPTIONAL_CONTROLS: Dict[str, tuple] = {
    "hw_shadow": (),
    "hw_ept": ("cr3_load_exiting", "cr3_store_exiting", "cr0_pg_exiting", "invlpg_exiting"),
}
#: exception vectors each mode must intercept
REQUIRED_VECTORS: Dict[str, tuple] = {"hw_shadow": (isa.VEC_PF,), "hw_ept": ()}
#: the native event each optional control turns into exits (the ``events`` key of a result)
GOVERNED_EVENT = {"cr3_load_exiting": "ptbr_writes", "cr3_store_exiting": "ptbr_reads",
                  "cr0_pg_exiting": "paging_writes", "invlpg_exiting": "invlpg"}
#: how many exits the timeline keeps (the counts are always complete)
TIMELINE_LIMIT = 20_000

_EXCEPTION = {v: f"EXCEPTION_NMI:{isa.VECTOR_KEYS.get(v, f'vector_{v}')}" for v in range(32)}
_PAGER_COSTS = {"shadow:root_hit": "shadow_root_hit", "shadow:root_new": "shadow_root_new",
                "shadow:flush_all": "shadow_root_new", "shadow:unshadow": "shadow_fill"}


def exit_label(reason: int, vector: int = -1) -> str:
    """The name an exit is counted under: Intel's name; exceptions also name the vector."""
    if reason == S.EXIT_EXCEPTION_NMI and vector >= 0:
        return _EXCEPTION[vector]
    return S.EXIT_NAMES.get(reason, f"EXIT_{reason}")


class HardwareAssist(Monitor):
    """Hardware-assisted virtualization (see the module docstring); use :class:`HwShadow` or
    :class:`HwEpt`.

    Extra settings: ``vpid`` (tag the TLB with the guest's VPID; default: if the CPU preset has
    VPIDs), ``controls`` (``{name: bool}`` for the optional execution controls of
    :data:`OPTIONAL_CONTROLS`), ``exception_bitmap`` (extra exception vectors 0..31 to exit
    on), ``ept_levels`` (1..4, nested table levels, ``hw_ept`` only), ``time_slice``,
    ``max_roots`` and ``unshadow_after`` (``hw_shadow``, see
    :class:`~kernel_sim.monitors.trap_emulate.TrapEmulate`).
    """

    name = "hardware_assist"
    memory_mode = ""
    needs = Needs(vm_exits=True)

    @classmethod
    def event_kind(cls, reason: str):
        """Every event of a VMCS-based monitor is a VM exit (named by its exit reason)."""
        return "exit"

    @classmethod
    def _missing_feature_message(cls, cpu: str, feature: str) -> str:
        if feature == "ept":
            return (f"the {cpu} CPU preset ({CPU_PRESETS[cpu]['examples']}) has no EPT: "
                    f"nested paging arrived with Nehalem (2008).  Use hw_shadow, or "
                    f"the nehalem or modern preset")
        return super()._missing_feature_message(cpu, feature)

    @classmethod
    def refusal(cls, cpu: str = "modern", **settings) -> Optional[str]:
        """Also refuses ``vpid=True`` on a preset without VPID (it arrived with Nehalem), and
        ``controls={name: False}`` for a control this mode requires (see the module
        docstring)."""
        refused = super().refusal(cpu, **settings)
        if refused is None and settings.get("vpid") and not CPU_PRESETS[cpu]["vpid"]:
            refused = (f"the {cpu} CPU preset has no VPID (it arrived with "
                       f"Nehalem): every VM entry and exit flushes the TLB.  Turn VPID "
                       f"off (vpid=False) or choose a later preset")
        for name, on in (settings.get("controls") or {}).items():
            if refused is None and name in REQUIRED_CONTROLS.get(cls.name, ()) and \
                    isinstance(on, (bool, np.bool_)) and not on:
                refused = (f"{cls.name} requires {name}: without it the monitor "
                           f"{_WHY_REQUIRED[name]}")
        return refused

    def __init__(self, image, *, vpid: Optional[bool] = None,
                 controls: Optional[Dict[str, bool]] = None,
                 exception_bitmap: Iterable[int] = (), ept_levels: int = 4,
                 time_slice: int = DEFAULT_TIME_SLICE, max_roots: int = 32,
                 unshadow_after: int = 16, **settings):
        super().__init__(image, **settings)
        preset = CPU_PRESETS[self.cpu]
        refused = self.refusal(self.cpu, vpid=vpid, controls=controls)
        if refused:
            raise MonitorError(refused)
        if vpid is None:
            vpid = bool(preset["vpid"])
        check_settings(("time_slice", time_slice, 1, 10 ** 9), ("max_roots", max_roots, 1, 4000),
                       ("unshadow_after", unshadow_after, 0, 10 ** 9),
                       ("ept_levels", ept_levels, 1, 4))
        self.vpid = bool(vpid)
        self.ept_levels = int(ept_levels)
        self.time_slice = int(time_slice)
        self.max_roots = int(max_roots)
        self.unshadow_after = int(unshadow_after)
        self.control_bits = self._controls(controls or {})
        self.exception_vectors = self._vectors(exception_bitmap)

    # ---- settings ------------------------------------------------------------------------------
    def _controls(self, wanted: Dict[str, bool]) -> int:
        mode = self.name
        required, optional = REQUIRED_CONTROLS[mode], OPTIONAL_CONTROLS[mode]
        bits = 0
        for name in required:
            bits |= CONTROLS[name]
        for name, on in wanted.items():
            if name not in CONTROLS:
                raise ValueError(f"unknown VMCS control {name!r}; known: "
                                 f"{', '.join(CONTROLS)}")
            if not isinstance(on, (bool, np.bool_)):
                raise ValueError(f"control {name!r} must be True or False, got {on!r}")
            if name in required:
                pass                         # (clearing one is refused: see refusal())
            elif name in optional:
                if on:
                    bits |= CONTROLS[name]
            elif name in ("enable_ept", "enable_vpid"):
                raise ValueError(f"{name} is chosen by the technique (hw_shadow / hw_ept) and "
                                 f"the vpid= setting, not by controls=")
            elif name == "interrupt_window_exiting":
                raise ValueError("interrupt_window_exiting is managed by the monitor (it sets it "
                                 "while a virtual interrupt waits for the guest's IF)")
            else:
                raise ValueError(f"{name} is not a control of {mode}")
        if mode == "hw_ept":
            bits |= CONTROLS["enable_ept"]
        if self.vpid:
            bits |= CONTROLS["enable_vpid"]
        return bits

    def _vectors(self, vectors: Iterable[int]) -> frozenset:
        out = set(REQUIRED_VECTORS[self.name])
        for v in vectors:
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 <= v < 32:
                raise ValueError(f"exception_bitmap holds exception vectors 0..31, got {v!r}")
            out.add(int(v))
        return frozenset(out)

    # ---- boot ----------------------------------------------------------------------------------
    def _boot(self) -> None:
        image = self.image
        h = self._place_guest(ring=0, guard_bytes=isa.PAGE_SIZE)
        layout = self.layout
        base, ram = layout.guest_base, layout.guest_size
        v = self.vcpu = VirtualCPU(h.regs, h.mem, base, ram, self.disk, levels=self.levels,
                                   strict=self.strict)
        v.reset(image.entry)
        v.counts_page_faults = False         # the CPU counts each #PF it delivers
        #: the VMCS: the last page of the monitor's region (VMCS_ADDRESS in the default
        #: placement); the shadow or nested tables come from the pages after the first
        vmcs_address = layout.monitor_top - isa.PAGE_SIZE
        self.allocator = FrameAllocator(h.mem, layout.monitor_base + isa.PAGE_SIZE,
                                        vmcs_address)
        vmcs = self.vmcs = Vmcs(h.mem, vmcs_address)
        if self.name == "hw_shadow":
            self.mmu_state = np.zeros(S.NUM_CTRL, dtype=np.int64)   # the shadow root the CPU uses
            self.pager = ShadowPager(v, self.mmu_state, h.tlb, self.allocator, self.levels,
                                     max_roots=self.max_roots,
                                     unshadow_after=self.unshadow_after)
            if self.vpid:
                self.pager.tag_base = GUEST_VPID << 12
            self.nested = None
        else:
            self.pager = None
            self.nested = NestedPager(h.mem, self.allocator, base, ram, self.ept_levels)
            vmcs.write("EPT_POINTER", self.nested.root)
            vmcs.write("EPT_LEVELS", self.ept_levels)
        vmcs.write("EXEC_CONTROLS", self.control_bits)
        bitmap = 0
        for vec in self.exception_vectors:
            bitmap |= 1 << vec
        vmcs.write("EXCEPTION_BITMAP", bitmap)
        vmcs.write("VPID", GUEST_VPID if self.vpid else 0)
        # host state: the monitor runs with paging off in ring 0 (HOST_PC is symbolic: the
        # monitor is Python, not code in host memory)
        for name in ("HOST_PC", "HOST_CPL", "HOST_PAGING", "HOST_PTBR"):
            vmcs.write(name, 0)
        h.ctrl[S.C_TIMER_PERIOD] = self.time_slice   # the monitor's timer: reprogrammed every entry
        self.exits = 0
        self.injections: Counter = Counter()
        self.shadow_events: Counter = Counter()
        self.transition_flushes = 0
        self._store_vcpu()

    # ---- moving the guest's state between the VMCS and the virtual CPU ------------------------
    def _load_vcpu(self) -> None:
        """After an exit: the guest's CPU state from the VMCS into the virtual CPU."""
        vm, vc = self.vmcs, self.vcpu.ctrl
        for field, idx in (("GUEST_PC", S.C_PC), ("GUEST_CPL", S.C_CPL), ("GUEST_IF", S.C_IF),
                           ("GUEST_FAULT_ADDR", S.C_FAULT_ADDR), ("GUEST_TVB", S.C_TVB),
                           ("GUEST_KSP", S.C_KSP), ("GUEST_SCRATCH", S.C_SCRATCH)):
            vc[idx] = vm.read(field)
        if self.nested is not None:              # with EPT the paging registers are the guest's
            vc[S.C_PAGING] = vm.read("GUEST_PAGING")
            vc[S.C_PTBR] = vm.read("GUEST_PTBR")
        hc = self.host.ctrl
        vc[S.C_TICKS] = hc[S.C_TICKS]
        vc[S.C_DELIVERIES] = hc[S.C_DELIVERIES]

    def _store_vcpu(self) -> None:
        """Before an entry: the virtual CPU's state into the VMCS's guest-state area."""
        vm, vc = self.vmcs, self.vcpu.ctrl
        for field, idx in (("GUEST_PC", S.C_PC), ("GUEST_CPL", S.C_CPL), ("GUEST_IF", S.C_IF),
                           ("GUEST_FAULT_ADDR", S.C_FAULT_ADDR), ("GUEST_TVB", S.C_TVB),
                           ("GUEST_KSP", S.C_KSP), ("GUEST_SCRATCH", S.C_SCRATCH)):
            vm.write(field, vc[idx])
        if self.nested is not None:
            vm.write("GUEST_PAGING", vc[S.C_PAGING])
            vm.write("GUEST_PTBR", vc[S.C_PTBR])
            vm.write("CR0_READ_SHADOW", vc[S.C_PAGING])   # read under cr0_pg_exiting
        else:                                    # the CPU walks the shadow; the guest reads
            vm.write("GUEST_PAGING", 1)          # its own paging bit from the read shadow
            vm.write("GUEST_PTBR", self.mmu_state[S.C_PTBR])
            vm.write("CR0_READ_SHADOW", vc[S.C_PAGING])
        self.host.ctrl[S.C_DELIVERIES] = vc[S.C_DELIVERIES]

    # ---- bookkeeping ---------------------------------------------------------------------------
    def _exit_cost(self, label: str, handler: Optional[str] = None,
                   category: str = "emulation", walk_refs: int = 0) -> None:
        cost = self.cost
        self.count(label, cycles=cost["vm_exit"], category="transitions")
        if handler is not None:
            self.count(label, n=0, cycles=cost[handler], category=category)
        if walk_refs:
            self.count(label, n=0, cycles=walk_refs * cost["walk_ref"], category="memory")

    def _drain_pager_events(self, label: str) -> None:
        """Shadow work done inside exit ``label`` (root switches, unshadowing): its cycles go
        to that exit; the events themselves are listed in ``shadow_events``."""
        for name in self.pager.events:
            self.count(label, n=0, cycles=self.cost[_PAGER_COSTS[name]], category="memory")
            self.shadow_events[name] += 1
        self.pager.events.clear()

    def _inject(self, vec: int, err: int = 0) -> None:
        self.vmcs.write("ENTRY_INTR_INFO", S.INJECT_VALID | vec)
        self.vmcs.write("ENTRY_EXCEPTION_ERROR", err)
        self.injections[isa.VECTOR_KEYS.get(vec, f"vector_{vec}")] += 1

    def _inject_page_fault(self, va: int, err: int) -> None:
        """The guest takes a page fault at ``va``: the monitor sets CR2 (the CPU counts the
        fault when it delivers it)."""
        self.vcpu.ctrl[S.C_FAULT_ADDR] = va
        self._inject(isa.VEC_PF, err)

    def _pending_injection(self) -> bool:
        return bool(self.vmcs.read("ENTRY_INTR_INFO") & S.INJECT_VALID)

    # ---- the run loop --------------------------------------------------------------------------
    def _run(self, budget: int) -> None:
        h, v = self.host, self.vcpu
        vc = v.ctrl
        h0 = h.counters.item(S.EV_INSTRUCTIONS)
        v0 = v.counters.item(S.EV_INSTRUCTIONS)
        window = CONTROLS["interrupt_window_exiting"]
        try:
            while True:
                # the virtual timer: inject when the guest can take it, else wait for the window
                v.timer_check()
                if vc[S.C_TIMER_PENDING] and not self._pending_injection():
                    if vc[S.C_IF]:
                        vc[S.C_TIMER_PENDING] = 0
                        self._inject(isa.VEC_TIMER)
                    else:
                        self.vmcs.write("EXEC_CONTROLS", self.vmcs.read("EXEC_CONTROLS") | window)
                retired = (h.counters.item(S.EV_INSTRUCTIONS) - h0
                           + v.counters.item(S.EV_INSTRUCTIONS) - v0)
                if retired >= budget:
                    self.stop = S.STOP_NAMES[S.STOP_BUDGET]
                    return
                self._store_vcpu()
                ticks = vc.item(S.C_TICKS)
                hc = h.ctrl
                hc[S.C_TICKS] = ticks
                hc[S.C_TIMER_DEADLINE] = min(vc.item(S.C_TIMER_DEADLINE), ticks + self.time_slice)
                hc[S.C_TIMER_PENDING] = 0
                reason = run_guest(h, self.vmcs, budget - retired)
                if not self.vpid:
                    self.transition_flushes += 2
                self._load_vcpu()
                if reason == S.STOP_VM_EXIT:
                    self.exits += 1
                    self._exit()
                elif reason == S.STOP_UNHANDLED_TRAP:
                    raise Stop(reason, int(hc[S.C_STOP_VECTOR]), int(hc[S.C_STOP_ERROR]))
                elif reason != S.STOP_BUDGET:
                    raise MonitorError(f"unexpected stop {S.STOP_NAMES.get(reason, reason)} in "
                                       f"non-root operation")
        except Stop as s:
            self.stop = S.STOP_NAMES[s.reason]
            self.stop_vector, self.stop_error = s.vector, s.error

    def _exit(self) -> None:
        """Handle one VM exit (the guest's state is in the virtual CPU)."""
        vm, v = self.vmcs, self.vcpu
        reason = vm.read("EXIT_REASON")
        vector = vm.read("EXIT_INTR_INFO") if reason == S.EXIT_EXCEPTION_NMI else -1
        label = exit_label(reason, vector)
        if len(self.timeline) < TIMELINE_LIMIT:
            self.timeline.append((int(v.ctrl[S.C_TICKS]), label, int(v.ctrl[S.C_CPL]),
                                  int(v.ctrl[S.C_PC])))
        idt = vm.read("IDT_VECTORING_INFO")
        if reason == S.EXIT_EXTERNAL_INTERRUPT:
            self._exit_cost(label)
        elif reason == S.EXIT_INTERRUPT_WINDOW:
            self._exit_cost(label)
            vm.set_control("interrupt_window_exiting", False)
        elif reason in (S.EXIT_HLT, S.EXIT_CR_ACCESS, S.EXIT_INVLPG, S.EXIT_IO_INSTRUCTION):
            self._emulate(label, reason, vm.read("EXIT_INSTRUCTION"))
        elif reason == S.EXIT_EXCEPTION_NMI:
            err = vm.read("EXIT_INTR_ERROR")
            if vector == isa.VEC_PF and self.pager is not None:
                self._shadow_fault(label, vm.read("EXIT_QUALIFICATION"), err, idt)
            elif vector == isa.VEC_PF:
                self._exit_cost(label, "reflect")
                if idt & S.INJECT_VALID:       # natively: a fault while delivering a trap
                    self._delivery_failed(idt)
                self._inject_page_fault(vm.read("EXIT_QUALIFICATION"), err)
            else:
                self._exit_cost(label, "reflect")
                self._inject(vector, err)
        elif reason == S.EXIT_EPT_VIOLATION:
            self._ept_violation(label, idt)
        elif reason == S.EXIT_VMCALL:
            self._exit_cost(label, "reflect")   # an unmodified guest: VMCALL is #UD natively
            self._inject(isa.VEC_UD, 0)
        elif reason == S.EXIT_TRIPLE_FAULT:
            self._exit_cost(label)
            hc = self.host.ctrl
            raise Stop(S.STOP_TRIPLE_FAULT, int(hc[S.C_STOP_VECTOR]), int(hc[S.C_STOP_ERROR]))
        else:
            raise MonitorError(f"unexpected VM exit {label}")
        if self.pager is not None and self.pager.events:
            self._drain_pager_events(label)

    def _emulate(self, label: str, reason: int, word: int) -> None:
        """HLT, I/O, CR access, INVLPG: perform the instruction on the virtual CPU."""
        v = self.vcpu
        if reason == S.EXIT_IO_INSTRUCTION:
            self._exit_cost(label)
            fault = self.emulate_charged(v, label, word)   # device_io and disk sectors
        else:
            self._exit_cost(label, "emulate")
            flushes = int(v.counters[S.EV_TLB_FLUSHES])
            fault = v.emulate(word)          # HLT may raise Stop (the guest halted for good)
            if self.nested is not None and fault is None:
                self._nested_tlb_effect(word, flushes)
        if fault is not None:                # a fault the instruction raises natively
            self._inject(*fault)

    def _nested_tlb_effect(self, word: int, flushes: int) -> None:
        """hw_ept with an optional exiting control: an emulated WRCR/INVLPG must do to the real
        TLB what it would have done running in the guest."""
        h, vc = self.host, self.vcpu.ctrl
        op = (word >> 24) & 0xFF
        if int(self.vcpu.counters[S.EV_TLB_FLUSHES]) != flushes:
            h.tlb[:] = 0
        elif op == isa.OP_INVLPG:
            va = int(h.regs[(word >> 20) & 15])
            tag = ((GUEST_VPID if self.vpid else 0) << 12) | (int(vc[S.C_PTBR]) & 0xFFF)
            invalidate_page(va, tag, h.tlb, (len(h.tlb) >> 1) - 1)

    def _shadow_fault(self, label: str, va: int, err: int, idt: int) -> None:
        """hw_shadow: a page fault in non-root mode -- a hidden fault, a guest page-table write
        or the guest's own fault (during an event delivery if ``idt`` is valid)."""
        v = self.vcpu
        acc = access_of(err)
        cpl = 3 if err & isa.PF_USER else 0
        refs = v.walk_refs
        cr2 = int(v.ctrl[S.C_FAULT_ADDR])
        kind, fvec, ferr = self.pager.page_fault(va, acc, cpl)
        refs = v.walk_refs - refs
        pc = int(v.ctrl[S.C_PC])
        if kind == "hidden_fault":
            self._exit_cost(label, "shadow_fill", "memory", walk_refs=refs)
            if idt & S.INJECT_VALID:           # finish the delivery the fault interrupted
                self._reinject(idt)
        elif kind == "pt_write":
            self._exit_cost(label, "shadow_pt_write", "memory", walk_refs=refs)
            if idt & S.INJECT_VALID:           # a trap frame pushed onto a guest page table:
                self._count_interrupted_page_fault(idt)   # deliver it in software
                v.deliver(idt & 0xFF, self.vmcs.read("IDT_VECTORING_ERROR"), pc)
            else:
                fault = emulate_store(v, self._fetch(pc), host_if=int(v.ctrl[S.C_IF]),
                                      known_va=va, known_gpa=fvec)
                if fault is not None:
                    self._inject(*fault)
        else:                                # the guest's own fault or a bus error
            self._exit_cost(label, "shadow_fill", "memory", walk_refs=refs)
            if idt & S.INJECT_VALID:           # natively: a fault while delivering a trap
                v.ctrl[S.C_FAULT_ADDR] = cr2       # (the walk set CR2 for a fault never raised)
                self._delivery_failed(idt)
            self._inject(fvec, ferr)         # (a #PF: the walk set CR2)

    def _delivery_failed(self, idt: int) -> None:
        """A fault while delivering the event ``idt``: the bare machine stops (triple fault).
        It had counted the delivery it began (and a #PF as it raised it); the CPU exited
        before counting either, so count them here."""
        vec = idt & 0xFF
        self.vcpu.count_trap(vec)
        self._count_interrupted_page_fault(idt)
        raise Stop(S.STOP_TRIPLE_FAULT, vec, self.vmcs.read("IDT_VECTORING_ERROR"))

    def _count_interrupted_page_fault(self, idt: int) -> None:
        """The CPU counts a #PF when it delivers it; one whose delivery exited and that the
        monitor finishes otherwise (in software, or as a triple fault) is counted here."""
        if idt & 0xFF == isa.VEC_PF:
            self.vcpu.counters[S.EV_PAGE_FAULTS] += 1

    def _reinject(self, idt: int) -> None:
        vec = idt & 0xFF
        err = self.vmcs.read("IDT_VECTORING_ERROR")
        self._inject(vec, err)               # (a #PF: CR2 was written as the delivery began)

    def _ept_violation(self, label: str, idt: int) -> None:
        vm, v = self.vmcs, self.vcpu
        gpa = vm.read("GUEST_PHYSICAL_ADDRESS")
        self._exit_cost(label, "ept_violation", "memory")
        if self.nested.map_page(gpa):
            if idt & S.INJECT_VALID:
                self._reinject(idt)
            return
        # beyond the guest's RAM: the bare machine's bus error.  Redo the access in software
        # first, so that the guest's accessed/dirty bits end up as a native walk leaves them.
        if idt & S.INJECT_VALID:
            self._delivery_failed(idt)
        qual = vm.read("EXIT_QUALIFICATION")
        if qual & EPTQ_FINAL:
            acc = ACC_WRITE if qual & EPTQ_WRITE else ACC_FETCH if qual & EPTQ_FETCH else ACC_READ
        else:
            acc = ACC_READ
        v.translate(vm.read("GUEST_LINEAR_ADDRESS"), acc)
        self._inject(isa.VEC_GP, 0)

    def _fetch(self, pc: int) -> int:
        """The guest instruction at ``pc`` (read through the guest's own translation)."""
        gpa = self.vcpu.translate(pc, ACC_FETCH)
        if gpa < 0:
            raise MonitorError(f"cannot read the guest instruction at 0x{pc:08x}")
        return int(self.vcpu.ram[gpa >> 2])

    # ---- results -------------------------------------------------------------------------------
    def view(self) -> GuestView:
        v = self.vcpu
        return GuestView(self.host.regs, v.ctrl, v.ram, v.disk, bytes(v.console), self.levels)

    def check_containment(self) -> list:
        """Shadow or nested tables that map anything outside the guest's RAM (empty: none)."""
        return (self.pager or self.nested).check_containment()

    def notes(self) -> list:
        out = []
        if self.injections:
            listing = ", ".join(f"{k} x{n}" for k, n in sorted(self.injections.items()))
            out.append(f"events injected at VM entry: {listing}")
        if self.shadow_events:
            listing = ", ".join(f"{k} x{n}" for k, n in sorted(self.shadow_events.items()))
            out.append(f"shadow page-table work inside the exits: {listing}")
        if not self.vpid:
            out.append(f"no VPID: the TLB was flushed at each of {self.transition_flushes:,} VM "
                       f"entries and exits")
        if self.nested is not None:
            out.append(f"EPT: {self.nested.mapped} guest pages mapped on first touch, "
                       f"{len(self.nested.tables)} nested tables ({self.ept_levels} levels)")
        return out

    def _settle(self) -> None:
        if self.pager is not None and self.pager.events:
            self._drain_pager_events(self.timeline[-1][1] if self.timeline else "shadow")

    def guest_counters(self) -> np.ndarray:
        """What the CPU counted in non-root operation plus what the monitor did for the guest
        on the virtual CPU (emulated instructions, deliveries it finished in software)."""
        return self.vcpu.counters + self.host.counters

    def cpu_cycles(self) -> Dict[str, int]:
        """The CPU's cycles running the guest and the guest's idle ticks are ``guest``, except
        the nested dimension of its walks (EPT entries read), which is ``memory``."""
        nested = int(self.host.counters[S.EV_NESTED_REFS]) * self.cost["walk_ref"]
        idle = int(self.vcpu.counters[S.EV_IDLE_TICKS]) * self.cost["idle_tick"]
        return {"guest": int(self.host.ctrl[S.C_CYCLES]) - nested + idle, "memory": nested}


_WHY_REQUIRED = {
    "external_interrupt_exiting": "would lose the CPU to a guest that never exits, and could "
                                  "not deliver the virtual timer",
    "hlt_exiting": "could not tell an idle guest from a busy one (the virtual timer is the "
                   "monitor's)",
    "io_exiting": "would let the guest drive the host's devices directly",
    "cr3_load_exiting": "would not know which shadow root to use after the guest switches "
                        "address spaces",
    "cr3_store_exiting": "would let the guest read the shadow root instead of its own PTBR",
    "cr0_pg_exiting": "would let the guest turn off the paging the shadow tables need",
    "invlpg_exiting": "would keep stale shadow entries the guest asked to drop",
}


class HwShadow(HardwareAssist):
    name = "hw_shadow"
    memory_mode = "shadow"
    description = ("VT-x without EPT: guest kernel in ring 0 of non-root mode; page faults, CR3 "
                   "loads and INVLPG exit to maintain shadow page tables")


class HwEpt(HardwareAssist):
    name = "hw_ept"
    needs = Needs(vm_exits=True, cpu_features=frozenset({"ept"}))
    memory_mode = "ept"
    description = ("VT-x with EPT: guest kernel in ring 0 of non-root mode; the CPU walks guest "
                   "tables through the nested table (2-D walk); EPT violations on first touch")


__all__ = ["HardwareAssist", "HwShadow", "HwEpt", "REQUIRED_CONTROLS", "OPTIONAL_CONTROLS",
           "REQUIRED_VECTORS", "GOVERNED_EVENT", "exit_label", "VMCS_ADDRESS"]
