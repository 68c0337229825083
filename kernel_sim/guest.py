"""The guest: a small operating system and its workloads, packed into a RAM image and a disk.

Every virtualization technique in the course runs the *same* guest, so their costs can be
compared: :func:`build_guest` assembles the kernel (``guests/kernel.s``, plain or with
``PARAVIRT=1``) and the user programs (``guests/user/*.s``) and returns a :class:`GuestImage`:
the initial guest-physical memory and the disk.  :meth:`GuestImage.native_machine` loads it on
a bare :class:`~kernel_sim.machine.Machine` (the baseline); monitors load the same arrays into
their virtual machines.

>>> from kernel_sim.guest import build_guest
>>> image = build_guest("syscall", count=100)
>>> result = image.native_machine().run(count=10_000_000)
>>> result.stop, result.traps["syscall"]          # 100 getpid calls + 1 exit
('halt', 101)

Guest-physical memory map (``GUEST_RAM`` = 1 MiB)
-------------------------------------------------
=================  ==================================================================
0x00000-0x00FFF    boot information page (below), written by this builder
0x01000-           the kernel (entry label ``boot``): code, data, the trap-vector table,
                   the process table, the frame free list, two page-aligned kernel page
                   tables, one page reserved for the paravirtual shared info page, the
                   kernel stack.  Its symbol ``kernel_end`` is the end of it.
kernel_end-RAM     free frames: page tables and user pages, allocated at run time
=================  ==================================================================

The kernel identity-maps all guest-physical memory in every address space with supervisor-only
entries (page-directory entry 0 points at one shared kernel page table), so a kernel virtual
address *is* the guest-physical address.  User programs are assembled at origin
``USER_BASE`` = 0x00400000 (code and data), get one stack page below ``USER_STACK_TOP`` =
0x00800000, and a heap from ``HEAP_BASE`` = 0x10000000 to 0x103FFFFF that is paged in on
demand.  Virtual addresses at or above 0xFF000000 are reserved for monitors.

Boot information page
---------------------
Words 0..7 are written by this builder (magic, init's disk index, its loop count, the RAM size,
and for the PARAVIRT build the machine offset, the shared info page and the batch size); the
kernel writes words 16..19 when it shuts down (``DONE``, init's exit status, processes created,
processes killed).  The field list is :data:`kernel_sim.abi.BOOT_INFO`.

The disk
--------
``DISK_SECTORS`` sectors of 512 bytes (128 words).  Sector 0 is the directory: magic
``DISK_MAGIC`` ('KSDK'), the number of programs, the disk size in sectors, then one 4-word entry
per program: first sector, length in words, entry address, the first four characters of its
name (one byte each, low byte first).  Each program starts on a sector boundary.  The field list
is :data:`kernel_sim.abi.DISK`.

The ABI: system calls, hypercalls, shared info page
---------------------------------------------------
User programs make system calls (``syscall``, number in r0, arguments in r1..r3, result in r0);
the PARAVIRT kernel makes hypercalls (``vmcall N``) and shares a page with its monitor.  Their
numbers and meanings are :mod:`kernel_sim.abi` (``SYSCALL_TABLE``, ``HYPERCALL_TABLE``,
``SHARED_INFO``); the assembly sources get them from the generated include ``guests/abi.s``.
A process killed by a fault exits with status 128 + the trap vector (134 #UD, 141 #GP,
142 #PF), as a Unix shell reports 128 + the signal number.  In the PARAVIRT build page-table
entries hold machine addresses, frames used as page tables are mapped read-only in the kernel's
identity map, and the kernel runs in ring 1.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path

import numpy as np

from .abi import (BI_BATCH, BI_COUNT, BI_DONE, BI_INIT, BI_INIT_STATUS,  # noqa: F401
                  BI_KILLS, BI_MAGIC, BI_MOFF, BI_NPROCS, BI_NPROG, BI_RAM, BI_SHINFO,
                  BOOT_MAGIC, DE_ENTRY, DE_NAME, DE_SECTOR, DE_WORDS, DEFAULT_BATCH,
                  DIR_COUNT, DIR_ENTRIES, DIR_ENTRY_WORDS, DIR_MAGIC, DIR_SECTORS, DISK_MAGIC,
                  DONE_MAGIC, HYPERCALLS, KERNEL_BASE, MAX_BATCH, MAX_PROG_WORDS,
                  SECTOR_WORDS, SYSCALL_NUMBERS, USER_BASE)
from .asm import Program, assemble
from .machine import check_int

__all__ = ["WORKLOADS", "Workload", "GuestImage", "build_guest", "build_custom_guest",
           "assemble_user", "run_native", "GUEST_RAM", "DISK_SECTORS", "PROGRAMS",
           "SYSCALL_NUMBERS", "HYPERCALLS", "MAX_COUNT"]

GUEST_DIR = Path(__file__).resolve().parent / "guests"
USER_DIR = GUEST_DIR / "user"

GUEST_RAM = 1 << 20             #: guest-physical memory of every guest, in bytes
DISK_SECTORS = 128              #: size of the guest's disk (64 KiB)
MAX_COUNT = 1_000_000           #: largest loop count build_guest accepts
MAX_PROGRAM_WORDS = MAX_PROG_WORDS   #: the kernel loads program images of at most 64 KiB

#: The programs on every guest disk, in directory order (their index is what spawn takes).
PROGRAMS: tuple[str, ...] = ("shell", "hello", "compute", "getpid", "sleep", "syscall", "io",
                             "pgfault", "ptemod", "ctxswitch", "callret", "divzero", "forkwait",
                             "preempt")

@dataclass(frozen=True)
class Workload:
    """One guest workload: the program init runs and what its loop does."""

    name: str
    description: str
    program: str            #: the user program started as init
    default_count: int      #: loop count when build_guest gets none
    operation: str          #: what ONE iteration of the loop is
    unit: str = "iteration"  #: the operation's short name, for tables: "system call", ...
    #: the measured region (:func:`kernel_sim.experiments.measure`): ``"loop"`` -- iterations of
    #: the steady-state loop, after a warm-up; ``"whole"`` -- the whole run is one operation
    region: str = "loop"


WORKLOADS: dict[str, Workload] = {w.name: w for w in (
    Workload("compute", "arithmetic in user mode, no kernel involvement", "compute", 20_000,
             "one multiply-add step (4 user instructions)", unit="multiply-add step"),
    Workload("syscall", "a loop of getpid system calls", "syscall", 500,
             "one getpid system call", unit="system call"),
    Workload("io", "a loop of disk reads through the kernel's block driver", "io", 300,
             "one blkread system call: 3 OUTs and 1 IN to the block device, one sector DMA",
             unit="disk read"),
    Workload("pgfault", "touch a fresh heap page, then unmap it", "pgfault", 300,
             "one demand page fault (zeroed frame mapped) plus one unmap system call",
             unit="page fault"),
    Workload("ptemod", "map and unmap a page", "ptemod", 300,
             "one map and one unmap system call: a live PTE written, cleared, INVLPG",
             unit="map/unmap pair"),
    Workload("ctxswitch", "two processes yield to each other", "ctxswitch", 300,
             "one yield per process: two context switches (address-space switches)",
             unit="yield pair"),
    Workload("callret", "call/return pairs inside the guest kernel", "callret", 1000,
             "one CALL and one RET in kernel code", unit="call/return pair"),
    Workload("divzero", "divide by zero; the kernel's #DE handler skips the instruction",
             "divzero", 300, "one #DE trap, handled and resumed", unit="divide error"),
    Workload("forkwait", "fork a child that exits at once, wait for it", "forkwait", 100,
             "one fork (address-space copy), one exit, one wait", unit="fork/wait"),
    Workload("preempt", "two CPU-bound processes share the CPU through timer preemption",
             "preempt", 20, "one chunk of about 6000 user instructions and a 1-letter write "
                            "in each of the two processes", unit="iteration"),
    Workload("boot", "boot to a shell that runs hello, compute, getpid and sleep",
             "shell", 1000, "one step of the compute program the shell runs",
             unit="boot", region="whole"),
)}


# ---- assembling (cached: the sources do not change while Python runs) ----------------------
def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


@lru_cache(maxsize=2)
def kernel_program(paravirt: bool = False) -> Program:
    """The assembled kernel, plain or with ``PARAVIRT=1``.

    ``guests/kernel.s`` is the top file: it includes the generated ABI constants
    (``guests/abi.s``) and the kernel's parts, ``guests/kernel/*.s``, in order.
    """
    prog = assemble(_read(GUEST_DIR / "kernel.s"), filename="kernel.s",
                    defines={"PARAVIRT": int(bool(paravirt))}, base_dir=GUEST_DIR)
    end = prog.symbols["kernel_end"]
    if prog.symbols["boot"] != KERNEL_BASE or end > GUEST_RAM // 2:
        raise RuntimeError(f"kernel.s: unexpected layout (boot at 0x{prog.symbols['boot']:x}, "
                           f"end at 0x{end:x})")
    return prog


def _program_defines() -> dict[str, int]:
    """``PROG_<NAME>`` = disk index of every program (and ``PROG_CUSTOM`` for a custom one)."""
    defines = {f"PROG_{p.upper()}": i for i, p in enumerate(PROGRAMS)}
    defines["PROG_CUSTOM"] = len(PROGRAMS)
    return defines


def assemble_user(source: str, filename: str = "custom.s") -> Program:
    """Assemble a user program for the guest.

    The source is assembled as if it were a file in ``guests/user/``, so ``.include`` paths are
    relative to that directory, and as if it ended with ``.include "_lib.s"``: the user library
    (the ABI constants ``SYS_*``, ``HEAP_BASE`` ... from ``guests/abi.s`` and the routines
    ``lib_puts``, ``lib_putdec``, ``lib_exit``) follows the program's own code; a program that
    includes ``_lib.s`` itself gets it once.  The origin is ``USER_BASE``, ``PROG_<NAME>`` is the
    disk index of every program, and execution starts at the label ``start``.
    """
    if not isinstance(source, str):
        raise TypeError(f"the program source must be a str, not {type(source).__name__}")
    text = source + '\n.include "_lib.s"\n'
    prog = assemble(text, filename=filename, defines=_program_defines(), origin=USER_BASE,
                    base_dir=USER_DIR)
    if len(prog.segments) != 1 or prog.segments[0][0] != USER_BASE:
        raise ValueError(f"{filename}: a user program must be one block of words at "
                         f"0x{USER_BASE:x} (no .org)")
    if len(prog.segments[0][1]) > MAX_PROGRAM_WORDS:
        raise ValueError(f"{filename}: the program has {len(prog.segments[0][1])} words; the "
                         f"kernel loads at most {MAX_PROGRAM_WORDS}")
    return prog


@cache
def user_program(name: str) -> Program:
    """The assembled user program ``guests/user/<name>.s`` (it includes ``_lib.s``)."""
    if name not in PROGRAMS:
        raise ValueError(f"unknown user program {name!r}; known: {', '.join(PROGRAMS)}")
    return assemble_user(_read(USER_DIR / f"{name}.s"), filename=f"{name}.s")


def _make_disk(programs) -> np.ndarray:
    """A disk with the directory in sector 0 and *programs* ((name, Program) pairs) after it."""
    disk = np.zeros(DISK_SECTORS * SECTOR_WORDS, dtype=np.uint32)
    directory = disk[:SECTOR_WORDS]
    directory[DIR_MAGIC] = DISK_MAGIC
    directory[DIR_COUNT] = len(programs)
    directory[DIR_SECTORS] = DISK_SECTORS
    sector = 1
    for i, (name, prog) in enumerate(programs):
        words = prog.segments[0][1]
        nsect = -(-len(words) // SECTOR_WORDS)
        if sector + nsect > DISK_SECTORS:
            raise ValueError(f"the programs do not fit on the {DISK_SECTORS}-sector guest disk")
        disk[sector * SECTOR_WORDS:sector * SECTOR_WORDS + len(words)] = words
        tag = sum((ord(c) & 0xFF) << (8 * k) for k, c in enumerate(name[:4]))
        entry = directory[DIR_ENTRIES + DIR_ENTRY_WORDS * i:][:DIR_ENTRY_WORDS]
        entry[[DE_SECTOR, DE_WORDS, DE_ENTRY, DE_NAME]] = (sector, len(words), prog.entry, tag)
        sector += nsect
    return disk


@lru_cache(maxsize=1)
def _disk_image() -> np.ndarray:
    """The disk every workload gets: the directory and all of :data:`PROGRAMS` (read-only)."""
    disk = _make_disk([(name, user_program(name)) for name in PROGRAMS])
    disk.flags.writeable = False
    return disk


@lru_cache(maxsize=2)
def _ram_image(paravirt: bool) -> np.ndarray:
    """Guest RAM with the kernel loaded (boot information not yet filled in; read-only)."""
    ram = np.zeros(GUEST_RAM // 4, dtype=np.uint32)
    for address, words in kernel_program(paravirt).segments:
        ram[address // 4:address // 4 + len(words)] = words
    ram.flags.writeable = False
    return ram


# ---- the image -------------------------------------------------------------------------------
@dataclass
class GuestImage:
    """A bootable guest: initial guest-physical memory and disk, and what they contain.

    ``ram`` and ``disk`` are arrays owned by this image; loading copies them, so an image can
    boot any number of machines.
    """

    workload: str
    count: int
    paravirt: bool
    ram: np.ndarray             #: uint32[GUEST_RAM // 4]: boot info page + kernel
    disk: np.ndarray            #: uint32[disk_sectors * 128]: directory + programs
    entry: int                  #: guest-physical address where the kernel starts (``boot``)
    kernel: Program             #: the assembled kernel (symbols, listing, disassembly)
    programs: dict[str, int] = field(default_factory=dict)   #: program name -> disk index
    ram_size: int = GUEST_RAM
    disk_sectors: int = DISK_SECTORS

    def symbol(self, name: str) -> int:
        """Address (or value) of a kernel symbol, e.g. ``image.symbol("stat_switches")``."""
        try:
            return self.kernel.symbols[name]
        except KeyError:
            close = difflib.get_close_matches(name, self.kernel.symbols, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise KeyError(f"no kernel symbol {name!r}{hint}") from None

    def native_machine(self, **overrides):
        """A bare :class:`~kernel_sim.machine.Machine` with this image loaded, ready to run.

        The machine the guest expects: ``ram_size`` bytes of memory, 2-level paging, a 64-entry
        TLB, the non-strict ISA, ring 0, the disk; pc = :attr:`entry`.  *overrides* change
        other machine settings (e.g. ``tlb_size=16``, ``strict=True``, ``costs=...``).
        """
        from .machine import Machine

        for key in ("memory_size", "disk_sectors"):
            if key in overrides:
                raise ValueError(f"{key} is fixed by the guest image; it cannot be overridden")
        settings = dict(paging_levels=2, tlb_size=64, strict=False, ring=0)
        settings.update(overrides)
        m = Machine(memory_size=self.ram_size, disk_sectors=self.disk_sectors, **settings)
        m.mem[:self.ram_size // 4] = self.ram
        m.disk[:] = self.disk
        m.reset()
        m.pc = self.entry
        m.program = self.kernel
        return m

    def run_native(self, max_instructions: int = 50_000_000):
        """Boot a fresh native machine and run until it stops (at most *max_instructions*)."""
        return self.native_machine().run(count=max_instructions)


def _check_workload(workload) -> Workload:
    if not isinstance(workload, str):
        raise TypeError(f"workload must be a name (str), got {workload!r}")
    if workload not in WORKLOADS:
        close = difflib.get_close_matches(workload, WORKLOADS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown workload {workload!r}.{hint} Known workloads: "
                         f"{', '.join(WORKLOADS)}")
    return WORKLOADS[workload]


def build_guest(workload: str, count: int | None = None, paravirt: bool = False,
                batch: int = DEFAULT_BATCH) -> GuestImage:
    """Build the guest image for *workload* (a key of :data:`WORKLOADS`).

    *count*: the workload's loop count (default: the workload's ``default_count``), 1 to
    :data:`MAX_COUNT`.  *paravirt*: the ``PARAVIRT=1`` kernel (it only runs under a monitor
    that implements the hypercalls).  *batch*: page-table updates per ``mmu_update``
    hypercall in the PARAVIRT kernel (1 to 64; boot info word 7).
    """
    spec = _check_workload(workload)
    count = spec.default_count if count is None else check_int("count", count, 1, MAX_COUNT)
    return _image(spec.name, count, paravirt, batch, _disk_image(), PROGRAMS.index(spec.program),
                  {name: i for i, name in enumerate(PROGRAMS)})


def build_custom_guest(source: str, count: int = 1, paravirt: bool = False,
                       batch: int = DEFAULT_BATCH, filename: str = "custom.s") -> GuestImage:
    """A guest whose init is *your* user program (assembly source, see :func:`assemble_user`).

    The program is put on the disk after the standard ones, as program ``"custom"`` (index
    ``PROG_CUSTOM``), and starts with r1 = *count* (0 to :data:`MAX_COUNT`).  The image's
    ``workload`` is ``"custom"``.
    """
    count = check_int("count", count, 0, MAX_COUNT)
    prog = assemble_user(source, filename=filename)
    programs = [(name, user_program(name)) for name in PROGRAMS] + [("custom", prog)]
    return _image("custom", count, paravirt, batch, _make_disk(programs), len(PROGRAMS),
                  {name: i for i, (name, _) in enumerate(programs)})


def _image(workload, count, paravirt, batch, disk, init, programs) -> GuestImage:
    batch = check_int("batch", batch, 1, MAX_BATCH)
    paravirt = bool(paravirt)
    kernel = kernel_program(paravirt)
    ram = _ram_image(paravirt).copy()
    boot = ram[:1024]
    boot[BI_MAGIC] = BOOT_MAGIC
    boot[BI_INIT] = init
    boot[BI_COUNT] = count
    boot[BI_RAM] = GUEST_RAM
    boot[BI_MOFF] = 0
    boot[BI_SHINFO] = kernel.symbols["shared_info_page"] if paravirt else 0
    boot[BI_NPROG] = len(programs)
    boot[BI_BATCH] = batch
    return GuestImage(workload=workload, count=count, paravirt=paravirt, ram=ram,
                      disk=np.array(disk, dtype=np.uint32), entry=kernel.symbols["boot"],
                      kernel=kernel, programs=dict(programs))


def run_native(workload: str, count: int | None = None,
               max_instructions: int = 50_000_000):
    """Build *workload* and run it on a bare machine; returns the run's
    :class:`~kernel_sim.results.Result` (``stop == "halt"`` when the guest shut down)."""
    return build_guest(workload, count).run_native(max_instructions)
