"""The guest ABI, defined once: what the guest kernel, its user programs, the image builder, the
monitors and the hardware models agree on.

An *ABI* (application binary interface) is a contract written in numbers: which number means
which system call, at which word of a page the loader leaves the RAM size, which I/O port starts
a disk transfer.  Both sides of the contract must use the same numbers, so this module is the
only place they are written down.  Everything else derives from it:

* Python imports it: :mod:`kernel_sim.isa` (ports, system calls), :mod:`kernel_sim.state` (the
  block device's status codes), :mod:`kernel_sim.guest` (boot information, disk layout),
  :mod:`kernel_sim.monitors.paravirt` (hypercalls, shared info page).
* The assembly sources include ``guests/abi.s``, **generated** from this module by
  ``python -m kernel_sim.tools.generate`` (``--check`` tells whether it is up to date; a test
  runs the check).  Like a C kernel's ``syscall.h``, it gives the assembly names for the
  numbers: ``SYS_GETPID``, ``HC_MMU_UPDATE``, ``BI_RAM``, ``BLK_READ`` ...
* The ISA reference (``course/isa_reference.md``) and notebook 06's hypercall table are
  rendered from these tables.

Units.  The boot information page, the shared info page and the disk directory are arrays of
32-bit words, so their fields are defined here as **word indices** (Python indexes ``uint32``
arrays with them: ``ram[BI_RAM]``).  Assembly addresses memory in bytes, so ``guests/abi.s``
gives the same names as **byte offsets**, four times the word index (``ld r1, [r14 + BI_RAM]``).

>>> from kernel_sim import abi
>>> abi.SYSCALL_NUMBERS["getpid"], abi.HYPERCALLS["mmu_update"], abi.BI_RAM
(2, 3, 3)
>>> "BI_RAM            = 12 " in abi.assembly_include()    # the same field, as a byte offset
True
"""
from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Iterable

# ---- the tables' row types ---------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One entry point of a call interface: a system call or a hypercall."""

    number: int
    name: str
    args: str       #: arguments and result, e.g. "r1 = status; never returns"
    doc: str = ""   #: what it does, when the arguments do not say it all


@dataclass(frozen=True)
class Field:
    """A named constant of the ABI: a word index, a number, an address, a port."""

    name: str
    value: int
    doc: str


def _constants(*tables: Iterable[Field]) -> dict[str, int]:
    return {f.name: f.value for table in tables for f in table}


# ---- memory layout and magic numbers -------------------------------------------------------------
LAYOUT: tuple[Field, ...] = (
    Field("KERNEL_BASE", 0x1000, "where the kernel is loaded; entry label `boot`"),
    Field("USER_BASE", 0x00400000, "origin of every user program (code and data)"),
    Field("USER_STACK_TOP", 0x00800000, "a process starts with sp here (one stack page below)"),
    Field("HEAP_BASE", 0x10000000, "the demand-paged heap: map/unmap and page faults work here"),
    Field("HEAP_END", 0x10400000, "end of the heap (one page table's worth: 4 MiB)"),
    Field("MONITOR_BASE", 0xFF000000, "virtual addresses from here up belong to monitors"),
    Field("MAX_PROG_WORDS", 16384, "largest program image the kernel loads (64 KiB)"),
    Field("EXIT_FAULT", 128, "a process killed by trap vector V exits with EXIT_FAULT + V"),
)

MAGIC: tuple[Field, ...] = (
    Field("BOOT_MAGIC", 0x4B53494D, "'KSIM' in boot information word BI_MAGIC"),
    Field("DISK_MAGIC", 0x4B53444B, "'KSDK' in word DIR_MAGIC of the disk directory"),
    Field("DONE_MAGIC", 0x454E4F44, "'DONE': the kernel writes it to BI_DONE at shutdown"),
)

#: The boot information page at guest-physical address 0 (word indices).  The image builder
#: writes words 0..7; the kernel writes words 16..19 when it shuts down.
BOOT_INFO: tuple[Field, ...] = (
    Field("BI_MAGIC", 0, "BOOT_MAGIC"),
    Field("BI_INIT", 1, "disk index of the program to run as init"),
    Field("BI_COUNT", 2, "the loop count: init's argument (r1 when it starts)"),
    Field("BI_RAM", 3, "RAM size in bytes"),
    Field("BI_MOFF", 4, "PARAVIRT: machine address of guest-physical 0 (a monitor writes it)"),
    Field("BI_SHINFO", 5, "PARAVIRT: guest-physical address of the shared info page"),
    Field("BI_NPROG", 6, "number of programs on disk"),
    Field("BI_BATCH", 7, "PARAVIRT: page-table updates per mmu_update hypercall"),
    Field("BI_DONE", 16, "written at shutdown: DONE_MAGIC"),
    Field("BI_INIT_STATUS", 17, "written at shutdown: init's exit status"),
    Field("BI_NPROCS", 18, "written at shutdown: processes created"),
    Field("BI_KILLS", 19, "written at shutdown: processes killed by a fault"),
)

#: The disk: sectors of SECTOR_WORDS words; sector 0 is the directory (word indices).
DISK: tuple[Field, ...] = (
    Field("SECTOR_WORDS", 128, "words per sector"),
    Field("SECTOR_BYTES", 512, "bytes per sector"),
    Field("DIR_MAGIC", 0, "DISK_MAGIC"),
    Field("DIR_COUNT", 1, "number of programs"),
    Field("DIR_SECTORS", 2, "size of the disk in sectors"),
    Field("DIR_ENTRIES", 4, "the first entry; one DIR_ENTRY_WORDS-word entry per program"),
    Field("DIR_ENTRY_WORDS", 4, "words per directory entry"),
    Field("DIR_MAX", 31, "most entries the directory sector holds"),
    Field("DE_SECTOR", 0, "entry: first sector of the program (each starts on a sector)"),
    Field("DE_WORDS", 1, "entry: length in words"),
    Field("DE_ENTRY", 2, "entry: entry address (virtual)"),
    Field("DE_NAME", 3, "entry: the first four characters of its name, low byte first"),
)

# ---- system calls ------------------------------------------------------------------------------
#: System calls of the course's guest kernels: ``syscall`` with the number in r0, arguments in
#: r1..r3, the result in r0 (every other register preserved).  Unknown numbers return -1.
SYSCALL_TABLE: tuple[Call, ...] = (
    Call(0, "exit", "r1 = exit status; never returns", "ends the process"),
    Call(1, "write", "r1 = address, r2 = length in words: print one character per word",
         "returns the number of words written"),
    Call(2, "getpid", "returns the process id"),
    Call(3, "yield", "give the CPU to the next runnable process", "returns 0"),
    Call(4, "map", "r1 = virtual address: map a fresh zeroed user page there",
         "heap region only; returns 0, or -1"),
    Call(5, "unmap", "r1 = virtual address: remove the mapping",
         "clears the PTE and INVLPGs it; returns 0, or -1"),
    Call(6, "fork", "copy the address space; returns 0 in the child, the child's pid in the "
                    "parent"),
    Call(7, "wait", "wait for a child to exit; returns its exit status (child pid in r1)",
         "-1 if the caller has no children"),
    Call(8, "spawn", "r1 = program index on disk, r2 = argument: start it as a new process",
         "returns the pid, or -1"),
    Call(9, "kcall", "r1 = n: the kernel makes n call/return pairs (a kernel-mode workload)",
         "returns n"),
    Call(10, "blkread", "r1 = sector: read it through the block driver; returns its first word",
         "or -1"),
    Call(11, "sleep", "r1 = ticks: sleep at least that long", "returns 0"),
)

# ---- hypercalls --------------------------------------------------------------------------------
#: Hypercalls of the PARAVIRT build: ``vmcall N``, arguments in r1..r3, result in r0 (< 0 is an
#: error).  ``args`` is what notebook 06's table shows.
HYPERCALL_TABLE: tuple[Call, ...] = (
    Call(0, "console_write", "r1 = character"),
    Call(1, "set_trap_table", "r1 = virtual address of the 256-entry vector table"),
    Call(2, "stack_switch", "r1 = kernel stack pointer for traps from user mode"),
    Call(3, "mmu_update", "r1 = virtual address of (PTE machine address, new value) pairs, "
                          "r2 = number of pairs; returns the number applied",
         "the kernel queues up to the batch size from BI_BATCH and flushes before switching "
         "address space, INVLPG, and every return from a trap"),
    Call(4, "new_baseptr", "r1 = machine address of the root table | ASID"),
    Call(5, "invlpg", "r1 = va"),
    Call(6, "tlb_flush", "-"),
    Call(7, "iret", "the frame at sp, as IRET"),
    Call(8, "sysret", "as SYSRET"),
    Call(9, "set_timer", "r1 = period"),
    Call(10, "get_ticks", "returns the tick counter"),
    Call(11, "block_io", "r1 = command (BLK_READ, BLK_WRITE), r2 = sector, r3 = machine "
                         "address of the buffer; returns the status"),
    Call(12, "block", "sleep until the next event"),
    Call(13, "event_check", "deliver a pending event now"),
    Call(14, "enable_paging", "-"),
    Call(15, "shutdown", "r1 = status"),
)

#: The shared info page of the PARAVIRT build (word indices; its guest-physical address is
#: boot information word BI_SHINFO), as Xen's ``shared_info`` / ``vcpu_info``.
SHARED_INFO: tuple[Field, ...] = (
    Field("SI_MASK", 0, "evtchn_upcall_mask: 1 = virtual interrupts masked (CLI is a store of "
                        "1, STI a store of 0 then event_check if SI_PENDING is set)"),
    Field("SI_PENDING", 1, "evtchn_upcall_pending: an event arrived while masked"),
    Field("SI_CR2", 2, "fault address of the last page fault (the monitor writes it before "
                       "delivering #PF; natively RDCR fault_addr)"),
)

PARAVIRT: tuple[Field, ...] = (
    Field("DEFAULT_BATCH", 8, "mmu_update batch size when BI_BATCH is 0"),
    Field("MAX_BATCH", 64, "the PV kernel's PTE update queue holds at most this many"),
)

# ---- devices -----------------------------------------------------------------------------------
#: I/O ports (operand of IN / OUT): name, number, what reading and writing do.
PORTS: tuple[Field, ...] = (
    Field("console", 0x10, "OUT: append the low byte to the console; IN: reads 0"),
    Field("timer", 0x20, "OUT: timer period in ticks (0 = off), next deadline = now + period; "
                         "IN: the period"),
    Field("ticks", 0x21, "IN: low 32 bits of the tick counter (retired instructions + idle "
                         "ticks)"),
    Field("blk_sector", 0x30, "block device: OUT sets the sector number (512-byte sectors); IN "
                              "reads it back"),
    Field("blk_buffer", 0x31, "block device: OUT sets the physical address of the 512-byte "
                              "buffer; IN reads it"),
    Field("blk_command", 0x32, "block device: OUT a command (below), synchronous DMA; IN: the "
                               "status of the last one (below)"),
    Field("blk_size", 0x33, "block device: IN reads the number of sectors"),
)
#: Commands written to port blk_command.
BLK_COMMANDS: tuple[Field, ...] = (
    Field("BLK_READ", 1, "copy the sector into memory at the buffer"),
    Field("BLK_WRITE", 2, "copy the buffer to the sector"),
)
#: Status codes read from port blk_command.
BLK_STATUS: tuple[Field, ...] = (
    Field("BLK_OK", 0, "ok"),
    Field("BLK_BAD_ADDRESS", 1, "bad sector or buffer: nothing copied"),
    Field("BLK_BAD_COMMAND", 2, "bad command"),
)

# ---- the Python names (every table row is also a module constant) -------------------------------
globals().update(_constants(LAYOUT, MAGIC, BOOT_INFO, DISK, SHARED_INFO, PARAVIRT, BLK_COMMANDS,
                            BLK_STATUS))
globals().update({f"PORT_{f.name.upper()}": f.value for f in PORTS})

#: name -> number
SYSCALL_NUMBERS: dict[str, int] = {c.name: c.number for c in SYSCALL_TABLE}
HYPERCALLS: dict[str, int] = {c.name: c.number for c in HYPERCALL_TABLE}
PORT_NAMES: dict[str, int] = {f.name: f.value for f in PORTS}


def port_descriptions() -> dict[str, str]:
    """What each port does, with blk_command's commands and status codes spelled out."""
    out = {f.name: f.doc for f in PORTS}
    cmds = ", ".join(f"{f.value} {f.doc}" for f in BLK_COMMANDS)
    status = ", ".join(f"{f.value} {f.doc}" for f in BLK_STATUS)
    out["blk_command"] = (f"block device: OUT a command ({cmds}; synchronous DMA); IN: the "
                          f"status of the last one ({status})")
    return out


# ---- renderings: the assembly include and the documentation tables -------------------------------
GENERATED_HEADER = "generated from kernel_sim/abi.py by `python -m kernel_sim.tools.generate`"


def assembly_include() -> str:
    """The text of ``guests/abi.s``: every constant of this module as an assembly constant.

    Word-indexed layouts (boot information, shared info page, disk directory) become byte
    offsets (4 x the index), because assembly addresses memory in bytes.
    """
    def block(title: str, fields: Iterable[Field], scale: int = 1, prefix: str = "",
              hex_values: bool = False) -> list:
        out = ["", f"; ---- {title}"]
        for f in fields:
            name = prefix + (f.name.upper() if prefix else f.name)
            value = f.value * scale
            address = hex_values or name.endswith(("_BASE", "_TOP", "_END", "_MAGIC"))
            shown = f"0x{value:0{8 if value > 0xFFFF else 2}X}" if address else str(value)
            note = f"word {f.value}: {f.doc}" if scale == 4 else f.doc
            text = textwrap.wrap(note, 100 - 32)
            out.append(f"{name:<17} = {shown:<10} ; {text[0]}")
            out += [f"{'':<30} ; {more}" for more in text[1:]]
        return out

    def calls(title: str, table, prefix: str) -> list:
        return block(title, (Field(c.name, c.number, c.args) for c in table), prefix=prefix)

    lines = ["; abi.s -- the guest ABI for assembly programs (the kernel and user programs).",
             f"; {GENERATED_HEADER}:",
             "; DO NOT EDIT.  Change kernel_sim/abi.py and run the generator again.",
             ";",
             "; Offsets into the boot information page (BI_*), the shared info page (SI_*) and",
             "; the disk directory (DIR_*, DE_*) are BYTE offsets here: 4 x the word index that",
             "; kernel_sim/abi.py defines."]
    lines += block("memory layout", LAYOUT) + block("magic numbers", MAGIC)
    lines += block("boot information page at physical address 0 (byte offsets)", BOOT_INFO, 4)
    disk_sizes = [f for f in DISK if f.name in ("SECTOR_WORDS", "SECTOR_BYTES", "DIR_MAX",
                                                "DIR_ENTRY_WORDS")]
    lines += block("disk", disk_sizes)
    lines += block("disk directory, sector 0 (byte offsets)",
                   [f for f in DISK if f not in disk_sizes], 4)
    lines += calls("system calls: SYSCALL with the number in r0", SYSCALL_TABLE, "SYS_")
    lines += calls("hypercalls of the PARAVIRT build: vmcall N", HYPERCALL_TABLE, "HC_")
    lines += block("shared info page of the PARAVIRT build (byte offsets)", SHARED_INFO, 4)
    lines += block("PARAVIRT page-table update batches", PARAVIRT)
    lines += block("I/O ports (IN / OUT also accept the lowercase names)", PORTS, prefix="PORT_",
                   hex_values=True)
    lines += block("block device commands (OUT blk_command)", BLK_COMMANDS)
    lines += block("block device status (IN blk_command)", BLK_STATUS)
    return "\n".join(lines) + "\n"


def markdown_table(header: list[str], rows: Iterable[Iterable[str]]) -> str:
    """A Markdown table (``|`` in a cell is escaped)."""
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(out)


def syscall_table_markdown() -> str:
    """The system calls as a Markdown table (the ISA reference shows it)."""
    return markdown_table(["number", "name", "meaning"],
                     [[str(c.number), f"`{c.name}`", c.args] for c in SYSCALL_TABLE])


def port_table_markdown() -> str:
    """The I/O ports as a Markdown table (the ISA reference shows it)."""
    docs = port_descriptions()
    return markdown_table(["name", "number", "meaning"],
                     [[f"`{f.name}`", f"0x{f.value:02X}", docs[f.name]] for f in PORTS])


__all__ = ["Call", "Field", "LAYOUT", "MAGIC", "BOOT_INFO", "DISK", "SYSCALL_TABLE",
           "HYPERCALL_TABLE", "SHARED_INFO", "PARAVIRT", "PORTS", "BLK_COMMANDS", "BLK_STATUS",
           "SYSCALL_NUMBERS", "HYPERCALLS", "PORT_NAMES", "port_descriptions",
           "assembly_include", "syscall_table_markdown", "port_table_markdown",
           "markdown_table", "GENERATED_HEADER"]
