"""What every monitor has in common: host memory layout, the guest's view, events and cycles.

A *monitor* (virtual-machine monitor, VMM) runs a guest operating system on a host machine and
keeps three promises (Popek & Goldberg 1974): **equivalence** -- the guest behaves as it would on
the bare machine; **resource control** -- the guest touches only what the monitor gave it; and
**efficiency** -- most guest instructions run without the monitor's help.  Each technique module
(``native``, ``emulation``, ``trap_emulate``, ``binary_translation``, ``paravirt``, and
``hw_shadow`` / ``hw_ept`` in ``hardware_assist``) keeps them in its own way, with the same
shape::

    class TrapEmulate(Monitor):
        name = "trap_emulate"
        needs = Needs(strict_isa="choice")   # what it needs: guest build, CPU features, ...
        def _boot(self): ...            # place the guest, build the monitor's own state
        def _run(self, budget): ...     # run until the guest halts or the budget is spent
        def view(self): ...             # the guest's state as the guest would see it
        def guest_counters(self): ...   # the guest's events, as a bare machine counts them
        def cpu_cycles(self): ...       # the cycles the CPU counted itself ({"guest": ...})

    result = TrapEmulate(image, cpu="modern", strict=True).run(count=2_000_000)

:meth:`Monitor.result` makes every technique's result from those answers (one door), and
:meth:`Monitor.refusal` answers, before anything is built, whether a technique can run a CPU
preset, an image and a set of knobs.

Host memory
-----------
The host machine's physical memory holds the monitor's own state *and* the guest's RAM, which is
not at host-physical address 0: guest-physical address ``g`` lives at host-physical
``layout.guest_base + g``.  So guest-physical is not host-physical, and a monitor that forgot to
translate (or a guest that escaped) would read or write the wrong memory, which the containment
tests would see.  The monitor's region ``[layout.monitor_base, layout.monitor_top)`` holds
shadow page tables, translation caches and anything else the technique keeps in "hardware"
memory; fixed pages (a trap-vector table, the VMCS) sit at its top.  A monitor builds its own
host (its region at 0, the guest's RAM after it, then guard bytes that belong to nobody) unless
it is given one with an :class:`Allocation` -- how several domains share a host.  The guest's
disk is a virtual disk the monitor owns (``monitor.disk``); the host CPU never reaches it.

Events and cycles
-----------------
Every time the monitor must step in, it counts the event under a stable *reason* name (such as
``"emulate:wrcr"``, ``"reflect:syscall"``, ``"shadow:hidden_fault"``, ``"hypercall:mmu_update"``)
and charges the cycles that event costs in the technique's cost table (:mod:`kernel_sim.costs`,
CPU-generation presets).  A run's simulated cycles are the guest's own work (the host CPU's
counted cycles for guest instructions, TLB misses and walks) plus the monitor's counted work, by
category: ``guest``, ``transitions`` (entering and leaving the monitor), ``emulation`` (what the
monitor does for each event), ``memory`` (shadow or nested paging work), ``devices``.  Never a
multiplier on native time.

The guest's view
----------------
Digests (:func:`kernel_sim.results.state_digest`, ``user_digest``) read a machine-like object:
``regs``, ``pc``, ``cpl``, ``architectural_state()``, ``guest_memory()``, ``guest_disk()``,
``console_bytes()``, ``user_pages()``.  The bare machine is one; :class:`GuestView` is the same
interface over a monitor's virtual CPU and the guest's slice of host memory, so "the technique
left the same state as native" is one comparison of two digests.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Dict, FrozenSet, Iterable, Mapping, Optional, Tuple

import numpy as np

from .. import isa
from ..costs import CPU_PRESETS, cost_array, technique_costs
from ..machine import Machine, architectural_state_of, check_int, user_pages_of
from ..results import TechniqueResult
from ..state import C_CPL, C_PC, EV_BLK_READS, EV_BLK_WRITES

#: Guest machine defaults (the course's guest OS is built for these).
GUEST_LEVELS = 2
GUEST_TLB = 64
DEFAULT_BUDGET = 20_000_000
#: Size of the monitor's own region below the guest's RAM (shadow tables, translation cache).
MONITOR_BYTES = 2 << 20

CATEGORIES = ("guest", "transitions", "emulation", "memory", "devices")


class MonitorError(RuntimeError):
    """A combination the monitor cannot run, or a guest it cannot continue (clear message)."""


def check_settings(*settings) -> None:
    """Each ``(name, value, lo, hi)`` must be an integer in ``[lo, hi]``: a monitor's numeric
    knobs, refused with a ValueError that names the knob and its range."""
    for name, value, lo, hi in settings:
        try:
            check_int(name, value, lo, hi)
        except TypeError as exc:
            raise ValueError(str(exc)) from None


@dataclass(frozen=True)
class ProgramImage:
    """A guest image made from one assembled program (tests and experiments).

    The course's guest OS images (:func:`kernel_sim.guest.build_guest`) have the same fields.
    """

    ram: np.ndarray          # uint32 words: initial guest-physical memory
    disk: np.ndarray         # uint32 words: the disk (len = disk_sectors * 128)
    entry: int
    ram_size: int
    disk_sectors: int = 0
    paravirt: bool = False
    workload: str = "program"
    count: int = 0

    @classmethod
    def from_program(cls, program, ram_size: int = 1 << 20, disk_sectors: int = 0,
                     disk: Optional[np.ndarray] = None, paravirt: bool = False
                     ) -> "ProgramImage":
        ram = np.zeros(ram_size // 4, dtype=np.uint32)
        for address, words in program.segments:
            end = address + 4 * len(words)
            if end > ram_size:
                raise ValueError(f"segment 0x{address:x}..0x{end:x} does not fit in the guest's "
                                 f"{ram_size} bytes of RAM")
            ram[address // 4:end // 4] = words
        d = np.zeros(disk_sectors * 128, dtype=np.uint32)
        if disk is not None:
            d[:len(disk)] = disk
        return cls(ram=ram, disk=d, entry=program.entry, ram_size=ram_size,
                   disk_sectors=disk_sectors, paravirt=bool(paravirt))


@dataclass(frozen=True)
class Allocation:
    """The host-physical memory a monitor may use in a host machine it is given.

    ``[monitor_base, monitor_base + monitor_size)`` is the monitor's own region (shadow or
    nested tables, translation cache, VMCS, boot page tables: whatever the technique keeps in
    "hardware" memory); ``[guest_base, guest_base + guest_size)`` holds the guest's RAM
    (``guest_size`` = the image's RAM).  Both are whole pages and must not overlap.  A platform
    that runs several domains on one host gives each monitor its own allocation::

        host = Machine(memory_size=16 << 20, paging_levels=2, tlb_size=64)
        mon = TrapEmulate(image, host=host,
                          allocation=Allocation(monitor_base=8 << 20, guest_base=4 << 20,
                                                guest_size=image.ram_size))

    The monitor touches nothing else of the host's memory (the containment tests check it).
    Without one a monitor builds its own host: its region at 0, the guest's RAM right after it
    (:meth:`default`), then a guard region that belongs to nobody.
    """

    monitor_base: int
    guest_base: int
    guest_size: int
    monitor_size: int = MONITOR_BYTES

    @classmethod
    def default(cls, guest_size: int) -> "Allocation":
        """The placement of a monitor that builds its own host: region at 0, guest after it."""
        return cls(monitor_base=0, guest_base=MONITOR_BYTES, guest_size=guest_size)

    @property
    def monitor_top(self) -> int:
        """The end of the monitor's region (techniques put fixed pages just below it)."""
        return self.monitor_base + self.monitor_size

    @property
    def guest_top(self) -> int:
        return self.guest_base + self.guest_size

    def problem(self, host_size: int) -> Optional[str]:
        """Why this allocation cannot be used in a host of ``host_size`` bytes (None: it can)."""
        for name in ("monitor_base", "guest_base", "guest_size", "monitor_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                return f"allocation {name} must be an integer, got {value!r}"
            if value < 0 or value % isa.PAGE_SIZE:
                return (f"allocation {name} must be a multiple of {isa.PAGE_SIZE} "
                        f"(whole pages), got {value:#x}")
        if self.guest_size == 0 or self.monitor_size == 0:
            return "an allocation needs a monitor region and guest RAM of at least one page"
        if self.monitor_base < self.guest_top and self.guest_base < self.monitor_top:
            return (f"the monitor's region 0x{self.monitor_base:x}..0x{self.monitor_top:x} "
                    f"overlaps the guest's RAM 0x{self.guest_base:x}..0x{self.guest_top:x}")
        if max(self.monitor_top, self.guest_top) > host_size:
            return (f"the allocation reaches 0x{max(self.monitor_top, self.guest_top):x}, "
                    f"beyond the host's {host_size:#x} bytes of memory")
        return None


@dataclass(frozen=True)
class Layout:
    """Where the guest's RAM and the monitor's region sit in host-physical memory."""

    guest_base: int
    guest_size: int
    host_size: int
    monitor_base: int = 0
    monitor_size: int = MONITOR_BYTES

    @property
    def monitor_top(self) -> int:
        """The end of the monitor's region (techniques put fixed pages just below it)."""
        return self.monitor_base + self.monitor_size

    def hpa(self, gpa: int) -> int:
        """Host-physical address of guest-physical ``gpa`` (which must be inside the guest)."""
        if not 0 <= gpa < self.guest_size:
            raise MonitorError(f"guest-physical address 0x{gpa:x} is outside the guest's "
                               f"{self.guest_size} bytes")
        return self.guest_base + gpa


def native_machine(image, *, levels: int = GUEST_LEVELS, tlb_size: int = GUEST_TLB,
                   strict: bool = False, costs: Optional[Dict[str, int]] = None,
                   console_size: int = 1 << 16, trace_size: int = 4096) -> Machine:
    """A bare machine with exactly the guest's RAM and disk, ready to boot the image."""
    m = Machine(memory_size=image.ram_size, paging_levels=levels, tlb_size=tlb_size,
                strict=strict, ring=0, costs=costs, disk_sectors=image.disk_sectors,
                console_size=console_size, trace_size=trace_size)
    m.mem[:image.ram_size // 4] = image.ram
    m.disk[:] = image.disk
    m.reset()
    m.ctrl[C_PC] = image.entry
    return m


class GuestView:
    """The guest's architectural state as the guest sees it (duck-types :class:`Machine`).

    ``vcpu`` is an int64 array in the ``ctrl`` layout holding the *virtual* CPU's control state
    (pc, cpl, if, control registers, ticks, timer, block-device registers); ``regs`` the guest's
    general registers; ``memory`` the guest-physical RAM (a view of host memory at the guest's
    base); ``disk`` the virtual disk; ``console`` the bytes the guest printed.
    ``page_table_frame(pte_frame)`` turns a frame number found in a guest page table into a
    guest-physical address (identity for every technique but paravirt, whose tables hold machine
    frames).
    """

    def __init__(self, regs: np.ndarray, vcpu: np.ndarray, memory: np.ndarray, disk: np.ndarray,
                 console: bytes, levels: int, frame_to_gpa=None):
        self.regs = regs
        self.ctrl = vcpu
        self.memory = memory
        self.disk = disk
        self._console = console
        self.paging_levels = levels
        self.memory_size = 4 * len(memory)
        self._frame_to_gpa = frame_to_gpa or (lambda frame: frame)

    @property
    def pc(self) -> int:
        return int(self.ctrl[C_PC])

    @property
    def cpl(self) -> int:
        return int(self.ctrl[C_CPL])

    def guest_memory(self) -> np.ndarray:
        return self.memory

    def guest_disk(self) -> np.ndarray:
        return self.disk

    def console_bytes(self) -> bytes:
        return self._console

    def architectural_state(self) -> Dict[str, int]:
        return architectural_state_of(self.ctrl)

    def user_pages(self) -> Iterable:
        """``(virtual address, words)`` for every page ring 3 can read in the guest's tables."""
        return user_pages_of(self.memory, self.ctrl, self.paging_levels, self._frame_to_gpa)


#: The guest builds a technique can ask for (:func:`kernel_sim.guest.build_guest`).
GUEST_BUILDS = ("plain", "paravirt")
#: How a technique relates to the strict ISA (the machine option that makes the sensitive but
#: unprivileged instructions trap outside ring 0).
STRICT_POLICIES = ("ignored", "choice")


@dataclass(frozen=True)
class Needs:
    """What a technique needs from the rest of the system, declared once on its class.

    compare, the CLI, the experiments layer, the widgets and the exercises ask a monitor class
    for these (``monitor_class(name).needs``, :meth:`Monitor.refusal`,
    :meth:`Monitor.guest_options`, :meth:`Monitor.strict_for`) instead of testing technique
    names, so a new technique is one new module.

    ``guest_build``
        the build of the guest OS it runs: ``"plain"`` (the unmodified kernel) or
        ``"paravirt"`` (assembled with ``PARAVIRT=1``: hypercalls instead of privileged
        instructions).
    ``guest_knobs``
        settings that belong to the guest *image*, not to the monitor (paravirt's ``batch``:
        page-table updates per ``mmu_update`` hypercall, read by the PV kernel at boot).
    ``cpu_features``
        features the CPU preset must have (``"ept"``: nested paging), keys of
        :data:`kernel_sim.costs.CPU_PRESETS`; a preset without one is refused with a message.
    ``strict_isa``
        ``"choice"``: whether the sensitive-but-unprivileged instructions trap decides whether
        the technique is equivalent to native (trap-and-emulate: Popek & Goldberg), so it is
        the learner's choice; ``"ignored"``: the technique never runs the guest kernel's
        sensitive instructions deprivileged and unwatched, so it runs on the plain ISA.
    ``same_kernel_as_native``
        False when the guest kernel binary differs from native's (paravirt): then only the
        user-visible state can be compared with native, not the whole guest-OS state digest.
    ``page_table_levels``, ``why_levels``
        the page-table levels (the ``levels`` setting) the technique can run, and why it
        cannot run the others (for the refusal's message).
    ``vm_exits``
        True when the guest runs under a VMCS (hardware assist): every monitor event is then a
        VM exit named by Intel's basic exit reason, and the monitor records an exit timeline.
    """

    guest_build: str = "plain"
    guest_knobs: Tuple[str, ...] = ()
    cpu_features: FrozenSet[str] = frozenset()
    strict_isa: str = "ignored"
    same_kernel_as_native: bool = True
    page_table_levels: Tuple[int, ...] = (1, 2, 3, 4)
    why_levels: str = ""
    vm_exits: bool = False

    def __post_init__(self):
        if self.guest_build not in GUEST_BUILDS:
            raise ValueError(f"guest_build must be one of {GUEST_BUILDS}, got {self.guest_build!r}")
        if self.strict_isa not in STRICT_POLICIES:
            raise ValueError(f"strict_isa must be one of {STRICT_POLICIES}, "
                             f"got {self.strict_isa!r}")


#: How each guest build is described in a refusal (see :meth:`Monitor.refusal`).
_BUILD_RUNS = {"plain": "an unmodified kernel (the plain build)",
               "paravirt": "a kernel built with PARAVIRT=1 (build_guest(..., paravirt=True))"}
_BUILD_IS = {"plain": "is a plain build", "paravirt": "was built with PARAVIRT=1"}


def image_build(image) -> str:
    """The guest build of an image: ``"paravirt"`` if it was assembled with PARAVIRT=1."""
    return "paravirt" if getattr(image, "paravirt", False) else "plain"


class Monitor:
    """Base class of the techniques: settings, the cost table, event counting, results.

    Parameters
    ----------
    image:
        the guest (a :class:`ProgramImage` or a guest-OS image from :mod:`kernel_sim.guest`).
        Its build must be the one the technique declares (``needs.guest_build``).
    cpu:
        cost preset: ``"first-vtx"``, ``"nehalem"`` or ``"modern"`` (:mod:`kernel_sim.costs`).
    strict:
        run on a machine whose sensitive-but-unprivileged instructions trap outside ring 0.
    levels, tlb_size:
        the guest machine's page-table levels and TLB size (the host uses the same).
    costs:
        overrides of single cost entries (``{"trap": 80}``).
    host, allocation:
        run in an existing host :class:`~kernel_sim.machine.Machine`, using only the memory
        of ``allocation`` (an :class:`Allocation`), instead of building a host of its own --
        how several domains share one host.  Give both or neither; techniques that do not put
        the guest in a host's memory (``places_guest_in_host = False``) refuse them.
    """

    name = "base"
    #: one line for tables and widgets
    description = ""
    #: what the technique needs (guest build, CPU features, ISA strictness): see :class:`Needs`
    needs = Needs()
    #: the technique puts the guest's RAM into a host machine's memory, next to its own region,
    #: so it can be given a host and an :class:`Allocation` (native and emulation cannot)
    places_guest_in_host = True
    #: What each of the monitor's event reasons is, as a kind of :data:`~kernel_sim.results.
    #: HOP_KINDS` (``"trap"``, ``"callout"``, ``"hypercall"``, ``"exit"``...): reason -> kind,
    #: where a key ending in ``":"`` stands for every reason with that prefix and a value of
    #: None says "not a step of its own" (work inside another event, bookkeeping).  Declare a
    #: kind only for what the guest-visible counters do not count already: a trap or interrupt
    #: *reflected* into the guest is counted where the guest sees it, so ``reflect:*`` is None,
    #: while a trap the monitor absorbs (a privileged instruction it emulates, a hidden page
    #: fault) is a ``"trap"``.  Read through :meth:`event_kind`.
    event_kinds: Mapping[str, Optional[str]] = {}

    # ---- what the rest of the system asks a technique, before building anything ----------
    @classmethod
    def refusal(cls, cpu: str = "modern", *, image=None, **settings) -> Optional[str]:
        """Why this technique cannot run on CPU preset ``cpu`` with these ``settings`` (and,
        if given, this ``image``), as a message for a learner -- or None when it can.

        The constructor raises :class:`MonitorError` with the same message, so a widget can
        grey out a choice and the CLI can refuse it without building a guest.  The base class
        checks what :class:`Needs` declares (CPU features, the guest build); a technique adds
        its own combinations (page-table levels, VMCS controls...) by overriding this and
        calling ``super()``.  Bad *values* (an unknown preset, a negative size) are a
        ValueError, not a refusal.
        """
        technique_costs(cpu)            # an unknown preset is bad input: ValueError, not a refusal
        preset = CPU_PRESETS[cpu]
        for feature in sorted(cls.needs.cpu_features):
            if not preset.get(feature, False):
                return cls._missing_feature_message(cpu, feature)
        if image is not None and image_build(image) != cls.needs.guest_build:
            return cls._wrong_build_message(image_build(image))
        levels = settings.get("levels")
        if levels in (1, 2, 3, 4) and levels not in cls.needs.page_table_levels:
            allowed = " or ".join(f"{n}-level" for n in cls.needs.page_table_levels)
            return (f"{cls.name} runs with {allowed} page tables only"
                    f"{': ' + cls.needs.why_levels if cls.needs.why_levels else ''}; "
                    f"levels={levels!r} is not supported")
        return None

    @classmethod
    def _missing_feature_message(cls, cpu: str, feature: str) -> str:
        return (f"{cls.name} needs {feature.upper()}, which the {cpu} CPU preset "
                f"({CPU_PRESETS[cpu]['examples']}) does not have")

    @classmethod
    def _wrong_build_message(cls, built: str) -> str:
        from . import available_techniques, monitor_class    # the registry imports this module
        others = [t for t in available_techniques()
                  if monitor_class(t).needs.guest_build == built]
        return (f"{cls.name} runs {_BUILD_RUNS[cls.needs.guest_build]}; this image "
                f"{_BUILD_IS[built]}: run it with {', '.join(others) or 'another technique'}")

    @classmethod
    def event_kind(cls, reason: str) -> Optional[str]:
        """The kind (one of :data:`~kernel_sim.results.HOP_KINDS`) of the monitor event named
        ``reason``, or None when it is not a step of its own: :attr:`event_kinds` looked up by
        the whole reason, then by its prefix up to the first ``":"``.  The results contract
        counts events by it (``exits``, ``hypercalls``, ``callouts``, ``traps``...)."""
        kinds = cls.event_kinds
        if reason in kinds:
            return kinds[reason]
        head, colon, _ = reason.partition(":")
        return kinds.get(head + colon) if colon else None

    @classmethod
    def guest_options(cls, **guest_knobs) -> Dict[str, object]:
        """Keyword arguments for :func:`kernel_sim.guest.build_guest` that give this technique
        the guest build it runs; ``guest_knobs`` (such as paravirt's ``batch``) are passed on
        when the technique declares them and refused with a ValueError otherwise."""
        extra = sorted(k for k, v in guest_knobs.items()
                       if v is not None and k not in cls.needs.guest_knobs)
        if extra:
            raise ValueError(f"{', '.join(extra)} applies only to techniques whose guest image "
                             f"takes it, not to {cls.name}")
        options: Dict[str, object] = {"paravirt": cls.needs.guest_build == "paravirt"}
        options.update({k: v for k, v in guest_knobs.items() if v is not None})
        return options

    @classmethod
    def strict_for(cls, requested: bool) -> bool:
        """The ISA strictness this technique runs with when a learner asks for ``requested``."""
        return bool(requested) if cls.needs.strict_isa == "choice" else False

    def __init__(self, image, *, cpu: str = "modern", strict: bool = False,
                 levels: int = GUEST_LEVELS, tlb_size: int = GUEST_TLB,
                 costs: Optional[Dict[str, int]] = None, trace_size: int = 4096,
                 host: Optional[Machine] = None, allocation: Optional[Allocation] = None):
        self.image = image
        self.cpu = cpu
        self.strict = bool(strict)
        self.levels = levels
        self.tlb_size = tlb_size
        self.trace_size = trace_size
        self.cost = technique_costs(cpu, costs)
        refused = self.refusal(cpu, image=image, levels=levels)
        if refused:
            raise MonitorError(refused)
        if (host is None) != (allocation is None):
            raise MonitorError("give a monitor both a host machine and an allocation in it "
                               "(host=..., allocation=Allocation(...)), or neither")
        if host is not None and not self.places_guest_in_host:
            raise MonitorError(f"{self.name} does not put the guest into a host machine's "
                               f"memory, so it cannot be given a host and an allocation")
        self.given_host, self.allocation = host, allocation
        self.events: Counter = Counter()
        self.event_cycles: Counter = Counter()
        self.cycles: Dict[str, int] = {c: 0 for c in CATEGORIES}
        #: how the run ended (a ``STOP_NAMES`` value) and the trap that ended it, if any
        self.stop, self.stop_vector, self.stop_error = "none", -1, 0
        #: ``(guest ticks, exit name, guest ring, guest pc)`` of the first exits (hardware assist)
        self.timeline: list = []
        self.ran = False

    # ---- bookkeeping used by the techniques -----------------------------------------------------
    def count(self, reason: str, cost_name: Optional[str] = None, n: int = 1,
              category: str = "emulation", cycles: Optional[int] = None) -> None:
        """Count ``n`` events under ``reason`` and charge their cycles to ``category``.

        The cycles are ``n * cost[cost_name]`` unless ``cycles`` is given explicitly.
        """
        self.events[reason] += n
        spent = cycles if cycles is not None else (n * self.cost[cost_name] if cost_name else 0)
        self.event_cycles[reason] += spent
        self.cycles[category] += spent

    def emulate_charged(self, vcpu, reason: str, word: int):
        """``vcpu.emulate(word)``; an IN or OUT also charges the device model (``device_io``) and
        every disk sector it moved (``blk_sector``) to ``reason``, category ``devices``.

        Returns what :meth:`~kernel_sim.monitors.vcpu.VirtualCPU.emulate` returns.
        """
        if (word >> 24) & 0xFF not in (isa.OP_IN, isa.OP_OUT):
            return vcpu.emulate(word)
        self.count(reason, n=0, cycles=self.cost["device_io"], category="devices")
        counters = vcpu.counters
        before = counters[EV_BLK_READS] + counters[EV_BLK_WRITES]
        fault = vcpu.emulate(word)
        moved = int(counters[EV_BLK_READS] + counters[EV_BLK_WRITES] - before)
        if moved:
            self.count(reason, n=0, cycles=moved * self.cost["blk_sector"], category="devices")
        return fault

    def _place_guest(self, *, ring: int, guard_bytes: int,
                     costs: Optional[Dict[str, int]] = None, trace_size: int = 0) -> Machine:
        """Get the host machine (``self.host``) ready and put the guest in it.

        Without a given host, build one: the monitor's region (``MONITOR_BYTES``) at 0, then
        the guest's RAM, then ``guard_bytes`` that belong to nobody.  With one (``host=``,
        ``allocation=``), use the given host and zero the two regions of the allocation,
        touching nothing else of its memory.  Either way the host CPU is reset to run the guest
        (starting ring ``ring``, this monitor's ``strict`` and cost overrides ``costs``), the
        guest's RAM is loaded from the image, and the guest's disk is :attr:`disk`, a copy of
        the image's disk that the monitor owns (the host CPU never reaches it: every device
        access of the guest goes through the monitor).  Sets ``self.layout``.
        """
        image = self.image
        ram = int(image.ram_size)
        if self.levels == 1 and ram > 1024 * isa.PAGE_SIZE:
            raise MonitorError("with 1-level page tables the host can map only 4 MiB, so the "
                               "guest's RAM must not be larger")
        a = self.allocation or Allocation.default(ram)
        h = self.given_host
        if h is None:
            h = Machine(memory_size=a.guest_top + guard_bytes, paging_levels=self.levels,
                        tlb_size=self.tlb_size, strict=self.strict, ring=ring, costs=costs,
                        console_size=0, trace_size=trace_size)
        else:
            self._check_host(h, a, ram)
            h.ring, h.strict, h.costs = ring, self.strict, cost_array(costs)
            h.reset()
            h.mem[a.monitor_base >> 2:a.monitor_top >> 2] = 0
        self.host = h
        self.layout = Layout(guest_base=a.guest_base, guest_size=ram, host_size=h.memory_size,
                             monitor_base=a.monitor_base, monitor_size=a.monitor_size)
        h.mem[a.guest_base >> 2:a.guest_top >> 2] = np.asarray(image.ram)[:ram >> 2]
        #: the guest's virtual disk (words), owned by the monitor
        self.disk = np.array(image.disk, dtype=np.uint32)
        h.guest_base, h.guest_size = a.guest_base, ram
        return h

    def _check_host(self, host: Machine, a: Allocation, ram: int) -> None:
        """A given host and allocation must fit the guest and this monitor's settings."""
        problem = a.problem(host.memory_size)
        if problem is None and a.guest_size != ram:
            problem = (f"the allocation gives the guest {a.guest_size:#x} bytes, but the "
                       f"image's RAM is {ram:#x} bytes")
        if problem is None and host.paging_levels != self.levels:
            problem = (f"the host walks {host.paging_levels}-level page tables but the monitor "
                       f"was asked for levels={self.levels}")
        if problem is None and host.tlb_size != self.tlb_size:
            problem = (f"the host's TLB has {host.tlb_size} entries but the monitor was asked "
                       f"for tlb_size={self.tlb_size}")
        if problem:
            raise MonitorError(problem)

    # ---- the interface ----------------------------------------------------------------------
    def run(self, count: int = DEFAULT_BUDGET) -> TechniqueResult:
        """Boot the guest and run it for at most ``count`` guest instructions."""
        if self.ran:
            raise MonitorError("a monitor runs its guest once; make a new one to run again")
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
            raise ValueError(f"count must be a positive integer, got {count!r}")
        self.ran = True
        self._boot()
        self._run(int(count))
        return self.result()

    def _boot(self) -> None:
        raise NotImplementedError

    def _run(self, budget: int) -> None:
        raise NotImplementedError

    def view(self):
        """The guest's state as the guest sees it (a Machine or a :class:`GuestView`)."""
        raise NotImplementedError

    # ---- results: one door for every technique ----------------------------------------------
    def result(self) -> TechniqueResult:
        """What the run did, as a :class:`~kernel_sim.results.TechniqueResult`.

        Every technique's result is made here, from three answers the technique gives:
        :meth:`guest_counters` (what a bare machine would have counted for this guest),
        :meth:`cpu_cycles` (the cycles the CPU counted itself, by category) and :meth:`notes`;
        plus what the monitor counted with :meth:`count` (events, their cycles, cycles by
        category) and the guest's state read through :meth:`view`.  So a count or a cycle
        category means the same in every technique's result.
        """
        self._settle()
        cycles = dict(self.cycles)
        for category, spent in self.cpu_cycles().items():
            cycles[category] += spent
        return TechniqueResult.from_view(
            self.view(), self.guest_counters(), stop=self.stop, technique=self.name,
            cpu=self.cpu, strict=self.strict,
            monitor_events={k: n for k, n in self.events.items() if n},
            event_cycles={k: c for k, c in self.event_cycles.items() if self.events.get(k)},
            cycles_by_category=cycles, stop_vector=self.stop_vector,
            stop_error=self.stop_error, notes=self.notes(), exit_timeline=self.timeline,
            vm_exits=self.needs.vm_exits)

    def _settle(self) -> None:
        """Before the books close: charge work still owed (a run can stop inside an exit)."""

    def guest_counters(self) -> np.ndarray:
        """The guest's events in the ``counters`` layout of :mod:`kernel_sim.state`: what the
        bare machine would have counted running this guest (instructions retired by the CPU
        and by the monitor, traps delivered to the guest, ...), never the monitor's own."""
        raise NotImplementedError

    def cpu_cycles(self) -> Dict[str, int]:
        """Cycles the CPU counted itself (not through :meth:`count`), by category: usually
        ``{"guest": ...}``, the guest's instructions, TLB misses, walks and idle ticks."""
        return {}

    def notes(self) -> list:
        """Sentences for the result: what the learner should know about this run."""
        return []
