"""Differential test: the jitted CPU against the reference interpreter, on random programs.

Hypothesis builds random but meaningful machines -- a program of mostly valid instructions whose
registers hold useful addresses, a vector table with small trap handlers, page tables of 1..4
levels with random permissions, a small TLB (so entries collide), the timer, strict mode and
intercepts -- runs each through :class:`naive.NaiveMachine` and through the jitted
``kernel_sim.cpu.run_native``, and compares the *whole* state: registers, every ``ctrl`` slot, all
of memory, the TLB, every counter, the console, the trace and the stop reason.

After the batch the test checks that the batch really exercised the machine: every opcode of the
ISA retired at least once (a batch may miss at most two rare ones by chance), every trap kind
(#DE, #UD, #GP, #PF, timer, system call) was delivered, every stop reason occurred and the block
device copied sectors both ways.  A generator that silently stopped producing, say, page faults
would otherwise make this test pass without testing anything.

Settings: ``KERNEL_SIM_FUZZ_EXAMPLES`` (default 500) sets the number of programs (the coverage
check needs at least 300); with ``KERNEL_SIM_FUZZ=1`` (``make fuzz``) the examples are random
instead of a fixed, derandomized set, and failures are remembered in Hypothesis' database.

A note on the generator: Hypothesis replays and mutates its own examples, so 500 examples hold
only a few hundred distinct programs.  To keep the coverage check robust anyway, half of every
program's opcodes walk through the ISA from a random starting point (``rotation``), handlers run
extra system instructions in ring 0, and rare choices sit at the top of ``PERCENT``'s range
(Hypothesis favours small numbers).
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from naive import NaiveMachine

from kernel_sim import isa
from kernel_sim import state as S

FUZZ = os.environ.get("KERNEL_SIM_FUZZ", "").strip() == "1"
EXAMPLES = int(os.environ.get("KERNEL_SIM_FUZZ_EXAMPLES", "500"))
#: below this many programs the coverage check is skipped (too few to exercise everything)
MIN_EXAMPLES_FOR_COVERAGE = 300
#: opcodes a batch may miss by chance (see the coverage check)
MAX_MISSING_OPCODES = 2

# ---- memory layout of a generated machine (64 or 128 KiB of physical memory) ------------------
PAGE = isa.PAGE_SIZE
TVB_ADDR = 0x0000           # page 0: the vector table
HANDLERS = 0x1000           # page 1: trap handlers (ring 0 code)
CODE = 0x2000               # pages 2-3: the program
USER_STACK = 0x5000         # page 4 holds the user stack (sp starts at its top)
KERNEL_STACK = 0x6000       # page 5 holds the kernel stack (KSP)
DATA = 0x6000               # pages 6-7: data
TABLES = 0x8000             # pages 8..11: page tables, root first, leaf last
ALIAS_VA = 0x400000         # with 2+ levels, root entry 1 may alias the low 4 MiB here
TRAP_VECTORS = (isa.VEC_DE, isa.VEC_UD, isa.VEC_GP, isa.VEC_PF, isa.VEC_TIMER, isa.VEC_SYSCALL)
ALL_STOPS = (S.STOP_BUDGET, S.STOP_HALT, S.STOP_UNHANDLED_TRAP, S.STOP_TRAP_EXIT,
             S.STOP_TRIPLE_FAULT, S.STOP_UNTIL)
CTRL_NAMES = {v: k for k, v in vars(S).items() if k.startswith("C_") and isinstance(v, int)}
PERMS = (isa.PTE_P, isa.PTE_W, isa.PTE_U, isa.PTE_A, isa.PTE_D)


@dataclass
class Case:
    """One generated machine: settings, initial state and memory contents."""

    memory_size: int
    levels: int
    tlb_size: int
    strict: bool
    ring: int
    costs: list[int]
    console_size: int
    trace_size: int
    budget: int
    until: int | None
    program: list[int]
    regs: list[int]
    ctrl: dict[int, int]                   # ctrl index -> initial value
    words: dict[int, int]                  # physical word index -> initial value (others 0)
    tlb: dict[int, tuple[int, int]] = field(default_factory=dict)   # slot -> (key, value)
    intercept: tuple[int, ...] = ()
    disk_sectors: int = 0
    disk: list[int] = field(default_factory=list)    # the disk's initial words

    def _repr_pretty_(self, printer, cycle) -> None:      # Hypothesis prints failing cases so
        printer.text(repr(self))

    def __repr__(self) -> str:
        ctrl = ", ".join(f"{CTRL_NAMES[i]}={v:#x}" for i, v in sorted(self.ctrl.items()))
        lines = [f"Case(memory={self.memory_size}, levels={self.levels}, tlb={self.tlb_size}, "
                 f"strict={self.strict}, ring={self.ring}, budget={self.budget}, "
                 f"until={self.until}, console={self.console_size}, trace={self.trace_size}, "
                 f"disk_sectors={self.disk_sectors},",
                 f"  intercept={self.intercept}, tlb_entries={self.tlb},",
                 f"  regs={[hex(r) for r in self.regs]},", f"  ctrl: {ctrl},",
                 f"  costs[:256] nonzero sample={self.costs[:8]}..., extras={self.costs[256:260]}",
                 "  program:"]
        lines += [f"    {CODE + 4 * n:#07x}: {disassemble(w)}" for n, w in enumerate(self.program)]
        lines.append("  other memory words:")
        code = range(CODE // 4, CODE // 4 + len(self.program))
        lines += [f"    [{4 * i:#07x}] = {v:#010x}  {disassemble(v)}"
                  for i, v in sorted(self.words.items()) if i not in code]
        return "\n".join(lines) + ")"


def disassemble(word: int) -> str:
    """A self-contained disassembly for failure messages (no dependency on the assembler)."""
    op, a, b, imm = isa.decode(word)
    ins = isa.BY_OPCODE.get(op)
    if ins is None:
        return f".word {word:#010x}  (invalid opcode {op:#04x})"
    if ins.fmt == "j":
        return f"{ins.mnemonic} {isa.sign24(word):+d}"
    if ins.fmt == "none":
        return ins.mnemonic
    return f"{ins.mnemonic} a=r{a} b=r{b} imm={imm:#06x} ({isa.sign16(imm):+d}, c=r{imm & 15})"


# ---- strategies ---------------------------------------------------------------------------
# Strategies are built once at import: building them inside the draws costs more than the run.
E = isa.encode
SCRATCH = 14                 # handlers use r14 for their own work
P, W, U = isa.PTE_P, isa.PTE_W, isa.PTE_U

REG = st.sampled_from(list(range(14)) * 8 + [14, 15])      # rarely r14 (handler scratch) or sp
ANY_REG = st.integers(0, 15)
ANY_WORD = st.integers(0, isa.WORD_MASK)
PERCENT = st.integers(0, 99)
INVALID_OPCODE = st.sampled_from([0x00, 0x05, 0x2F, 0x64, 0xF0, 0xFF])
IMM16 = st.integers(0, 0xFFFF)
SMALL_IMM = st.one_of(st.integers(-8, 8), IMM16)
SHIFT_IMM = st.one_of(st.integers(0, 33), IMM16)
MEM_IMM = st.one_of(st.integers(-6, 6).map(lambda k: 4 * k), st.integers(-9, 9), IMM16)
C_FIELD = st.tuples(ANY_REG, st.sampled_from([0, 0, 0, 0x1230])).map(lambda t: t[0] | t[1])
FAR_OFFSET = st.integers(-(1 << 15), (1 << 15) - 1)
PORT = st.sampled_from([isa.PORT_CONSOLE, isa.PORT_CONSOLE, isa.PORT_TIMER, isa.PORT_TICKS,
                        isa.PORT_BLK_SECTOR, isa.PORT_BLK_BUFFER, isa.PORT_BLK_COMMAND,
                        isa.PORT_BLK_COMMAND, isa.PORT_BLK_SIZE, 0x99, 0xFFFF])
DISK_SECTORS = st.sampled_from([0, 2, 2])
DATA_LIMIT = st.sampled_from([0, 0, 0, 0x3000, 0x5000, 0x80000000])
CR = st.one_of(st.integers(0, isa.NUM_CRS - 1), st.integers(0, isa.NUM_CRS - 1), IMM16)
OPCODES = st.sampled_from(isa.INSTRUCTIONS)


SYSTEM_OPCODES = st.sampled_from([i for i in isa.INSTRUCTIONS
                                  if i.cls != isa.INNOCUOUS and i.opcode != isa.OP_HLT])


@st.composite
def instruction(draw, index: int, length: int, system: bool = False, rotation: int = -1):
    """One instruction word, biased toward valid encodings with useful operands.

    ``system=True`` draws only privileged, sensitive and trapping instructions (for handlers,
    which run in ring 0 where the privileged ones retire).  ``rotation >= 0`` picks the
    opcode as ``MACHINE_INSTRUCTIONS[(rotation + index) % len(...)]`` half of the time, so that
    every program spreads over the whole ISA even when Hypothesis repeats itself.
    """
    choice = draw(PERCENT)        # rare cases at the top: Hypothesis favours small numbers
    if choice >= 97 and not system:
        return draw(ANY_WORD)                                   # anything at all
    if choice >= 95 and not system:
        return E(draw(INVALID_OPCODE), draw(ANY_REG), draw(ANY_REG), draw(IMM16))
    if rotation >= 0 and choice >= 45:
        ins = isa.MACHINE_INSTRUCTIONS[(rotation + index) % len(isa.MACHINE_INSTRUCTIONS)]
    else:
        ins = draw(SYSTEM_OPCODES if system else OPCODES)
    op, fmt = ins.opcode, ins.fmt
    if fmt == "none":
        return E(op)
    if fmt == "a":
        return E(op, draw(REG))
    if fmt == "ab":
        return E(op, draw(REG), draw(ANY_REG))
    if fmt == "abc":
        return E(op, draw(REG), draw(ANY_REG), draw(C_FIELD))
    if fmt in ("abi", "abu", "ai", "au"):
        return E(op, draw(REG), draw(ANY_REG), draw(SMALL_IMM))
    if fmt == "abs":
        return E(op, draw(REG), draw(ANY_REG), draw(SHIFT_IMM))
    if fmt == "mem":
        return E(op, draw(REG if op == isa.OP_LD else ANY_REG), draw(ANY_REG), draw(MEM_IMM))
    if fmt in ("br", "j"):
        if draw(PERCENT) >= 95:
            offset = draw(FAR_OFFSET)
        else:
            offset = draw(st.integers(0, max(0, length - 1))) - (index + 1)
        if fmt == "j":
            return isa.encode_j(op, offset)
        return E(op, draw(ANY_REG), draw(ANY_REG), offset)
    if fmt == "in":
        return E(op, draw(REG), 0, draw(PORT))
    if fmt == "out":
        return E(op, draw(ANY_REG), 0, draw(PORT))
    if fmt == "rdcr":
        return E(op, draw(REG), 0, draw(CR))
    if fmt == "wrcr":
        return E(op, draw(ANY_REG), 0, draw(CR))
    if fmt == "u":          # VMCALL / CALLOUT: #UD on the bare machine
        return E(op, 0, 0, draw(IMM16))
    raise AssertionError(f"format {fmt} not handled")   # pragma: no cover


SKIP = [E(isa.OP_LD, SCRATCH, isa.SP, 4),           # return pc += 4: skip the faulting
        E(isa.OP_ADDI, SCRATCH, SCRATCH, 4),        # instruction
        E(isa.OP_ST, SCRATCH, isa.SP, 4)]
HANDLER_BODIES = {
    "nothing": [],
    "count": [E(isa.OP_ADDI, 13, 13, 1)],
    "report": [E(isa.OP_RDCR, SCRATCH, 0, isa.CR_FAULT_ADDR),
               E(isa.OP_OUT, SCRATCH, 0, isa.PORT_CONSOLE)],
    "save": [E(isa.OP_RDCR, SCRATCH, 0, isa.CR_FAULT_ADDR),
             E(isa.OP_WRCR, SCRATCH, 0, isa.CR_SCRATCH)],
    # block-device DMA with whatever sector/buffer registers the program left
    "disk_read": [E(isa.OP_MOVI, SCRATCH, 0, isa.BLK_READ),
                  E(isa.OP_OUT, SCRATCH, 0, isa.PORT_BLK_COMMAND)],
    "disk_write": [E(isa.OP_MOVI, SCRATCH, 0, isa.BLK_WRITE),
                   E(isa.OP_OUT, SCRATCH, 0, isa.PORT_BLK_COMMAND)],
}
HANDLER_KIND = st.sampled_from(["installed"] * 20 + ["missing", "garbage"])
HANDLER_BODY = st.sampled_from(sorted(HANDLER_BODIES))
HANDLER_EXIT = st.sampled_from([isa.OP_IRET] * 5 + [isa.OP_SYSRET, isa.OP_HLT])
GARBAGE_HANDLER = st.sampled_from([DATA + 0x100, 0x3FFC, 0xFFFFFFF0, 0x7001])


@st.composite
def handlers(draw):
    """Handler code for the six trap kinds; returns (words at HANDLERS, vector -> address).

    Fault handlers mostly skip the faulting instruction (a handler that just returns would
    retry it until the budget runs out); interrupt and system-call handlers just return.
    """
    words: list[int] = []
    table: dict[int, int] = {}
    for vector in TRAP_VECTORS:
        kind = draw(HANDLER_KIND)
        if kind == "missing":
            continue
        if kind == "garbage":
            table[vector] = draw(GARBAGE_HANDLER)
            continue
        table[vector] = HANDLERS + 4 * len(words)
        body = list(HANDLER_BODIES[draw(HANDLER_BODY)])
        if vector not in (isa.VEC_TIMER, isa.VEC_SYSCALL) and draw(PERCENT) >= 10:
            body = SKIP + body
        for _ in range(draw(st.integers(0, 2))):
            body.append(draw(instruction(0, 1, system=draw(st.booleans()))))
        words += body + [E(draw(HANDLER_EXIT))]
    return words, table


def page_perms(rng: random.Random, page: int, levels: int, ring: int) -> int:
    """PTE bits (P, W, U and preset A/D) of identity-mapped physical page ``page``.

    The pages the kernel needs (vector table, handlers, kernel stack, code, user stack) are
    almost always usable; the rest get any combination, including not present.
    """
    if page in (0, 1, 5) or 8 <= page < 8 + levels:          # kernel data, code, tables
        perms = P | W | (U if rng.random() < 0.2 else 0)
    elif page in (2, 3):                                       # the program
        perms = P | (U if ring == 3 or rng.random() < 0.5 else 0) | (W if rng.random() < .3 else 0)
    elif page == 4:                                            # the user stack
        perms = P | W | U
    else:
        perms = rng.choice([0, P, P | W, P | U, P | W | U, P | W | U])
    if perms and rng.random() < 0.03:
        perms = rng.choice([0, P, P | U])                      # sometimes broken anyway
    return perms | rng.choice([0, 0, 0, isa.PTE_A, isa.PTE_A | isa.PTE_D])


SETTINGS = st.tuples(st.sampled_from([64 << 10, 64 << 10, 128 << 10]), st.integers(1, 4),
                     st.sampled_from([1, 2, 4, 8, 16]), st.booleans(),
                     st.sampled_from([0, 0, 0, 1, 2, 3, 3]))
SEED = st.integers(0, 2 ** 32)
LENGTH = st.integers(8, 48)
ENDING = st.sampled_from(["fall", "hlt", "loop", "loop"])
TVB_CHOICE = st.sampled_from(["table"] * 24 + ["none", "none", "beyond"])
INNER_PERMS = st.sampled_from([P | W | U] * 40 + [P | W, P | U, 0])
ASID = st.sampled_from([0, 0, 1, 2])
SP_CHOICE = st.sampled_from([USER_STACK] * 20 + [KERNEL_STACK - 40, "end", 0x3000, 0])
TICKS = st.sampled_from([0, 0, 1000, (1 << 32) - 3])
PERIOD = st.integers(1, 40)
KSP_CHOICE = st.sampled_from([KERNEL_STACK] * 16 + [USER_STACK, "beyond"])
TLB_ASID = st.sampled_from(["same", "same", "other"])
TLB_PERMS = st.sampled_from([0, W, U, W | U, W | U | isa.PTE_D])
INTERCEPTS = st.lists(st.sampled_from(TRAP_VECTORS), max_size=2)
CONSOLE_SIZE = st.sampled_from([3, 64])
TRACE_SIZE = st.sampled_from([1, 5, 64])
BUDGET = st.integers(20, 300)


@st.composite
def cases(draw) -> Case:
    memory_size, levels, tlb_size, strict, ring = draw(SETTINGS)
    pages = memory_size // PAGE
    rng = random.Random(draw(SEED))       # bulk data (costs, data words, page bits) from a seed
    costs = [rng.randrange(0, 30) for _ in range(256)] + [rng.randrange(0, 60)
                                                          for _ in range(S.NUM_COSTS - 256)]
    words: dict[int, int] = {}

    # the program, and how it ends
    length = draw(LENGTH)
    rotation = rng.randrange(len(isa.MACHINE_INSTRUCTIONS))
    program = [draw(instruction(n, length, rotation=rotation)) for n in range(length)]
    ending = draw(ENDING)
    if ending == "hlt":
        program.append(E(isa.OP_HLT))
    elif ending == "loop":
        program.append(isa.encode_j(isa.OP_JMP, -(len(program) + 1)))
    for n, w in enumerate(program):
        words[CODE // 4 + n] = w

    # trap handlers and the vector table
    handler_words, table = draw(handlers())
    for n, w in enumerate(handler_words):
        words[HANDLERS // 4 + n] = w
    for vector, address in table.items():
        words[(TVB_ADDR + 4 * vector) // 4] = address
    tvb = {"table": TVB_ADDR, "none": isa.NO_TVB, "beyond": memory_size}[draw(TVB_CHOICE)]

    # page tables: root at TABLES, one table per level, entry 0 chains down to the leaf
    tables = [TABLES + PAGE * k for k in range(levels)]         # tables[0] is the root
    for upper, lower in zip(tables, tables[1:], strict=False):
        if rng.random() < 0.02:
            lower = 0x7FFFF000                       # a table beyond memory: the walk's #GP
        words[upper // 4] = lower | draw(INNER_PERMS)
    leaf = tables[-1]
    if levels == 2 and rng.random() < 0.5:
        words[tables[0] // 4 + 1] = leaf | P | W | U               # alias: 4 MiB + x -> x
    for page in range(pages):
        perms = page_perms(rng, page, levels, ring)
        if perms:
            words[leaf // 4 + page] = page * PAGE | perms
    for vpn in range(pages, pages + 3):                          # a few odd mappings
        frame = rng.choice([0, DATA, memory_size, 0xFFFFF000])
        words[leaf // 4 + vpn] = frame | rng.choice([0, P, P | W | U])
    asid = draw(ASID)
    ptbr = tables[0] | asid

    # data: random words, and at the top of the user stack a plausible trap frame for an
    # IRET / SYSRET / RET / POPF / POP that the program runs with sp there
    for address in (USER_STACK - 64, DATA, DATA + 0x1000):
        for n in range(16):
            words[address // 4 + n] = rng.choice([0, rng.randrange(9), CODE + 4 * (n % length),
                                                  isa.FLAG_IF, rng.randrange(1 << 32)])
    frame = [CODE + 4 * rng.randrange(length), CODE + 4 * rng.randrange(length),
             rng.choice([0, 0, 1, 2, 3, 3]), rng.choice([0, isa.FLAG_IF]), USER_STACK]
    for n, value in enumerate(frame):
        words[USER_STACK // 4 + n] = value

    # registers: useful addresses and values
    useful = st.one_of(
        st.just(0), st.integers(0, 8), ANY_WORD,
        st.integers(0, 0x7FF).map(lambda w: DATA + 4 * w),
        st.integers(0, length - 1).map(lambda n: CODE + 4 * n),
        st.integers(0, pages + 2).map(lambda p: leaf + 4 * p),
        st.integers(0, pages + 2).map(lambda p: p * PAGE + 0x10),
        st.sampled_from([USER_STACK - 8, KERNEL_STACK - 8, ALIAS_VA + DATA, memory_size,
                         memory_size - 4, 0xFFFFFFFC, 0x80000000, isa.FLAG_IF, ptbr,
                         tables[0] | 3, tables[0], 1, 5, 30, 0x41, HANDLERS]))
    regs = [draw(useful) for _ in range(15)]
    sp = draw(SP_CHOICE)
    regs.append(memory_size if sp == "end" else sp)

    # control state
    paging = int(draw(PERCENT) >= 25)
    ticks = draw(TICKS)
    period = draw(PERIOD) if draw(PERCENT) >= 30 else 0
    deadline = ticks + draw(st.integers(1, period)) if period else S.NEVER
    ksp = draw(KSP_CHOICE)
    ctrl = {
        S.C_PC: CODE, S.C_CPL: ring, S.C_IF: int(draw(PERCENT) >= 30), S.C_PAGING: paging,
        S.C_PTBR: ptbr, S.C_TVB: tvb,
        S.C_KSP: memory_size + 8 if ksp == "beyond" else ksp,
        S.C_SCRATCH: rng.randrange(4), S.C_FAULT_ADDR: 0, S.C_TICKS: ticks,
        S.C_TIMER_PERIOD: period, S.C_TIMER_DEADLINE: deadline,
        S.C_TIMER_PENDING: int(draw(PERCENT) >= 90),
        # a monitor's data limit (binary translation protects its translation cache with it)
        S.C_DATA_LIMIT: draw(DATA_LIMIT),
    }

    # stale or foreign TLB entries (the TLB is architecturally visible)
    tlb: dict[int, tuple[int, int]] = {}
    if draw(PERCENT) >= 75:
        for _ in range(rng.randrange(1, 4)):
            entry_asid = asid if draw(TLB_ASID) == "same" else 3
            # a stale entry of the current address space for a kernel or code page would
            # usually end the run at once; give those to another ASID
            vpn = rng.choice([6, 7] + list(range(12, pages))) if entry_asid == asid \
                else rng.randrange(pages)
            frame = rng.randrange(pages) * PAGE
            slot = (vpn ^ (vpn >> 7) ^ (vpn >> 14)) & (tlb_size - 1)
            tlb[slot] = (((entry_asid << 20) | vpn) + 1, frame | draw(TLB_PERMS))

    intercept = tuple(sorted(set(draw(INTERCEPTS)))) if draw(PERCENT) >= 70 else ()
    until = None
    if draw(PERCENT) >= 80:
        until = CODE + 4 * draw(st.integers(1, length))
    disk_sectors = draw(DISK_SECTORS)
    disk = [rng.randrange(1 << 32) for _ in range(disk_sectors * S.BLK_SECTOR_WORDS)]
    return Case(memory_size=memory_size, levels=levels, tlb_size=tlb_size, strict=strict,
                ring=ring, costs=costs, console_size=draw(CONSOLE_SIZE),
                trace_size=draw(TRACE_SIZE), budget=draw(BUDGET), until=until,
                program=program, regs=regs, ctrl=ctrl, words=words, tlb=tlb,
                intercept=intercept, disk_sectors=disk_sectors, disk=disk)


# ---- running both machines ----------------------------------------------------------------
def build_reference(case: Case) -> NaiveMachine:
    m = NaiveMachine(memory_size=case.memory_size, paging_levels=case.levels,
                     tlb_size=case.tlb_size, strict=case.strict, ring=case.ring,
                     costs=case.costs, console_size=case.console_size,
                     trace_size=case.trace_size, disk_sectors=case.disk_sectors)
    m.disk = list(case.disk)
    for index, value in case.words.items():
        m.mem[index] = value & isa.WORD_MASK
    m.regs = [r & isa.WORD_MASK for r in case.regs]
    for index, value in case.ctrl.items():       # VMX fields included (test_vmx_differential)
        setattr(m, NaiveMachine.CTRL_ATTRS[index], value)
    for slot, (key, value) in case.tlb.items():
        m.tlb[2 * slot], m.tlb[2 * slot + 1] = key, value
    for vector in case.intercept:
        m.intercept[vector] = 1
    m.until = -1 if case.until is None else case.until
    return m


def console_array(machine) -> np.ndarray:
    buffer = getattr(machine, "console_buffer", None)
    return machine.console if buffer is None else buffer


def run_jitted(case: Case, initial: dict):
    """Load the reference's initial arrays into a real Machine and run the jitted CPU."""
    from kernel_sim.cpu import run_native
    from kernel_sim.machine import Machine

    m = Machine(memory_size=case.memory_size, paging_levels=case.levels, tlb_size=case.tlb_size,
                strict=case.strict, ring=case.ring, console_size=case.console_size,
                trace_size=case.trace_size, disk_sectors=case.disk_sectors)
    console = console_array(m)
    for name, target in (("regs", m.regs), ("ctrl", m.ctrl), ("mem", m.mem), ("tlb", m.tlb),
                         ("counters", m.counters), ("costs", m.costs), ("console", console),
                         ("trace", m.trace), ("intercept", m.intercept)):
        target[...] = initial[name]
    reason = run_native(m.regs, m.ctrl, m.mem, m.tlb, m.costs, m.counters, console, m.trace,
                        m.intercept, case.budget)
    arrays = dict(regs=m.regs, ctrl=m.ctrl, mem=m.mem, tlb=m.tlb, counters=m.counters,
                  console=console, trace=m.trace)
    return int(reason), {k: np.array(v) for k, v in arrays.items()}


def differences(expected: dict, actual: dict) -> list[str]:
    """Readable differences between two exported states (reference first)."""
    out = []
    for name in ("regs", "ctrl", "tlb", "counters", "mem", "console", "trace"):
        want, got = np.asarray(expected[name]), np.asarray(actual[name])
        if want.shape != got.shape:
            out.append(f"{name}: shape {want.shape} (reference) != {got.shape} (jitted)")
            continue
        bad = np.argwhere(want != got)
        for index in bad[:12]:
            i = tuple(int(x) for x in index)
            label = f"{name}{list(i)}"
            if name == "ctrl":
                label = f"ctrl[{CTRL_NAMES.get(i[0], i[0])}]"
            elif name == "counters":
                c = i[0]
                label = (f"counters[{S.EVENT_NAMES[c]}]" if c < S.NUM_NAMED_EVENTS else
                         f"counters[vector {c - S.EV_VECTOR_BASE}]" if c < S.EV_OP_BASE else
                         f"counters[op {isa.BY_OPCODE.get(c - S.EV_OP_BASE, c)}]")
                if c >= S.EV_OP_BASE and (c - S.EV_OP_BASE) in isa.BY_OPCODE:
                    label = f"counters[op {isa.BY_OPCODE[c - S.EV_OP_BASE].mnemonic}]"
            elif name == "mem":
                label = f"mem[{4 * i[0]:#x}]"
            out.append(f"{label}: reference {int(want[i]):#x}, jitted {int(got[i]):#x}")
        if len(bad) > 12:
            out.append(f"{name}: ... {len(bad) - 12} more differences")
    return out


class Coverage:
    """What a batch of generated programs exercised, according to the reference."""

    def __init__(self):
        self.opcodes = set()
        self.vectors = set()
        self.stops = set()
        self.events = set()
        self.examples = 0

    def record(self, counters, stop: int) -> None:
        self.examples += 1
        self.opcodes |= {i.opcode for i in isa.MACHINE_INSTRUCTIONS
                         if counters[S.EV_OP_BASE + i.opcode]}
        self.vectors |= {v for v in TRAP_VECTORS if counters[S.EV_VECTOR_BASE + v]}
        self.stops.add(stop)
        self.events |= {name for name in ("blk_reads", "blk_writes")
                        if counters[S.EVENT_NAMES.index(name)]}

    def missing(self) -> list[str]:
        out = [f"opcode {i.mnemonic} never retired" for i in isa.MACHINE_INSTRUCTIONS
               if i.opcode not in self.opcodes]
        out += [f"vector {isa.VECTOR_NAMES[v]} never delivered" for v in TRAP_VECTORS
                if v not in self.vectors]
        out += [f"stop reason {S.STOP_NAMES[r]!r} never happened" for r in ALL_STOPS
                if r not in self.stops]
        out += [f"event {name} never counted" for name in ("blk_reads", "blk_writes")
                if name not in self.events]
        return out


def run_reference(case: Case):
    m = build_reference(case)
    initial = m.export()
    reason = m.run(case.budget, case.until)
    return initial, reason, m.export()


# ---- the tests ----------------------------------------------------------------------------
def _jitted_available() -> bool:
    try:
        from kernel_sim.cpu import run_native  # noqa: F401
        from kernel_sim.machine import Machine  # noqa: F401
    except ImportError:
        return False
    return True


needs_jit = pytest.mark.skipif(not _jitted_available(),
                               reason="kernel_sim.cpu.run_native is not importable")


@needs_jit
def test_machine_power_on_state_matches_reference():
    from kernel_sim.machine import Machine

    for levels, ring, strict in ((1, 0, False), (4, 3, True)):
        m = Machine(memory_size=64 << 10, paging_levels=levels, tlb_size=8, strict=strict,
                    ring=ring, console_size=16, trace_size=8)
        ref = NaiveMachine(memory_size=64 << 10, paging_levels=levels, tlb_size=8,
                           strict=strict, ring=ring, console_size=16, trace_size=8).export()
        actual = dict(regs=m.regs, ctrl=m.ctrl, mem=m.mem, tlb=m.tlb, counters=m.counters,
                      console=console_array(m), trace=m.trace)
        assert differences(ref, actual) == []


def test_generated_cases_run_on_the_reference():
    """The generator and the reference agree with themselves (runs without the jitted CPU)."""
    coverage = Coverage()

    @settings(max_examples=20, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=cases())
    def check(case):
        _, reason, final = run_reference(case)
        assert reason != S.STOP_NONE
        assert final["ctrl"][S.C_STOP_REASON] == reason
        coverage.record(final["counters"], reason)

    check()
    assert coverage.examples >= 20


@needs_jit
@pytest.mark.slow
def test_jitted_cpu_matches_reference_on_random_programs():
    coverage = Coverage()

    @settings(max_examples=EXAMPLES, derandomize=not FUZZ, deadline=None,
              database=None if not FUZZ else settings.default.database,
              suppress_health_check=list(HealthCheck), print_blob=True)
    @given(case=cases())
    def check(case):
        initial, ref_reason, expected = run_reference(case)
        coverage.record(expected["counters"], ref_reason)
        jit_reason, actual = run_jitted(case, initial)
        diffs = differences(expected, actual)
        if jit_reason != ref_reason:
            diffs.insert(0, f"stop reason: reference {S.STOP_NAMES[ref_reason]}, "
                            f"jitted {S.STOP_NAMES.get(jit_reason, jit_reason)}")
        assert not diffs, "jitted CPU differs from the reference:\n  " + "\n  ".join(diffs)

    check()
    if EXAMPLES >= MIN_EXAMPLES_FOR_COVERAGE:
        missing = coverage.missing()
        # A batch of 500 programs now and then misses ONE rare opcode (measured: about one
        # seed in five; Hypothesis's derandomized sequence also varied between two otherwise
        # identical CI runs).  A generator regression that stops producing a kind of
        # instruction misses many at once, and every vector, stop reason and device event is
        # still required.
        opcodes = [m for m in missing if m.startswith("opcode ")]
        others = [m for m in missing if not m.startswith("opcode ")]
        assert not others and len(opcodes) <= MAX_MISSING_OPCODES, (
            f"{coverage.examples} generated programs did not exercise the whole machine:\n  "
            + "\n  ".join(missing))
