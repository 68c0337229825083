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
        def _boot(self): ...            # place the guest, build the monitor's own state
        def _run(self, budget): ...     # run until the guest halts or the budget is spent
        def view(self): ...             # the guest's state as the guest would see it

    result = TrapEmulate(image, cpu="modern", strict=True).run(count=2_000_000)

Host memory
-----------
The host machine's physical memory holds the monitor's own state *and* the guest's RAM, which is
not at host-physical address 0: guest-physical address ``g`` lives at host-physical
``layout.guest_base + g``.  So guest-physical is not host-physical, and a monitor that forgot to
translate (or a guest that escaped) would read or write the wrong memory, which the containment
tests would see.  The monitor's region ``[0, guest_base)`` holds shadow page tables, translation
caches and anything else the technique keeps in "hardware" memory.  The guest's disk is the
host's disk (a virtual disk image the monitor owns).

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
from typing import Dict, FrozenSet, Iterable, Optional, Tuple

import numpy as np

from .. import isa
from ..costs import CPU_PRESETS, technique_costs
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
class Layout:
    """Where the guest's RAM sits in host-physical memory."""

    guest_base: int
    guest_size: int
    host_size: int

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
    """

    guest_build: str = "plain"
    guest_knobs: Tuple[str, ...] = ()
    cpu_features: FrozenSet[str] = frozenset()
    strict_isa: str = "ignored"
    same_kernel_as_native: bool = True

    def __post_init__(self):
        if self.guest_build not in GUEST_BUILDS:
            raise ValueError(f"guest_build must be one of {GUEST_BUILDS}, got {self.guest_build!r}")
        if self.strict_isa not in STRICT_POLICIES:
            raise ValueError(f"strict_isa must be one of {STRICT_POLICIES}, "
                             f"got {self.strict_isa!r}")


class Monitor:
    """Base class of the techniques: settings, the cost table, event counting, results.

    Parameters
    ----------
    image:
        the guest (a :class:`ProgramImage` or a guest-OS image from :mod:`kernel_sim.guest`).
    cpu:
        cost preset: ``"first-vtx"``, ``"nehalem"`` or ``"modern"`` (:mod:`kernel_sim.costs`).
    strict:
        run on a machine whose sensitive-but-unprivileged instructions trap outside ring 0.
    levels, tlb_size:
        the guest machine's page-table levels and TLB size (the host uses the same).
    costs:
        overrides of single cost entries (``{"trap": 80}``).
    """

    name = "base"
    #: one line for tables and widgets
    description = ""
    #: what the technique needs (guest build, CPU features, ISA strictness): see :class:`Needs`
    needs = Needs()

    # ---- what the rest of the system asks a technique, before building anything ----------
    @classmethod
    def refusal(cls, cpu: str = "modern", **settings) -> Optional[str]:
        """Why this technique cannot run on CPU preset ``cpu`` with these ``settings``, as a
        message for a learner -- or None when it can.  The constructor raises
        :class:`MonitorError` with the same message, so a widget can grey out a choice and the
        CLI can refuse it without building a guest."""
        technique_costs(cpu)            # an unknown preset is bad input: ValueError, not a refusal
        preset = CPU_PRESETS[cpu]
        for feature in sorted(cls.needs.cpu_features):
            if not preset.get(feature, False):
                return cls._missing_feature_message(cpu, feature)
        return None

    @classmethod
    def _missing_feature_message(cls, cpu: str, feature: str) -> str:
        return (f"{cls.name} needs {feature.upper()}, which the {cpu} CPU preset "
                f"({CPU_PRESETS[cpu]['examples']}) does not have")

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
                 costs: Optional[Dict[str, int]] = None, trace_size: int = 4096):
        self.image = image
        self.cpu = cpu
        self.strict = bool(strict)
        self.levels = levels
        self.tlb_size = tlb_size
        self.trace_size = trace_size
        self.cost = technique_costs(cpu, costs)
        self.events: Counter = Counter()
        self.event_cycles: Counter = Counter()
        self.cycles: Dict[str, int] = {c: 0 for c in CATEGORIES}
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
        """Build the host machine (``self.host``) and put the guest in it: the monitor's region
        (``MONITOR_BYTES``), then the guest's RAM loaded from the image, then ``guard_bytes``
        that belong to nobody; the guest's disk becomes the host's.  Sets ``self.layout``."""
        image = self.image
        ram = int(image.ram_size)
        if self.levels == 1 and ram > 1024 * isa.PAGE_SIZE:
            raise MonitorError("with 1-level page tables the host can map only 4 MiB, so the "
                               "guest's RAM must not be larger")
        base = MONITOR_BYTES
        self.layout = Layout(guest_base=base, guest_size=ram,
                             host_size=base + ram + guard_bytes)
        h = self.host = Machine(memory_size=self.layout.host_size, paging_levels=self.levels,
                                tlb_size=self.tlb_size, strict=self.strict, ring=ring,
                                costs=costs, console_size=0, trace_size=trace_size,
                                disk_sectors=image.disk_sectors)
        h.mem[base >> 2:(base + ram) >> 2] = np.asarray(image.ram)[:ram >> 2]
        h.disk[:] = image.disk
        h.guest_base, h.guest_size = base, ram
        return h

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

    def result(self) -> TechniqueResult:
        raise NotImplementedError
