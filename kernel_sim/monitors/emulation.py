"""``emulation``: the whole guest machine is a program -- Bochs-style interpretation or QEMU-style
translation blocks.

No guest instruction ever runs on the host CPU.  The monitor keeps the guest's registers and a
*virtual CPU* (control registers, ring, interrupt flag, timer, device registers) in arrays, and a
soft CPU (:mod:`kernel_sim.monitors.emulation_kernel`) carries out every instruction in software:

* memory goes through a **soft MMU**: a software TLB with the same size, index function and ASID
  tags as the hardware one, and a software page walker over the guest's own page tables.  So the
  guest sees exactly the TLB behaviour of the bare machine -- stale entries included;
* guest-physical memory is the guest's slice of host memory (at ``layout.guest_base``, above the
  monitor's own region).  Every address is checked against the guest's size, so a guest cannot
  reach host memory outside its slice: it gets the bare machine's #GP instead (resource control);
* the console, timer and block device are software models; every port access is one *device
  emulation*.

Two modes (the ``mode`` knob):

``"interpret"``
    Bochs: fetch, decode and dispatch every instruction.  Each costs ``emu_dispatch``.
``"translate"`` (default)
    QEMU: the first time execution reaches a guest-physical pc, the monitor *translates* the block
    of instructions starting there (up to a control transfer, a privileged, sensitive or trapping
    instruction, or the end of the page) into pre-decoded micro-ops, and keeps it in a block cache.
    Later entries find it in the cache and run it without decoding: entering costs
    ``emu_tb_enter``, each instruction ``emu_tb_insn``, translating ``emu_translate`` per
    instruction.  Privileged and sensitive instructions are interpreted one by one (QEMU calls a
    helper for them).  A guest write to a word that was translated invalidates all the blocks of
    its page, so self-modifying code works (data sharing a page with code costs nothing); a full
    micro-op buffer flushes the whole cache.

Events (stable names; cycles from the ``emu_*`` costs of :mod:`kernel_sim.costs`):
``emulation:interpreted``, ``emulation:tb_executed``, ``emulation:tb_enter``,
``emulation:translations``, ``emulation:translated_insns``, ``emulation:block_cache_hits``,
``emulation:tb_invalidations`` (blocks discarded by guest writes), ``emulation:tb_flushes``,
``emulation:soft_tlb_hits``, ``emulation:soft_tlb_misses`` (category ``memory``) and
``emulation:device`` (category ``devices``).  Interpreted and translated instructions are counted
when they retire, so ``interpreted + tb_executed`` is the guest's instruction count.  Only these
counted works cost cycles: the guest's own instruction costs are not added, because no guest
instruction runs natively.

Example::

    from kernel_sim.guest import build_guest
    from kernel_sim.monitors.emulation import Emulation
    mon = Emulation(build_guest("compute", count=100), mode="translate")
    print(mon.run().exit_table())
    first = mon.translation_blocks()[0]["pc"]
    print(mon.dump_block(first))         # the micro-ops the translator produced
"""
from __future__ import annotations

import difflib

import numpy as np

from .. import isa
from ..machine import check_int
from ..state import (
    C_CONSOLE_LEN,
    C_CPL,
    C_DISK_SECTORS,
    C_LEVELS,
    C_MEM_BYTES,
    C_PC,
    C_STOP_ERROR,
    C_STOP_REASON,
    C_STOP_VECTOR,
    C_STRICT,
    C_TIMER_DEADLINE,
    C_TVB,
    C_UNTIL,
    EV_TLB_HIT,
    EV_TLB_MISS,
    NEVER,
    NUM_COUNTERS,
    NUM_CTRL,
    STOP_NAMES,
)
from . import emulation_kernel as K
from .base import MONITOR_BYTES, GuestView, Layout, Monitor, MonitorError

MODES = ("interpret", "translate")
#: default size of the translation cache: micro-op rows (one per translated instruction)
DEFAULT_CACHE_SIZE = 1 << 16
#: slots of the direct-mapped block-cache index (a power of two)
BLOCK_SLOTS = 4096

#: (event name, emulator counter, cost name or None, category)
_EMU_EVENTS = (
    ("emulation:interpreted", K.E_INTERPRETED, "emu_dispatch", "emulation"),
    ("emulation:tb_executed", K.E_TB_EXECUTED, "emu_tb_insn", "emulation"),
    ("emulation:tb_enter", K.E_TB_ENTER, "emu_tb_enter", "emulation"),
    ("emulation:translations", K.E_TRANSLATIONS, None, "emulation"),
    ("emulation:translated_insns", K.E_TRANSLATED_INSNS, "emu_translate", "emulation"),
    ("emulation:block_cache_hits", K.E_CACHE_HITS, None, "emulation"),
    ("emulation:tb_invalidations", K.E_INVALIDATIONS, None, "emulation"),
    ("emulation:tb_flushes", K.E_TB_FLUSHES, None, "emulation"),
    ("emulation:device", K.E_DEVICE, "emu_device", "devices"),
)


def format_uop(op: int, a: int, b: int, x: int) -> str:
    """One micro-op as text: the mnemonic and its pre-decoded operands."""
    ins = isa.BY_OPCODE.get(int(op))
    name = ins.mnemonic if ins else f"op_{int(op):02x}"
    fmt = ins.fmt if ins else "none"
    if fmt == "none":
        return name
    if fmt in ("a",):
        return f"{name} r{a}"
    if fmt == "ab":
        return f"{name} r{a}, r{b}"
    if fmt == "abc":
        return f"{name} r{a}, r{b}, r{x}"
    if fmt in ("ai", "au"):
        return f"{name} r{a}, {x:#x}" if x >= 0 else f"{name} r{a}, {x}"
    if fmt == "mem":
        return f"{name} r{a}, [r{b} {'+' if x >= 0 else '-'} {abs(x)}]"
    if fmt == "br":
        return f"{name} r{a}, r{b}, next {'+' if x >= 0 else '-'} {abs(x)}"
    if fmt == "j":
        return f"{name} next {'+' if x >= 0 else '-'} {abs(x)}"
    if fmt == "abu":
        return f"{name} r{a}, r{b}, {x:#x}"
    return f"{name} r{a}, r{b}, {x}"


class Emulation(Monitor):
    """Pure software emulation of the guest machine (see the module docstring).

    Extra settings: ``mode`` (``"interpret"`` or ``"translate"``), ``cache_size`` (micro-op
    rows of the translation cache; when it is full the whole cache is flushed) and
    ``console_size`` (bytes the virtual console keeps).
    """

    name = "emulation"
    #: the emulator's "host memory" is its own array (no host CPU runs the guest)
    places_guest_in_host = False
    description = ("every guest instruction runs in software (soft MMU, device models): "
                   "interpreted one by one or from cached translation blocks")

    def __init__(self, image, *, mode: str = "translate", cache_size: int = DEFAULT_CACHE_SIZE,
                 console_size: int = 1 << 16, **settings):
        if not isinstance(mode, str) or mode not in MODES:
            close = difflib.get_close_matches(str(mode), MODES, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"emulation mode must be 'interpret' (Bochs-style: decode every "
                             f"instruction) or 'translate' (QEMU-style translation blocks), got "
                             f"{mode!r}{hint}")
        cache_size = check_int("cache_size (micro-op rows of the translation cache)",
                                cache_size, K.MAX_BLOCK, 1 << 24)
        console_size = check_int("console_size", console_size, 0, 1 << 24)
        super().__init__(image, **settings)
        check_int("levels", self.levels, 1, 4)
        tlb = check_int("tlb_size", self.tlb_size, 1, 4096)
        if tlb & (tlb - 1):
            raise ValueError(f"tlb_size must be a power of two, got {tlb}")
        if image.ram_size % isa.PAGE_SIZE or image.ram_size <= 0:
            raise ValueError(f"the guest's RAM must be a positive multiple of {isa.PAGE_SIZE} "
                             f"bytes, got {image.ram_size}")
        if len(image.ram) != image.ram_size // 4:
            raise ValueError(f"the image's RAM has {len(image.ram)} words, but ram_size "
                             f"{image.ram_size} needs {image.ram_size // 4}")
        if len(image.disk) != image.disk_sectors * 128:
            raise ValueError(f"the image's disk has {len(image.disk)} words, but "
                             f"{image.disk_sectors} sectors need {image.disk_sectors * 128}")
        self.mode = mode
        self.cache_size = cache_size
        self.console_size = console_size

    # ---- boot: host memory, the virtual CPU, the soft TLB, the translation cache --------------
    def _boot(self) -> None:
        image = self.image
        size = image.ram_size
        self.layout = Layout(guest_base=MONITOR_BYTES, guest_size=size,
                             host_size=MONITOR_BYTES + size)
        #: host-physical memory: the monitor's region, then the guest's RAM
        self.host_mem = np.zeros(self.layout.host_size // 4, dtype=np.uint32)
        base = self.layout.guest_base // 4
        #: guest-physical memory: a view of the guest's slice of host memory, nothing more
        self.gmem = self.host_mem[base:base + size // 4]
        self.gmem[:] = image.ram
        self.disk = np.array(image.disk, dtype=np.uint32)
        self.regs = np.zeros(isa.NUM_REGS, dtype=np.int64)
        self.regs[isa.SP] = size & isa.WORD_MASK
        self.vcpu = np.zeros(NUM_CTRL, dtype=np.int64)
        v = self.vcpu
        v[C_PC] = image.entry
        v[C_CPL] = 0
        v[C_TVB] = isa.NO_TVB
        v[C_TIMER_DEADLINE] = NEVER
        v[C_UNTIL] = -1
        v[C_LEVELS] = self.levels
        v[C_STRICT] = int(self.strict)
        v[C_MEM_BYTES] = size
        v[C_DISK_SECTORS] = image.disk_sectors
        self.tlb = np.zeros(2 * self.tlb_size, dtype=np.int64)
        #: the guest's events, in the hardware counters' layout (what a bare machine counts)
        self.counters = np.zeros(NUM_COUNTERS, dtype=np.int64)
        self.console = np.zeros(self.console_size, dtype=np.uint8)
        self.emu = np.zeros(K.NUM_EMU, dtype=np.int64)
        #: the translation cache: micro-op rows (op, a, b, x) and the block index
        self.uops = np.zeros((self.cache_size, 4), dtype=np.int64)
        self.tbs = np.zeros((BLOCK_SLOTS, 4), dtype=np.int64)
        #: per guest page: live translated blocks, generation (bumped when the page is written)
        self.pages = np.zeros((size // isa.PAGE_SIZE, 2), dtype=np.int64)
        #: per guest word: 1 if a translated block was decoded from it (writes there invalidate)
        self.codemap = np.zeros(size // 4, dtype=np.uint8)

    def _run(self, budget: int) -> None:
        before = self.emu.copy()
        hits = int(self.counters[EV_TLB_HIT])
        misses = int(self.counters[EV_TLB_MISS])
        K.emulate(self.regs, self.vcpu, self.gmem, self.disk, self.tlb, self.counters,
                  self.console, self.emu, self.uops, self.tbs, self.pages,
                  self.codemap, 1 if self.mode == "translate" else 0, budget)
        v = self.vcpu
        self.stop = STOP_NAMES.get(int(v[C_STOP_REASON]), "none")
        self.stop_vector, self.stop_error = int(v[C_STOP_VECTOR]), int(v[C_STOP_ERROR])
        for name, index, cost, category in _EMU_EVENTS:
            n = int(self.emu[index] - before[index])
            if n:
                self.count(name, cost, n=n, category=category)
        for name, n, cost in (("emulation:soft_tlb_hits", self.counters[EV_TLB_HIT] - hits,
                               "emu_soft_tlb_hit"),
                              ("emulation:soft_tlb_misses", self.counters[EV_TLB_MISS] - misses,
                               "emu_soft_tlb_miss")):
            if n:
                self.count(name, cost, n=int(n), category="memory")

    # ---- what the guest sees ------------------------------------------------------------------
    def view(self) -> GuestView:
        return GuestView(self.regs, self.vcpu, self.gmem, self.disk, self.console_bytes(),
                         self.levels)

    def console_bytes(self) -> bytes:
        return self.console[:int(self.vcpu[C_CONSOLE_LEN])].tobytes()

    def guest_counters(self) -> np.ndarray:
        """The emulator counts the guest's events in the hardware counters' layout itself."""
        return self.counters

    def notes(self) -> list:
        return [f"mode: {self.mode}"]

    # ---- looking inside the translation cache -------------------------------------------------
    def translation_blocks(self) -> list[dict[str, object]]:
        """The live translated blocks: guest-physical pc, length and their micro-ops as text."""
        if not hasattr(self, "tbs"):
            raise MonitorError("run the guest first: the translation cache is built as it runs")
        out = []
        for key, gen, start, length in self.tbs:
            if key == 0:
                continue
            pa = int(key) - 1
            if gen != self.pages[pa >> 12, 1]:
                continue
            rows = self.uops[start:start + length]
            out.append({"pc": pa, "length": int(length),
                        "uops": [format_uop(*map(int, r)) for r in rows]})
        return sorted(out, key=lambda blk: blk["pc"])

    def dump_block(self, pc: int) -> str | None:
        """The translated block at guest-physical ``pc`` as text (None if there is none)."""
        for blk in self.translation_blocks():
            if blk["pc"] == pc:
                lines = [f"block at guest-physical {pc:#010x} ({blk['length']} micro-ops):"]
                lines += [f"  {pc + 4 * k:#010x}  {u}" for k, u in enumerate(blk["uops"])]
                return "\n".join(lines)
        return None
