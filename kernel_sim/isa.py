"""The toy instruction-set architecture (ISA) of kernel_sim: one table, read like a control ROM.

Everything about an instruction -- its mnemonic, opcode, operand format, virtualization class and
base cost -- lives in :data:`INSTRUCTIONS`, built once at import.  The assembler, the disassembler,
the jitted CPU's cost table, the learner's ISA reference and the notebooks all read this one table.

Machine model in one paragraph
------------------------------
A 32-bit machine with sixteen general registers ``r0``..``r15`` (``sp`` is ``r15``; the stack grows
down), byte addresses, and 32-bit words (every load, store and fetch moves one aligned word: the low
two address bits are ignored).  Instructions are one word::

    31      24 23  20 19  16 15                0
    +---------+------+------+-------------------+
    | opcode  |  a   |  b   |      imm16        |
    +---------+------+------+-------------------+

``a`` and ``b`` name registers; three-register ALU instructions take their third register ``c``
from the low four bits of ``imm16``.  ``JMP`` and ``CALL`` use the 24 bits below the opcode as a
signed word offset.  Branch and jump targets are relative to the *next* instruction:
``target = pc + 4 + 4 * offset``.  Opcode ``0x00`` is invalid on purpose: a CPU that runs into
zeroed memory raises an invalid-opcode fault instead of sliding on forever.

Protection rings (x86 style)
----------------------------
The current privilege level (CPL) is 0..3.  Ring 0 is the kernel; rings 1..3 are less privileged.
A *privileged* instruction executed with CPL > 0 raises a general-protection fault (#GP, vector 13).
For paging, rings 0..2 count as *supervisor* and ring 3 as *user*, as on x86.

Classes, in Popek & Goldberg's terms (1974)
-------------------------------------------
* ``innocuous``  -- neither reads nor changes the machine's control state: safe to run directly.
* ``privileged`` -- traps (#GP) when executed outside ring 0.  Each is also *sensitive*.
* ``sensitive``  -- sensitive **but not privileged**: it reads or changes control state (the
  interrupt flag, the privilege level, the trap-vector base) yet does *not* trap outside ring 0.
  These break trap-and-emulate, as ``POPF``, ``PUSHF``, ``SMSW`` and ``SIDT`` did on x86 before VT-x
  (Robin & Irvine, USENIX Security 2000).  With the machine option ``strict=True`` they trap like
  privileged instructions, and the Popek-Goldberg condition holds again.
* ``trapping``   -- always traps to ring 0 by design (``SYSCALL``), so a monitor sees it anyway.
* ``monitor``    -- opcodes reserved for monitors (``VMCALL`` hypercalls, the binary translator's
  ``CALLOUT``).  The bare machine does not implement them: they raise #UD, exactly as x86's
  VMCALL does outside a virtual machine.  A monitor that intercepts #UD reads the instruction and
  acts on it.

Popek & Goldberg's Theorem 1: a trap-and-emulate monitor can be built if every sensitive
instruction is privileged.  :func:`popek_goldberg_violations` lists the instructions that break it.

Sensitivity kinds: *control-sensitive* instructions change the machine's control state (mode,
interrupt flag, page-table root, ...); *behaviour-sensitive* ones behave differently, or reveal a
different value, depending on that state (``GETCPL`` returns the ring it runs in).

Costs
-----
``cycles`` is the base cost, in simulated cycles, of retiring the instruction natively.  These are
**model assumptions** chosen to be plausible relative sizes (a register add is 1, a divide is 20,
a privileged control-register write costs more than an add), not measurements of any real CPU.
:mod:`kernel_sim.costs` adds the costs of TLB misses, page-walk references and trap delivery.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from . import abi as _abi

# --------------------------------------------------------------------------------------------
# Encoding masks (UPPER_CASE, pyrisc style)
# --------------------------------------------------------------------------------------------
WORD_MASK = 0xFFFFFFFF
OPCODE_SHIFT = 24
A_SHIFT = 20
B_SHIFT = 16
REG_MASK = 0xF
IMM16_MASK = 0xFFFF
IMM24_MASK = 0xFFFFFF
NUM_REGS = 16
SP = 15  # r15 is the stack pointer

# Instruction classes
INNOCUOUS = "innocuous"
PRIVILEGED = "privileged"
SENSITIVE = "sensitive"   # sensitive but NOT privileged (the Popek-Goldberg problem)
TRAPPING = "trapping"     # always traps to ring 0 (SYSCALL)
MONITOR = "monitor"       # reserved for monitors: #UD on the bare machine (VMCALL, callouts)
CLASSES = (INNOCUOUS, PRIVILEGED, SENSITIVE, TRAPPING, MONITOR)

# Operand formats: how the assembler parses and the disassembler prints each instruction.
#   none   -- no operands                         HLT
#   a      -- one register in field a            PUSH r1
#   ab     -- two registers                      MOV r1, r2
#   abc    -- three registers, c in imm[3:0]     ADD r1, r2, r3
#   abi    -- a, b, signed imm16                 ADDI r1, r2, -4
#   abu    -- a, b, unsigned imm16               ANDI r1, r2, 0xff
#   abs    -- a, b, shift amount 0..31           SHLI r1, r2, 3
#   ai     -- a, signed imm16                    MOVI r1, -1
#   au     -- a, unsigned imm16                  LUI r1, 0x1234
#   mem    -- a, [b + signed imm16]              LD r1, [r2 + 8]   /  ST r1, [r2 + 8]
#   br     -- a, b, label (signed imm16 words)   BEQ r1, r2, loop
#   j      -- label (signed imm24 words)         JMP loop
#   in     -- a, port (imm16)                    IN r1, 0x10
#   out    -- port (imm16), a                    OUT 0x10, r1
#   rdcr   -- a, control register (imm16)        RDCR r1, ptbr
#   wrcr   -- control register (imm16), a        WRCR ptbr, r1
#   u      -- unsigned imm16 only                 VMCALL 3
FORMATS = ("none", "a", "ab", "abc", "abi", "abu", "abs", "ai", "au", "mem", "br", "j",
           "in", "out", "rdcr", "wrcr", "u")


@dataclass(frozen=True)
class Instruction:
    """One row of the instruction table."""

    mnemonic: str
    opcode: int
    fmt: str
    cls: str
    sensitivity: Optional[str]  # None, "control" or "behaviour"
    cycles: int
    summary: str

    @property
    def privileged(self) -> bool:
        return self.cls == PRIVILEGED

    @property
    def sensitive(self) -> bool:
        return self.sensitivity is not None


def _i(mn, op, fmt, cls, sens, cyc, summary):
    return Instruction(mn, op, fmt, cls, sens, cyc, summary)


C, B = "control", "behaviour"

#: The instruction table.  Opcodes are grouped by kind with gaps, like a control ROM.
INSTRUCTIONS: Tuple[Instruction, ...] = (
    # -- moves ------------------------------------------------------------------------------
    _i("NOP",   0x01, "none", INNOCUOUS, None, 1, "do nothing"),
    _i("MOV",   0x02, "ab",   INNOCUOUS, None, 1, "a = b"),
    _i("MOVI",  0x03, "ai",   INNOCUOUS, None, 1, "a = sign-extended imm16"),
    _i("LUI",   0x04, "au",   INNOCUOUS, None, 1, "a = imm16 << 16"),
    # -- three-register ALU -------------------------------------------------------------------
    _i("ADD",   0x10, "abc",  INNOCUOUS, None, 1, "a = b + c (mod 2**32)"),
    _i("SUB",   0x11, "abc",  INNOCUOUS, None, 1, "a = b - c (mod 2**32)"),
    _i("AND",   0x12, "abc",  INNOCUOUS, None, 1, "a = b & c"),
    _i("OR",    0x13, "abc",  INNOCUOUS, None, 1, "a = b | c"),
    _i("XOR",   0x14, "abc",  INNOCUOUS, None, 1, "a = b ^ c"),
    _i("SHL",   0x15, "abc",  INNOCUOUS, None, 1, "a = b << (c & 31)"),
    _i("SHR",   0x16, "abc",  INNOCUOUS, None, 1, "a = b >> (c & 31), logical"),
    _i("SAR",   0x17, "abc",  INNOCUOUS, None, 1, "a = b >> (c & 31), arithmetic"),
    _i("MUL",   0x18, "abc",  INNOCUOUS, None, 3, "a = b * c (low 32 bits)"),
    _i("DIV",   0x19, "abc",  INNOCUOUS, None, 20, "a = b // c, unsigned; c == 0 raises #DE"),
    _i("MOD",   0x1A, "abc",  INNOCUOUS, None, 20, "a = b % c, unsigned; c == 0 raises #DE"),
    _i("SLT",   0x1B, "abc",  INNOCUOUS, None, 1, "a = 1 if b < c (signed) else 0"),
    _i("SLTU",  0x1C, "abc",  INNOCUOUS, None, 1, "a = 1 if b < c (unsigned) else 0"),
    # -- register-immediate ALU ---------------------------------------------------------------
    _i("ADDI",  0x20, "abi",  INNOCUOUS, None, 1, "a = b + sign-extended imm16"),
    _i("ANDI",  0x21, "abu",  INNOCUOUS, None, 1, "a = b & zero-extended imm16"),
    _i("ORI",   0x22, "abu",  INNOCUOUS, None, 1, "a = b | zero-extended imm16"),
    _i("XORI",  0x23, "abu",  INNOCUOUS, None, 1, "a = b ^ zero-extended imm16"),
    _i("SHLI",  0x24, "abs",  INNOCUOUS, None, 1, "a = b << (imm & 31)"),
    _i("SHRI",  0x25, "abs",  INNOCUOUS, None, 1, "a = b >> (imm & 31), logical"),
    _i("SARI",  0x26, "abs",  INNOCUOUS, None, 1, "a = b >> (imm & 31), arithmetic"),
    # -- memory and stack ---------------------------------------------------------------------
    _i("LD",    0x30, "mem",  INNOCUOUS, None, 2, "a = word at [b + imm16]"),
    _i("ST",    0x31, "mem",  INNOCUOUS, None, 2, "word at [b + imm16] = a"),
    _i("PUSH",  0x32, "a",    INNOCUOUS, None, 2, "sp -= 4; [sp] = a"),
    _i("POP",   0x33, "a",    INNOCUOUS, None, 2, "a = [sp]; sp += 4"),
    # -- control flow -------------------------------------------------------------------------
    _i("BEQ",   0x40, "br",   INNOCUOUS, None, 1, "if a == b: jump"),
    _i("BNE",   0x41, "br",   INNOCUOUS, None, 1, "if a != b: jump"),
    _i("BLT",   0x42, "br",   INNOCUOUS, None, 1, "if a < b (signed): jump"),
    _i("BGE",   0x43, "br",   INNOCUOUS, None, 1, "if a >= b (signed): jump"),
    _i("BLTU",  0x44, "br",   INNOCUOUS, None, 1, "if a < b (unsigned): jump"),
    _i("BGEU",  0x45, "br",   INNOCUOUS, None, 1, "if a >= b (unsigned): jump"),
    _i("JMP",   0x46, "j",    INNOCUOUS, None, 1, "jump (pc-relative)"),
    _i("JR",    0x47, "a",    INNOCUOUS, None, 1, "jump to the address in a"),
    _i("CALL",  0x48, "j",    INNOCUOUS, None, 2, "push return address; jump (pc-relative)"),
    _i("CALLR", 0x49, "a",    INNOCUOUS, None, 2, "push return address; jump to the address in a"),
    _i("RET",   0x4A, "none", INNOCUOUS, None, 2, "pop the return address into pc"),
    # -- system -------------------------------------------------------------------------------
    _i("SYSCALL", 0x50, "none", TRAPPING, C, 2,
       "system call: trap to ring 0 through vector 0x80"),
    _i("SYSRET",  0x51, "none", PRIVILEGED, C, 2,
       "pop a trap frame and return to ring 3 with interrupts enabled"),
    _i("IRET",    0x52, "none", PRIVILEGED, C, 2,
       "pop a trap frame: restore pc, ring, interrupt flag and sp"),
    _i("HLT",     0x53, "none", PRIVILEGED, C, 1,
       "wait for the next interrupt (stops the machine if none can come)"),
    _i("IN",      0x54, "in",   PRIVILEGED, C, 5, "a = read from I/O port imm16"),
    _i("OUT",     0x55, "out",  PRIVILEGED, C, 5, "write a to I/O port imm16"),
    _i("CLI",     0x56, "none", PRIVILEGED, C, 1, "clear the interrupt flag (mask interrupts)"),
    _i("STI",     0x57, "none", PRIVILEGED, C, 1, "set the interrupt flag (allow interrupts)"),
    _i("WRCR",    0x58, "wrcr", PRIVILEGED, C, 5, "write control register imm16 from a"),
    _i("RDCR",    0x59, "rdcr", PRIVILEGED, C, 2, "read control register imm16 into a"),
    _i("INVLPG",  0x5A, "a",    PRIVILEGED, C, 5, "drop the TLB entry for the address in a"),
    _i("TLBFLUSH", 0x5B, "none", PRIVILEGED, C, 10, "drop every TLB entry"),
    # -- sensitive but unprivileged (the x86 problem) ------------------------------------------
    _i("PUSHF",   0x60, "none", SENSITIVE, B, 2,
       "push FLAGS (reveals the real interrupt flag, like x86 PUSHF)"),
    _i("POPF",    0x61, "none", SENSITIVE, C, 2,
       "pop FLAGS; outside ring 0 a change of the interrupt flag is silently ignored"),
    _i("GETCPL",  0x62, "a",    SENSITIVE, B, 1,
       "a = current privilege level (like reading CS on x86)"),
    _i("RDTVB",   0x63, "a",    SENSITIVE, B, 1,
       "a = trap-vector base (like x86 SIDT, the 'Red Pill')"),
    # -- reserved for monitors: #UD on the bare machine ----------------------------------------
    _i("VMCALL",  0xF0, "u",    MONITOR, C, 0,
       "hypercall number imm16 to the monitor (#UD on the bare machine, like x86 VMCALL)"),
    _i("CALLOUT", 0xF1, "u",    MONITOR, C, 0,
       "binary-translator callout imm16 to the monitor (#UD on the bare machine)"),
)

BY_MNEMONIC: Dict[str, Instruction] = {ins.mnemonic: ins for ins in INSTRUCTIONS}
BY_OPCODE: Dict[int, Instruction] = {ins.opcode: ins for ins in INSTRUCTIONS}
assert len(BY_MNEMONIC) == len(INSTRUCTIONS) and len(BY_OPCODE) == len(INSTRUCTIONS)

# Opcode constants, e.g. OP_ADD == 0x10 (generated from the table so they cannot drift).
globals().update({"OP_" + ins.mnemonic: ins.opcode for ins in INSTRUCTIONS})

#: Opcodes 0xF0..0xFF are reserved for monitors (callouts, hypercalls).  On the bare machine they
#: raise #UD like every other undefined opcode, including the two the table names.
RESERVED_MONITOR_OPCODES = range(0xF0, 0x100)
#: The instructions the bare CPU implements (everything but the monitor class).
MACHINE_INSTRUCTIONS: Tuple[Instruction, ...] = tuple(i for i in INSTRUCTIONS if i.cls != MONITOR)

# --------------------------------------------------------------------------------------------
# Trap vectors (x86 numbers where x86 has one; Linux puts the timer IRQ at 32 and int 0x80)
# --------------------------------------------------------------------------------------------
VEC_DE = 0      # divide error
VEC_UD = 6      # invalid opcode
VEC_GP = 13     # general protection
VEC_PF = 14     # page fault
VEC_TIMER = 32  # timer interrupt (IRQ 0, remapped above the exceptions as Linux does)
VEC_SYSCALL = 0x80
NUM_VECTORS = 256

VECTOR_NAMES = {VEC_DE: "#DE divide error", VEC_UD: "#UD invalid opcode",
                VEC_GP: "#GP general protection", VEC_PF: "#PF page fault",
                VEC_TIMER: "timer interrupt", VEC_SYSCALL: "system call"}
#: Short names used as event keys.
VECTOR_KEYS = {VEC_DE: "divide_error", VEC_UD: "invalid_opcode", VEC_GP: "general_protection",
               VEC_PF: "page_fault", VEC_TIMER: "timer_interrupt", VEC_SYSCALL: "syscall"}

# Page-fault error code bits (x86 layout)
PF_PRESENT = 1 << 0   # 1: protection violation on a present page; 0: page not present
PF_WRITE = 1 << 1     # the access was a write
PF_USER = 1 << 2      # the access was made in ring 3
PF_FETCH = 1 << 4     # the access was an instruction fetch

# FLAGS register: only the interrupt flag is defined (bit 9, as on x86)
FLAG_IF = 1 << 9

# --------------------------------------------------------------------------------------------
# Control registers (operand of WRCR / RDCR)
# --------------------------------------------------------------------------------------------
CR_PAGING = 0
CR_PTBR = 1
CR_FAULT_ADDR = 2
CR_TVB = 3
CR_KSP = 4
CR_SCRATCH = 5
NUM_CRS = 6
CR_NAMES = {"paging": CR_PAGING, "ptbr": CR_PTBR, "fault_addr": CR_FAULT_ADDR, "tvb": CR_TVB,
            "ksp": CR_KSP, "scratch": CR_SCRATCH}
#: What each control register means (the ISA reference prints this).
CR_DESCRIPTIONS = {
    "paging": "bit 0: paging enabled (writing it flushes the TLB)",
    "ptbr": "page-table root: physical address of the top table (bits 31..12) | ASID (bits 11..0)",
    "fault_addr": "virtual address of the last page fault (x86 CR2)",
    "tvb": "trap-vector base: address of the 256-entry vector table (0xFFFFFFFF = none)",
    "ksp": "kernel stack pointer loaded on a trap from ring > 0 (x86 TSS.esp0)",
    "scratch": "a free register for the kernel (like RISC-V sscratch)",
}
NO_TVB = 0xFFFFFFFF

# --------------------------------------------------------------------------------------------
# I/O ports (operand of IN / OUT): part of the guest ABI, defined in kernel_sim/abi.py
# --------------------------------------------------------------------------------------------
from .abi import (BLK_READ, BLK_WRITE, PORT_BLK_BUFFER, PORT_BLK_COMMAND,  # noqa: E402,F401
                  PORT_BLK_SECTOR, PORT_BLK_SIZE, PORT_CONSOLE, PORT_NAMES, PORT_TICKS,
                  PORT_TIMER, SECTOR_BYTES, port_descriptions)

#: What each port does (the ISA reference prints this).
PORT_DESCRIPTIONS = port_descriptions()

# --------------------------------------------------------------------------------------------
# Paging
# --------------------------------------------------------------------------------------------
PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT        # 4 KiB pages
LEVEL_BITS = 10                    # every table is one page of 1024 four-byte entries
PTE_P = 1 << 0                     # present
PTE_W = 1 << 1                     # writable
PTE_U = 1 << 2                     # user-accessible (ring 3)
PTE_A = 1 << 5                     # accessed (set by the MMU)
PTE_D = 1 << 6                     # dirty (set by the MMU on a write, leaf entries only)
PTE_FRAME_MASK = 0xFFFFF000
ASID_MASK = 0xFFF

#: System calls of the course's guest kernels as ``(number, name, meaning)`` (the calling
#: convention: number in r0, arguments in r1..r3, result in r0).  The bare machine does not
#: interpret them; they are defined in :data:`kernel_sim.abi.SYSCALL_TABLE`.
SYSCALLS = tuple((c.number, c.name, c.args) for c in _abi.SYSCALL_TABLE)


#: The architecture's constants a program for this machine may name, in the order the generated
#: assembly include ``guests/machine.s`` lists them (``python -m kernel_sim.tools.generate``).
ASSEMBLY_CONSTANTS = (
    ("paging", ("PAGE_SHIFT", "PAGE_SIZE", "LEVEL_BITS", "PTE_P", "PTE_W", "PTE_U", "PTE_A",
                "PTE_D", "PTE_FRAME_MASK")),
    ("page-fault error code bits", ("PF_PRESENT", "PF_WRITE", "PF_USER", "PF_FETCH")),
    ("flags word (PUSHF / POPF, trap frames)", ("FLAG_IF",)),
    ("trap vectors", ("VEC_DE", "VEC_UD", "VEC_GP", "VEC_PF", "VEC_TIMER", "VEC_SYSCALL",
                      "NUM_VECTORS")),
)


def assembly_include() -> str:
    """The text of ``guests/machine.s``: the machine's architectural constants (page size, PTE
    and error-code bits, the interrupt flag, trap vectors) for assembly programs, so that a
    guest kernel names them instead of copying numbers from this module."""
    g = globals()
    lines = ["; machine.s -- the toy machine's architectural constants, for assembly programs.",
             "; generated from kernel_sim/isa.py by `python -m kernel_sim.tools.generate`:",
             "; DO NOT EDIT.  Change kernel_sim/isa.py and run the generator again."]
    for title, names in ASSEMBLY_CONSTANTS:
        lines += ["", f"; ---- {title}"]
        for name in names:
            value = g[name]
            shown = f"0x{value:X}" if value > 0xFFFF or name == "FLAG_IF" else str(value)
            lines.append(f"{name:<17} = {shown}")
    return "\n".join(lines) + "\n"


def sign16(v: int) -> int:
    """Sign-extend a 16-bit field."""
    v &= 0xFFFF
    return v - 0x10000 if v & 0x8000 else v


def sign24(v: int) -> int:
    """Sign-extend a 24-bit field."""
    v &= 0xFFFFFF
    return v - 0x1000000 if v & 0x800000 else v


def encode(opcode: int, a: int = 0, b: int = 0, imm: int = 0) -> int:
    """Pack one instruction word (imm16 form)."""
    return ((opcode & 0xFF) << OPCODE_SHIFT) | ((a & REG_MASK) << A_SHIFT) \
        | ((b & REG_MASK) << B_SHIFT) | (imm & IMM16_MASK)


def encode_j(opcode: int, offset_words: int) -> int:
    """Pack a JMP/CALL word with a signed 24-bit word offset."""
    return ((opcode & 0xFF) << OPCODE_SHIFT) | (offset_words & IMM24_MASK)


def decode(word: int) -> Tuple[int, int, int, int]:
    """Split a word into (opcode, a, b, imm16)."""
    word &= WORD_MASK
    return (word >> OPCODE_SHIFT, (word >> A_SHIFT) & REG_MASK, (word >> B_SHIFT) & REG_MASK,
            word & IMM16_MASK)


def instruction_classes() -> List[dict]:
    """The classification table as plain rows, for notebooks (``pandas.DataFrame(rows)``)."""
    return [dict(mnemonic=i.mnemonic, opcode=f"0x{i.opcode:02X}", cls=i.cls,
                 sensitivity=i.sensitivity or "-", privileged=i.privileged, cycles=i.cycles,
                 summary=i.summary) for i in INSTRUCTIONS]


def popek_goldberg_violations(strict: bool = False) -> List[str]:
    """Mnemonics that are sensitive but neither privileged nor always-trapping.

    Popek & Goldberg's Theorem 1 holds for the toy ISA exactly when this list is empty.  With
    ``strict=True`` the machine makes the sensitive instructions trap outside ring 0, so it is.
    """
    if strict:
        return []
    return [i.mnemonic for i in INSTRUCTIONS
            if i.sensitive and i.cls not in (PRIVILEGED, TRAPPING, MONITOR)]


def cost_table() -> List[int]:
    """Base cycles per opcode (256 entries; undefined opcodes cost 1)."""
    costs = [1] * 256
    for ins in INSTRUCTIONS:
        costs[ins.opcode] = ins.cycles
    return costs
