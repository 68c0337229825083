"""The machine: a small Python class that owns the state arrays and drives the jitted CPU.

Use it like a tiny emulator API (in the spirit of unicorn's)::

    from kernel_sim import Machine, assemble
    m = Machine(memory_size=1 << 20, paging_levels=2, tlb_size=64)
    m.load(assemble(source, filename="hello.s"))
    result = m.run(count=100_000)        # at most 100 000 instructions
    print(result.text())

Everything the CPU touches lives in NumPy arrays (see :mod:`kernel_sim.state`); this class only
validates settings, loads programs, and reads results.  Nothing here runs per instruction.

Defaults a program can rely on after :meth:`Machine.load`: ``pc`` = the program's entry,
``cpl`` = the ``ring`` setting, ``sp`` = the top of physical memory, interrupts disabled
(IF = 0, as after an x86 reset), paging off, no trap-vector table (``tvb = NO_TVB``: a trap stops
the run with ``stop == "unhandled_trap"``), timer off.
"""
from __future__ import annotations

from typing import Dict, Optional, Union

import numpy as np

from . import isa
from .costs import cost_array
from .results import Result
from . import state as S

MAX_MEMORY = 256 << 20      # 256 MiB: well inside a 1 GB Binder container
MAX_TLB = 4096
MAX_COUNT = 10 ** 11
MAX_DISK_SECTORS = 1 << 16  # 32 MiB
SECTOR_WORDS = isa.SECTOR_BYTES // 4


def check_int(name: str, value, lo: int, hi: int) -> int:
    """``value`` as an int if it is an integer in ``[lo, hi]``; otherwise a TypeError (not an
    integer; bool is refused too) or a ValueError naming the setting and its range."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be between {lo:,} and {hi:,}, got {value:,}")
    return int(value)


class Machine:
    """One simulated computer: CPU registers, control state, physical memory, TLB and devices.

    Parameters
    ----------
    memory_size:
        physical memory in bytes, a multiple of 4096 (default 4 MiB, at most 256 MiB).
    paging_levels:
        levels of the page tables the MMU walks (1..4).  Each level indexes 10 bits of the
        virtual address; with 2 levels a 32-bit address splits 10 + 10 + 12 as on 32-bit x86.
    tlb_size:
        TLB entries, a power of two (1..4096).
    strict:
        make the sensitive-but-unprivileged instructions (PUSHF, POPF, GETCPL, RDTVB) trap outside
        ring 0, so the ISA meets Popek & Goldberg's condition.
    ring:
        the privilege level the loaded program starts in (0..3).
    costs:
        overrides for :func:`kernel_sim.costs.cost_array`, e.g. ``{"walk_ref": 40}``.
    console_size, trace_size:
        capacity of the console buffer (bytes) and the event trace ring (records).
    disk_sectors:
        size of the block device in 512-byte sectors (0: no disk).  :attr:`disk` is a view of
        its words; loading a program does not erase it.
    """

    def __init__(self, memory_size: int = 4 << 20, paging_levels: int = 2, tlb_size: int = 64,
                 strict: bool = False, ring: int = 0, costs: Optional[Dict[str, int]] = None,
                 console_size: int = 1 << 16, trace_size: int = 4096, disk_sectors: int = 0):
        memory_size = check_int("memory_size", memory_size, isa.PAGE_SIZE, MAX_MEMORY)
        if memory_size % isa.PAGE_SIZE:
            raise ValueError(f"memory_size must be a multiple of {isa.PAGE_SIZE} bytes, "
                             f"got {memory_size}")
        self.paging_levels = check_int("paging_levels", paging_levels, 1, 4)
        tlb_size = check_int("tlb_size", tlb_size, 1, MAX_TLB)
        if tlb_size & (tlb_size - 1):
            raise ValueError(f"tlb_size must be a power of two, got {tlb_size}")
        self.ring = check_int("ring", ring, 0, 3)
        self.strict = bool(strict)
        self.memory_size = memory_size
        self.tlb_size = tlb_size
        console_size = check_int("console_size", console_size, 0, 1 << 24)
        trace_size = check_int("trace_size", trace_size, 0, 1 << 20)
        self.costs = cost_array(costs)
        self.regs = np.zeros(isa.NUM_REGS, dtype=np.int64)
        self.ctrl = np.zeros(S.NUM_CTRL, dtype=np.int64)
        self.disk_sectors = check_int("disk_sectors", disk_sectors, 0, MAX_DISK_SECTORS)
        words = memory_size // 4
        # the disk's words follow physical memory in the same array (see kernel_sim.state)
        self.mem = np.zeros(words + self.disk_sectors * SECTOR_WORDS, dtype=np.uint32)
        #: the block device's contents (a view: writes go to the disk)
        self.disk = self.mem[words:]
        self.tlb = np.zeros(2 * tlb_size, dtype=np.int64)
        self.counters = np.zeros(S.NUM_COUNTERS, dtype=np.int64)
        self.console_buffer = np.zeros(console_size, dtype=np.uint8)
        self.trace = np.zeros((trace_size, 4), dtype=np.int64)
        self.intercept = np.zeros(isa.NUM_VECTORS, dtype=np.uint8)
        #: guest-physical memory as seen by digests: [guest_base, guest_base + guest_size)
        self.guest_base = 0
        self.guest_size = memory_size
        self.program = None
        self.reset()

    # ---- state --------------------------------------------------------------------------------
    def reset(self) -> None:
        """Power-on state: registers, control state, TLB, counters, console and trace cleared.

        Memory is kept (load a program again to restore it).
        """
        self.regs[:] = 0
        self.ctrl[:] = 0
        self.tlb[:] = 0
        self.counters[:] = 0
        self.trace[:] = 0
        self.ctrl[S.C_TVB] = isa.NO_TVB
        self.ctrl[S.C_TIMER_DEADLINE] = S.NEVER
        self.ctrl[S.C_UNTIL] = -1
        self.ctrl[S.C_LEVELS] = self.paging_levels
        self.ctrl[S.C_STRICT] = int(self.strict)
        self.ctrl[S.C_MEM_BYTES] = self.memory_size
        self.ctrl[S.C_DISK_SECTORS] = self.disk_sectors
        self.ctrl[S.C_CPL] = self.ring
        self.regs[isa.SP] = self.memory_size & isa.WORD_MASK

    def load(self, program) -> "Machine":
        """Copy a :class:`kernel_sim.asm.Program` into physical memory and point pc at its entry.

        Memory is cleared first; the disk keeps its contents.
        """
        self.mem[:self.memory_size // 4] = 0
        for address, words in program.segments:
            end = address + 4 * len(words)
            if address % 4 or end > self.memory_size:
                raise ValueError(f"segment at 0x{address:x}..0x{end:x} does not fit in "
                                 f"{self.memory_size} bytes of memory")
            self.mem[address // 4:end // 4] = words
        self.reset()
        self.ctrl[S.C_PC] = program.entry
        self.program = program
        return self

    @property
    def pc(self) -> int:
        return int(self.ctrl[S.C_PC])

    @pc.setter
    def pc(self, value: int) -> None:
        self.ctrl[S.C_PC] = check_int("pc", value, 0, isa.WORD_MASK)

    @property
    def cpl(self) -> int:
        return int(self.ctrl[S.C_CPL])

    @cpl.setter
    def cpl(self, value: int) -> None:
        self.ctrl[S.C_CPL] = check_int("cpl", value, 0, 3)

    @property
    def interrupts_enabled(self) -> bool:
        return bool(self.ctrl[S.C_IF])

    def read_word(self, address: int) -> int:
        """Read the word at a physical byte address."""
        address = check_int("address", address, 0, self.memory_size - 1)
        return int(self.mem[address >> 2])

    def write_word(self, address: int, value: int) -> None:
        """Write a word at a physical byte address."""
        address = check_int("address", address, 0, self.memory_size - 1)
        self.mem[address >> 2] = value & isa.WORD_MASK

    def read_cr(self, name: Union[str, int]) -> int:
        return int(self.ctrl[S.CR_TO_CTRL[self._cr(name)]])

    def write_cr(self, name: Union[str, int], value: int) -> None:
        """Set a control register from outside (as a boot loader would).  Flushes the TLB."""
        self.ctrl[S.CR_TO_CTRL[self._cr(name)]] = check_int("value", value, 0, isa.WORD_MASK)
        self.tlb[:] = 0

    @staticmethod
    def _cr(name) -> int:
        if isinstance(name, str):
            if name not in isa.CR_NAMES:
                raise ValueError(f"unknown control register {name!r}; "
                                 f"known: {', '.join(isa.CR_NAMES)}")
            return isa.CR_NAMES[name]
        return check_int("control register", name, 0, isa.NUM_CRS - 1)

    # ---- running ------------------------------------------------------------------------------
    def run(self, count: int = 1_000_000, until: Optional[int] = None):
        """Run at most ``count`` instructions (or until pc == ``until``); return a Result.

        The run also stops when the CPU halts with nothing to wake it, or on a trap that has no
        handler (or that a monitor intercepts).  ``result.stop`` says which.
        """
        from .cpu import run_native  # imported here: importing Numba is slow, do it when needed

        count = check_int("count", count, 0, MAX_COUNT)
        self.ctrl[S.C_UNTIL] = -1 if until is None else check_int("until", until, 0,
                                                                 isa.WORD_MASK)
        run_native(self.regs, self.ctrl, self.mem, self.tlb, self.costs, self.counters,
                   self.console_buffer, self.trace, self.intercept, count)
        return Result.from_machine(self)

    # ---- what a guest can see -----------------------------------------------------------------
    def guest_memory(self) -> np.ndarray:
        """Guest-physical memory (a view)."""
        return self.mem[self.guest_base // 4:(self.guest_base + self.guest_size) // 4]

    def guest_disk(self) -> np.ndarray:
        """The guest's disk (a view)."""
        return self.disk

    def console_bytes(self) -> bytes:
        return self.console_buffer[:int(self.ctrl[S.C_CONSOLE_LEN])].tobytes()

    def user_pages(self):
        """Yield ``(virtual_address, words)`` for every page ring 3 can read right now.

        With paging off, user code can reach all of memory: one pseudo-page covering it.
        """
        return user_pages_of(self.guest_memory(), self.ctrl, self.paging_levels)

    def architectural_state(self) -> Dict[str, int]:
        """Guest-visible control state (no TLB, counters or monitor state)."""
        return architectural_state_of(self.ctrl)


def architectural_state_of(ctrl) -> Dict[str, int]:
    """The guest-visible control state held in a ``ctrl`` array (a machine's or a virtual CPU's):
    pc, ring, interrupt flag, control registers, ticks, timer, block-device registers."""
    c = ctrl
    state = {"pc": int(c[S.C_PC]), "cpl": int(c[S.C_CPL]), "if": int(c[S.C_IF])}
    for name, number in isa.CR_NAMES.items():
        state[name] = int(c[S.CR_TO_CTRL[number]])
    state.update(ticks=int(c[S.C_TICKS]), timer_period=int(c[S.C_TIMER_PERIOD]),
                 timer_deadline=int(c[S.C_TIMER_DEADLINE]),
                 timer_pending=int(c[S.C_TIMER_PENDING]), blk_sector=int(c[S.C_BLK_SECTOR]),
                 blk_buffer=int(c[S.C_BLK_BUFFER]), blk_status=int(c[S.C_BLK_STATUS]))
    return state


def user_pages_of(memory: np.ndarray, ctrl, levels: int, frame_to_addr=None):
    """Yield ``(virtual_address, words)`` for every page ring 3 can read, by walking the page
    tables that ``ctrl``'s PTBR points at in ``memory`` (physical memory as the walker sees it).

    ``frame_to_addr`` turns a frame found in a table into an address in ``memory`` (identity by
    default; a paravirtual guest's tables hold machine frames).  With paging off, user code can
    reach all of memory: one pseudo-page covering it.
    """
    if not (ctrl[S.C_PAGING] & 1):
        yield 0, memory
        return
    convert = frame_to_addr or (lambda frame: frame)
    size = 4 * len(memory)
    need = isa.PTE_P | isa.PTE_U

    def walk(table: int, level: int, va_base: int):
        if table < 0 or table + 4096 > size:
            return
        entries = memory[table // 4:table // 4 + 1024].astype(np.int64)
        for idx in np.nonzero((entries & need) == need)[0]:
            va = va_base | (int(idx) << (12 + 10 * level))
            if va >> 32:
                continue
            frame = convert(int(entries[idx]) & isa.PTE_FRAME_MASK)
            if level == 0:
                if 0 <= frame and frame + 4096 <= size:
                    yield va, memory[frame // 4:frame // 4 + 1024]
            else:
                yield from walk(frame, level - 1, va)

    yield from walk(convert(int(ctrl[S.C_PTBR]) & isa.PTE_FRAME_MASK), levels - 1, 0)
