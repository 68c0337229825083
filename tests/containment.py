"""What the monitor tests share: equivalence with the bare machine, and resource control.

Plain functions and constants, no tests.  ``tests/test_trap_emulate.py``,
``tests/test_binary_translation.py``, ``tests/test_hw_controls.py`` and
``tests/test_hardware_assist.py`` use them.

* **Equivalence.**  :func:`same` says whether two results show the guest the same outcome; it
  compares only what the guest's own execution determines (:data:`ARCH_EVENTS`), never the
  host's TLB or the monitor's own work.
* **Resource control.**  A monitor must keep a guest inside its slice of host memory.  The attack
  programs are *built* from parameters (:func:`write_beyond_ram`, :func:`map_beyond_ram`,
  :func:`ptbr_names_host_address`), so each technique can aim at its own structures (the
  hardware-assist monitors add the VMCS page) while the expected number of faults is derived
  from the same list the program was built from.  :func:`paint_and_check` fills what the guest
  must not reach with :data:`PATTERN` before the run and checks, afterwards, that every word is
  still there.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
from guest_programs import RAM

from kernel_sim import isa
from kernel_sim.asm import assemble
from kernel_sim.monitors import ProgramImage
from kernel_sim.monitors.base import MONITOR_BYTES

#: the word painted over host memory the guest must not reach (an unlikely value to find there
#: by accident: no guest program here stores it)
PATTERN = 0xA5C3F00D

#: events the guest's own execution determines (the TLB's are the host's, so they differ).  The
#: PTBR and paging-register counts are architectural too: every technique counts each guest
#: WRCR/RDCR of them that retired, whether the CPU executed it or a monitor emulated it.
ARCH_EVENTS = ("instructions", "traps", "page_faults", "tlb_flushes", "invlpg", "io_in", "io_out",
               "hlt", "idle_ticks", "cr_writes", "cr_reads", "privilege_faults", "sysret",
               "iret", "blk_reads", "blk_writes", "console_dropped", "ptbr_writes",
               "ptbr_reads", "paging_writes")


def image(source: str, ram: int = RAM) -> ProgramImage:
    """Assemble ``source`` into a bootable image with ``ram`` bytes of guest RAM."""
    return ProgramImage.from_program(assemble(source), ram_size=ram)


def same(a, b) -> bool:
    """Same guest-visible outcome: state digest, stop, console, and the architectural counts."""
    return (a.state_digest, a.stop, a.console, a.traps, a.opcodes) == \
        (b.state_digest, b.stop, b.console, b.traps, b.opcodes) and \
        all(a.events[k] == b.events[k] for k in ARCH_EVENTS)


# ==== the attack programs ======================================================================
def skip_gp(stack: int | None = None, sum_error_codes: bool = False) -> str:
    """A prologue that installs a handler for #GP (vector 13) and #PF (vector 14), then jumps to
    ``main:`` (the caller's code follows the prologue).

    The handler counts each fault in r12 and returns to the instruction *after* the faulting one
    (it adds 4 to the pc in the trap frame), so a guest can attempt several forbidden accesses in
    a row and the test can count how many faulted.  The trap frame, from the top of the stack:
    error code, return pc, CPL, flags, old sp; the handler's own PUSH puts r1 above them.

    ``stack``: load sp with this address first (otherwise the boot value is used).
    ``sum_error_codes``: also add each fault's error code to r11.
    """
    setup = f"\n        li   sp, {stack:#x}" if stack is not None else ""
    errors = "\n        ld   r1, [sp + 4]\n        add  r11, r11, r1" if sum_error_codes else ""
    return f"""
        li   r1, 0x1000
        li   r2, skip
        st   r2, [r1 + 4 * {isa.VEC_GP}]
        st   r2, [r1 + 4 * {isa.VEC_PF}]
        wrcr tvb, r1{setup}
        jmp  main
skip:   push r1                     ; skip the faulting instruction, count it{errors}
        ld   r1, [sp + 8]
        addi r1, r1, 4
        st   r1, [sp + 8]
        addi r12, r12, 1
        pop  r1
        iret
main:
"""


#: the plain fault-skipping prologue (see :func:`skip_gp`)
SKIP_GP = skip_gp()


def _word(address: int) -> str:
    """An address as a 32-bit constant for ``li`` (a negative one wraps to the top)."""
    return f"{address & 0xFFFFFFFF:#x}"


def write_beyond_ram(addresses: Sequence[int], handler: str = SKIP_GP,
                     ram: int = RAM) -> tuple[str, int]:
    """A guest that, with paging off, stores 0xDEAD at each of ``addresses``; then halts.

    Every address must lie outside the guest's ``ram`` bytes (a negative one wraps around to
    the top of the 32-bit address space).  With paging off a guest-physical address beyond the
    RAM is a #GP on the bare machine, so each store faults once and ``handler`` skips it.

    Returns ``(source, faults)``: the program and the number of stores that must fault.
    """
    addresses = list(addresses)
    inside = [hex(a) for a in addresses if 0 <= a & 0xFFFFFFFF < ram]
    if inside:
        raise ValueError(f"write_beyond_ram: {inside} lie inside the guest's RAM")
    stores = "".join(f"""
        li   r1, {_word(a)}
        st   r2, [r1]""" for a in addresses)
    source = handler + f"""
        li   r2, 0xDEAD{stores}
        hlt
"""
    return source, len(addresses)


def identity_map(ram: str = "{RAM}", perms: int = 3) -> str:
    """Assembly that fills the page table at 0x11000 (the tests' PT0) so that it maps every
    page of the guest's RAM to itself with PTE bits ``perms`` (3: present and writable, 7: also
    user).  ``ram`` is the RAM size as assembly text; the default leaves a ``{RAM}`` field for
    ``str.format``.  Defines the label ``fill``; leaves r1 at the entry after the last page."""
    return f"""\
        li   r1, 0x11000            ; PT0: identity map of RAM
        movi r2, {perms}
        li   r3, {ram}
        li   r4, 4096
fill:   st   r2, [r1]
        addi r1, r1, 4
        add  r2, r2, r4
        bltu r2, r3, fill
"""


def map_beyond_ram(extra_frames: Sequence[int], touches: Sequence[tuple[str, int]],
                   handler: str = SKIP_GP, ram: int = RAM) -> tuple[str, int]:
    """A guest whose page table maps frames it does not own, and then touches them.

    The guest identity-maps its ``ram`` bytes with one page table (PT0 = 0x11000, supervisor,
    writable), and maps the virtual pages right after the RAM to ``extra_frames``: virtual page
    ``ram + 4096 * i`` -> host-looking frame ``extra_frames[i]``.  It turns paging on and
    performs ``touches``: ``("st", va)`` stores 0xBAD at ``va``, ``("ld", va)`` loads from it.

    Every frame must lie outside the guest's RAM and every touched ``va`` in one of the extra
    pages, so on the bare machine each touch reaches a guest-physical address beyond the RAM: a
    #GP, skipped by ``handler``.

    Returns ``(source, faults)``: the program and the number of touches that must fault.
    """
    extra_frames, touches = list(extra_frames), list(touches)
    inside = [hex(f) for f in extra_frames if f < ram]
    if inside or any(f % isa.PAGE_SIZE for f in extra_frames):
        raise ValueError(f"map_beyond_ram: frames must be page-aligned and beyond the RAM, "
                         f"got {[hex(f) for f in extra_frames]}")
    end = ram + isa.PAGE_SIZE * len(extra_frames)
    if not extra_frames or len(extra_frames) + ram // isa.PAGE_SIZE > 1024:
        raise ValueError("map_beyond_ram: between 1 and the rest of one page table of frames")
    bad = [(op, hex(va)) for op, va in touches if op not in ("st", "ld") or not ram <= va < end]
    if bad:
        raise ValueError(f"map_beyond_ram: touches must be ('st'|'ld', va) with va in the "
                         f"extra pages [{ram:#x}, {end:#x}), got {bad}")
    entries = "".join(f"""
        li   r2, {frame | 3:#x}
        st   r2, [r1{f" + {4 * i}" if i else ""}]""" for i, frame in enumerate(extra_frames))
    accesses = "".join(f"""
        li   r1, {va:#x}
        {"st   r2, [r1]" if op == "st" else "ld   r3, [r1]"}""" for op, va in touches)
    source = handler + identity_map(f"{ram:#x}") + f"""\
        ; r1: the entry of virtual page {ram:#x}{entries}
        li   r1, 0x10000
        li   r2, 0x11003
        st   r2, [r1]
        wrcr ptbr, r1
        movi r1, 1
        wrcr paging, r1
        li   r2, 0xBAD{accesses}
        hlt
"""
    return source, len(touches)


def ptbr_names_host_address(root: int, target: int, handler: str = SKIP_GP) -> str:
    """A guest that loads its PTBR with ``root`` -- the host address of one of the monitor's own
    tables -- turns paging on, and stores 0x5EC at virtual address ``target``.

    To a guest every address is guest-physical: the walk must read the guest's own memory at
    ``root`` (or fault as the bare machine does), never the monitor's table.  Whatever happens,
    the run must be the bare machine's.
    """
    return handler + f"""
        li   r1, {_word(root)}
        wrcr ptbr, r1               ; the guest names a host address ...
        movi r1, 1
        wrcr paging, r1             ; ... but it is a guest-physical address: guest memory
        li   r2, 0x5EC
        li   r1, {_word(target)}
        st   r2, [r1]
        hlt
"""


# ==== painting what the guest must not touch ===================================================
@contextmanager
def paint_and_check(mon, frames: Iterable[int], regions: Sequence[slice] = (),
                    containment: Callable[[], list] | None = None,
                    ram: int = RAM) -> Iterator[None]:
    """Paint host memory the guest must not reach; on leaving the block, check it is unchanged.

    ``mon`` must be booted.  Painted with :data:`PATTERN`:

    * each 4 KiB page of ``frames`` (host addresses).  Only the ones the monitor's allocator
      never handed out afterwards are checked (the monitor may legitimately use a free frame for
      a new table); at least one must remain, or the check would be empty;
    * each slice of ``regions`` (word indices into host memory), checked in full;
    * the guard region between the end of the guest's RAM and the end of host memory.

    ``containment``: the monitor's own audit of its tables (a list of problems, empty when every
    mapping stays inside the guest's RAM), called after the run.
    """
    mem = mon.host.mem
    frames = list(frames)
    for frame in frames:
        mem[frame >> 2:(frame >> 2) + 1024] = PATTERN
    for region in regions:
        assert region.stop > region.start, f"empty region {region}"
        mem[region] = PATTERN
    guard = slice((MONITOR_BYTES + ram) >> 2, mon.layout.host_size >> 2)
    assert guard.stop > guard.start, "the host has no guard region after the guest's RAM"
    mem[guard] = PATTERN
    yield
    untouched = [f for f in frames if f not in mon.allocator.ever_used]
    assert untouched, "the check needs frames the monitor never used"
    for frame in untouched:
        assert np.all(mem[frame >> 2:(frame >> 2) + 1024] == PATTERN), \
            f"the guest changed host frame {frame:#x}"
    for region in regions:
        assert np.all(mem[region] == PATTERN), f"the guest changed host words {region}"
    assert np.all(mem[guard] == PATTERN), "the guest changed the guard region"
    if containment is not None:
        problems = containment()
        assert problems == [], problems
